"""In front of the API client in a batch: identical requests within a run are sent once,
and single-text requests that can go as one list are sent as lists, the answer split back
per text:

- feature-extraction on the API: `batch_size` texts a request, or what came within
  `FLUSH_AFTER_S`; the requests go in parallel (the limiter bounds them);
- every task whose pipeline takes a list, in this process (`provider: local`): the texts
  that came while the model was busy run in order of length, so that a call pads its texts
  little (as `SentenceTransformer.encode` orders its texts), a few batches a call or what
  the model runs in a few seconds (`function.local.call_size`). At most `AT_THE_MODEL`
  calls wait at the model: one runs while the next is ready.

Each text is answered as soon as its own call returns. A call whose answer would be over
the size limit is sent again in halves, so big embedding batches stay within
`HF_MAX_RESPONSE_BYTES`; so is a local call whose pipeline fails, until the text at fault
fails alone.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from function import jsontext
from function.cache import request_key
from function.client import LOCAL, ApiResponse, Call, Deadline, Fetcher
from function.envelope import Usage
from function.errors import (
    LocalRunError,
    ResponseTooLargeError,
    RunJobError,
    UpstreamTimeoutError,
)
from function.local import CALL_BATCHES, LIST_TASKS, call_size

FLUSH_AFTER_S = 0.005  # the first texts of a list wait this long for more
AT_THE_MODEL = 2  # a local model's calls sent and not yet answered, at most
CACHE_BYTES = 16 * 1024 * 1024  # answers kept for identical requests, by their size


@dataclass
class _Text:
    """One text of a list to send, and its own part of the answer."""

    text: Any
    call: Call
    deadline: Deadline
    answer: asyncio.Future[ApiResponse]
    dropped: bool = False  # nobody waits for it any more: not sent

    @property
    def size(self) -> int:
        return len(self.text) if isinstance(self.text, str) else 1


@dataclass
class _Lot:
    """The texts of one model, task and parameters still to send."""

    waiting: list[_Text] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None  # on the API: sends what came meanwhile
    runner: asyncio.Task[None] | None = None  # in this process: feeds the model
    at_the_model: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(AT_THE_MODEL))

    def take(self) -> list[_Text]:
        texts = [t for t in self.waiting if not t.dropped]
        self.waiting = []
        return texts


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
        self._lots: dict[str, _Lot] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.sent = 0

    async def post_json(self, call: Call, deadline: Deadline) -> ApiResponse:
        key = request_key(call)
        known = self._answers.get(key)
        if known is not None:
            self._answers.move_to_end(key)
            remaining = deadline.remaining()
            try:
                async with asyncio.timeout(None if math.isinf(remaining) else remaining):
                    answer = await asyncio.shield(known)  # to our own deadline, not its asker's
            except TimeoutError:
                raise _out_of_time(call) from None
            except (RunJobError, asyncio.CancelledError) as exc:
                if not _not_mine(exc, known):
                    raise
                if deadline.remaining() <= 0:
                    raise _out_of_time(call) from None
                return await self.post_json(call, deadline)  # its asker's end, not ours
            # Sent once: what it cost is counted once, on the first item that asked.
            return replace(answer, usage=Usage(compute_type=answer.usage.compute_type), attempts=0)
        future: asyncio.Future[ApiResponse] = asyncio.get_running_loop().create_future()
        self._answers[key] = future
        try:
            if _listable(call) and self.batch_size > 1:
                answer = await self._in_a_list(call, deadline)
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
        for lot in self._lots.values():
            if lot.timer is not None:
                lot.timer.cancel()
            if lot.runner is not None:
                lot.runner.cancel()
            for text in lot.take():
                text.answer.cancel()
        self._lots.clear()
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _in_a_list(self, call: Call, deadline: Deadline) -> ApiResponse:
        loop = asyncio.get_running_loop()
        parameters = jsontext.dumps(call.payload.get("parameters") or {}, sort_keys=True)
        key = f"{call.url}\n{parameters}"
        lot = self._lots.get(key)
        if lot is None:  # not setdefault: a lot is made once, not for every text
            lot = self._lots[key] = _Lot()
        text = _Text(call.payload["inputs"], call, deadline, loop.create_future())
        lot.waiting.append(text)
        if call.url.startswith(LOCAL):
            if lot.runner is None:
                lot.runner = self._start(self._feed(lot))
        elif len(lot.waiting) >= self.batch_size:
            self._send_waiting(lot)
        elif lot.timer is None:
            lot.timer = loop.call_later(FLUSH_AFTER_S, self._send_waiting, lot)
        # A list is sent by the latest deadline of its texts; each text waits to its own.
        remaining = deadline.remaining()
        timer = None if math.isinf(remaining) else loop.call_later(remaining, _late, text)
        try:
            return await text.answer
        except asyncio.CancelledError:
            text.dropped = True
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _send_waiting(self, lot: _Lot) -> None:
        """On the API: what has come goes as one request."""
        if lot.timer is not None:
            lot.timer.cancel()
            lot.timer = None
        texts = lot.take()
        if texts:
            self._start_send(texts)

    async def _feed(self, lot: _Lot) -> None:
        """In this process: the model's calls, shortest first out of what came while it was
        busy, at most `AT_THE_MODEL` sent and not answered."""
        await asyncio.sleep(FLUSH_AFTER_S)  # the first texts gather
        queue: list[_Text] = []
        try:
            while True:
                await lot.at_the_model.acquire()
                # Texts whose deadline came while they waited are not sent.
                queue = [t for t in queue if not t.dropped]
                if not queue:  # what came meanwhile, in order of length
                    queue = sorted(lot.take(), key=lambda t: t.size)
                if not queue:
                    lot.at_the_model.release()
                    lot.runner = None
                    return
                first = queue[0]
                sizes = [t.size for t in queue[: self.batch_size * CALL_BATCHES]]
                count = call_size(first.call, sizes, self.batch_size, first.deadline)
                texts, queue = queue[:count], queue[count:]
                self._start_send(texts, then=lot.at_the_model.release)
        finally:
            for text in queue:  # stopped: what was not sent is not answered
                text.answer.cancel()

    def _start(
        self, work: Coroutine[Any, Any, None], then: Callable[[], None] | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        if then is not None:
            task.add_done_callback(lambda _: then())
        return task

    def _start_send(self, texts: list[_Text], then: Callable[[], None] | None = None) -> None:
        task = self._start(self._send(texts), then)
        task.add_done_callback(lambda _: _unanswered(texts))

    async def _send(self, texts: list[_Text]) -> None:
        """One call with these texts, and each its own part of the answer. A call refused
        as too large, or whose local pipeline failed, goes again in halves: each half is
        answered as it returns, until the text at fault fails alone."""
        first = texts[0]
        call = first.call._replace(
            payload={**first.call.payload, "inputs": [t.text for t in texts]},
            batch_size=self.batch_size,
        )
        deadline = max((t.deadline for t in texts), key=lambda d: d.at)
        self.sent += 1
        try:
            answer = await self.client.post_json(call, deadline)
        except (ResponseTooLargeError, LocalRunError) as exc:
            if len(texts) == 1:
                _fail(first.answer, exc)
                return
            half = len(texts) // 2
            await asyncio.gather(self._send(texts[:half]), self._send(texts[half:]))
            return
        except BaseException as exc:
            for text in texts:
                _fail(text.answer, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        body, total = answer.body, sum(t.size for t in texts)
        each = isinstance(body, list) and len(body) == len(texts)
        for position, text in enumerate(texts):
            if not text.answer.done():
                # Not one answer per text: the whole of it, for the task's reader to say so.
                part = body[position] if each else body
                usage = _part(answer.usage, text.size / max(1, total))
                size = answer.size // len(texts)
                text.answer.set_result(ApiResponse(part, usage, answer.attempts, size))


def _not_mine(exc: BaseException, shared: asyncio.Future[Any]) -> bool:
    """Whether an identical request, sent for another item, ended for that item's reasons:
    its deadline (a fallback's share of the time, say) or its cancellation, while this
    item still has time and is not cancelled."""
    if isinstance(exc, RunJobError):
        return exc.out_of_time
    task = asyncio.current_task()
    return shared.cancelled() and task is not None and not task.cancelling()


def _late(text: _Text) -> None:
    """A text's own deadline came first: it is not sent, or its answer not waited for."""
    text.dropped = True
    _fail(text.answer, _out_of_time(text.call))


def _out_of_time(call: Call) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        f"The run's deadline came before model '{call.model}' answered", out_of_time=True
    )


def _unanswered(texts: list[_Text]) -> None:
    """A send that ended without answering some of its texts (cancelled before it ran, so
    none of its code did): they end cancelled, not waiting for ever."""
    for text in texts:
        text.answer.cancel()


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Pass a failure on to whoever shares the future (a cancellation as a cancellation)."""
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody shares it


def _part(usage: Usage, fraction: float) -> Usage:
    """One text's part of what a list cost: `fraction`, its share of the list's
    characters."""
    if usage.characters is None and usage.compute_time_s is None:
        return usage
    return Usage(
        characters=None if usage.characters is None else round(usage.characters * fraction),
        compute_time_s=None if usage.compute_time_s is None else usage.compute_time_s * fraction,
        compute_type=usage.compute_type,
    )


def _listable(call: Call) -> bool:
    """A single-text request that can go with others as one list: feature-extraction on the
    API, and every task whose pipeline takes a list in this process (`provider: local`)."""
    if not (isinstance(call.payload, dict) and isinstance(call.payload.get("inputs"), str)):
        return False
    if call.url.startswith(LOCAL):
        return call.url.rpartition("/pipeline/")[2] in LIST_TASKS
    return call.url.endswith("/pipeline/feature-extraction")
