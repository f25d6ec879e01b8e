"""In front of the API client in a batch: identical requests within a run are sent once,
and single-text feature-extraction requests (and, run locally, the requests of every task
whose pipeline takes a list) go `batch_size` texts at a time (the answer is split back per
text). In this process a chunk holds as many batches as the model runs in a few seconds
(`function.local.chunk_full`). A chunk whose answer would be over the size limit is sent
again in halves, so big embedding batches stay within `HF_MAX_RESPONSE_BYTES`; so is a
local chunk whose pipeline fails, until the text at fault fails alone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from function import jsontext
from function.cache import request_key
from function.client import LOCAL, ApiResponse, Call, Deadline, Fetcher
from function.envelope import Usage
from function.errors import LocalRunError, ResponseTooLargeError
from function.local import LIST_TASKS, chunk_full

FLUSH_AFTER_S = 0.005  # a chunk waits this long for more texts before it is sent


CACHE_BYTES = 16 * 1024 * 1024  # answers kept for identical requests, by their size


class Coalescer:
    def __init__(
        self,
        client: Fetcher,
        *,
        batch_size: int = 32,
        cache_size: int = 20_000,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.client = client
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self._held = 0  # bytes of the answers kept
        self._sizes: dict[str, int] = {}
        self._answers: OrderedDict[str, asyncio.Future[ApiResponse]] = OrderedDict()
        self._chunks: dict[str, _Chunk] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.sent = 0

    async def post_json(self, call: Call, deadline: Deadline) -> ApiResponse:
        key = request_key(call)
        known = self._answers.get(key)
        if known is not None:
            self._answers.move_to_end(key)
            answer = await asyncio.shield(known)
            # Sent once: what it cost is counted once, on the first item that asked.
            return replace(answer, usage=Usage(compute_type=answer.usage.compute_type), attempts=0)
        future: asyncio.Future[ApiResponse] = asyncio.get_running_loop().create_future()
        self._answers[key] = future
        try:
            if _embeddable(call) and self.batch_size > 1:
                answer = await self._embed(call, deadline)
            else:
                self.sent += 1
                answer = await self.client.post_json(call, deadline)
        except BaseException as exc:
            self._answers.pop(key, None)  # a failure is not an answer to share later
            _fail(future, exc)
            raise
        future.set_result(answer)
        self._keep(key, answer.size)
        return answer

    def _keep(self, key: str, size: int) -> None:
        """Memory stays bounded: the oldest answers go past `cache_size` answers or
        `cache_bytes` bytes (a big answer may not be kept at all)."""
        if key in self._answers:
            self._sizes[key] = size
            self._held += size
        while self._answers and (
            len(self._answers) > self.cache_size or self._held > self.cache_bytes
        ):
            oldest, _ = self._answers.popitem(last=False)
            self._held -= self._sizes.pop(oldest, 0)

    async def aclose(self) -> None:
        """Stop what is still being sent (the batch has stopped waiting for it)."""
        for chunk in self._chunks.values():
            chunk.flusher.cancel()
        self._chunks.clear()
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _embed(self, call: Call, deadline: Deadline) -> ApiResponse:
        parameters = jsontext.dumps(call.payload.get("parameters") or {}, sort_keys=True)
        group = f"{call.url}\n{parameters}"
        chunk = self._chunks.get(group)
        if chunk is None:
            chunk = self._chunks[group] = _Chunk()
            chunk.flusher = asyncio.get_running_loop().call_later(
                FLUSH_AFTER_S, lambda: self._flush(group, call, deadline)
            )
        position = len(chunk.texts)
        chunk.texts.append(call.payload["inputs"])
        chunk.size += _size(call.payload["inputs"])
        if (
            chunk_full(call, len(chunk.texts), chunk.size, self.batch_size)
            if call.url.startswith(LOCAL)
            else len(chunk.texts) >= self.batch_size
        ):
            chunk.flusher.cancel()
            self._flush(group, call, deadline)
        answer = await asyncio.shield(chunk.answer)
        body = answer.body
        if not isinstance(body, list) or len(body) != len(chunk.texts):
            # Not one answer per text: let the task's reader say what came back.
            return ApiResponse(body, answer.usage, answer.attempts, answer.size)
        if isinstance(body[position], BaseException):  # this text failed on its own
            raise body[position]
        share = answer.size // max(1, len(chunk.texts))
        part = _size(chunk.texts[position]) / max(1, chunk.size)
        return ApiResponse(body[position], _part(answer.usage, part), answer.attempts, share)

    def _flush(self, group: str, call: Call, deadline: Deadline) -> None:
        chunk = self._chunks.pop(group, None)
        if chunk is None:
            return

        async def send(texts: list[Any]) -> ApiResponse:
            self.sent += 1
            try:
                return await self.client.post_json(
                    call._replace(
                        payload={**call.payload, "inputs": texts}, batch_size=self.batch_size
                    ),
                    deadline,
                )
            except (ResponseTooLargeError, LocalRunError) as exc:
                if len(texts) < 2:  # the text at fault, alone: its failure is its answer
                    return ApiResponse([exc], Usage(), attempts=1)
            half = len(texts) // 2
            first, second = await asyncio.gather(send(texts[:half]), send(texts[half:]))
            return _joined(first, second)

        async def answer() -> None:
            try:
                result = await send(list(chunk.texts))
            except BaseException as exc:
                _fail(chunk.answer, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                chunk.answer.set_result(result)

        task = asyncio.ensure_future(answer())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


@dataclass
class _Chunk:
    texts: list[Any] = field(default_factory=list)
    size: int = 0  # of its texts (`_size`)
    answer: asyncio.Future[ApiResponse] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    flusher: asyncio.TimerHandle | Any = None


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Pass a failure on to whoever shares the future (a cancellation as a cancellation)."""
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody shares it


def _size(text: Any) -> int:
    return len(text) if isinstance(text, str) else 1


def _part(usage: Usage, fraction: float) -> Usage:
    """One text's part of what a chunk cost: `fraction`, its share of the chunk's
    characters."""
    if usage.characters is None and usage.compute_time_s is None:
        return usage
    return Usage(
        characters=None if usage.characters is None else round(usage.characters * fraction),
        compute_time_s=None if usage.compute_time_s is None else usage.compute_time_s * fraction,
        compute_type=usage.compute_type,
    )


def _joined(first: ApiResponse, second: ApiResponse) -> ApiResponse:
    """Two halves of a chunk's answer as one."""
    if not (isinstance(first.body, list) and isinstance(second.body, list)):
        return first if not isinstance(first.body, list) else second
    a, b = first.usage, second.usage
    usage = Usage(
        characters=_sum(a.characters, b.characters),
        compute_time_s=_sum(a.compute_time_s, b.compute_time_s),
        compute_type=a.compute_type or b.compute_type,
    )
    return ApiResponse(first.body + second.body, usage, max(first.attempts, second.attempts))


def _sum(a: Any, b: Any) -> Any:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _embeddable(call: Call) -> bool:
    """A single-text request that can go with others as one list: feature-extraction on the
    API, and every task whose pipeline takes a list in this process (`provider: local`)."""
    if not (isinstance(call.payload, dict) and isinstance(call.payload.get("inputs"), str)):
        return False
    if call.url.startswith(LOCAL):
        return call.url.rpartition("/pipeline/")[2] in LIST_TASKS
    return call.url.endswith("/pipeline/feature-extraction")
