"""Many items in one run: streamed in, run concurrently, written out in input order.

Every input item yields exactly one output record (the envelope's five keys plus `id`) or,
when the deadline comes first, one continuation line (the item as it came in), so the
output plus the continuation always cover the input exactly once. Memory stays flat: items
are read as they are needed, at most `window` items are between reading and writing, and
the cache of answers for identical requests is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from function.client import ApiResponse, Deadline, HFClient
from function.envelope import Outcome
from function.errors import InputError, RunJobError
from function.inputs import merge_inputs
from function.job import Session, run_job

log = logging.getLogger(__name__)

# Fields of a batch event that describe the batch rather than the runs.
BATCH_FIELDS = ("items", "input_uri", "output_uri", "batch_size", "concurrency", "rate")


@dataclass
class Item:
    """One input item: its position, its id, its run input fields (or why it has none)."""

    index: int
    id: Any
    fields: dict[str, Any]
    raw: Any  # as it came in, for the continuation
    problem: InputError | None = None


def items_from_list(values: list[Any]) -> Iterator[Item]:
    """`items`: objects of run inputs, each with an optional `id`; or `text`: strings."""
    for index, value in enumerate(values):
        yield _item(index, value, f"items[{index}]")


def items_from_jsonl(lines: Iterable[str]) -> Iterator[Item]:
    """A JSONL file, a line an item (a JSON object, or a JSON string: the text)."""
    index = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = InputError(f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})")
            yield Item(index, index, {}, line.rstrip("\n"), problem)
        else:
            yield _item(index, value, f"line {number}")
        index += 1


def _item(index: int, value: Any, where: str) -> Item:
    if isinstance(value, str):
        return Item(index, index, {"text": value}, value)
    if not isinstance(value, dict):
        problem = InputError(f"{where}: expected an object of run inputs or a text")
        return Item(index, index, {}, value, problem)
    fields = dict(value)
    item_id = fields.pop("id", index)
    return Item(index, item_id, fields, value)


@dataclass
class Summary:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    continued: int = 0
    output: str | None = None
    continuation: str | None = None
    elapsed_s: float = 0.0
    results: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        done = self.succeeded + self.failed
        summary: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "output": self.output,
            "elapsed_s": round(self.elapsed_s, 3),
            "items_per_s": round(done / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }
        if self.continued:
            summary["continued"] = self.continued
            summary["continuation"] = self.continuation
        if self.results is not None:
            summary["results"] = self.results
        return summary


class JsonlWriter:
    """Lines to a local file (made on the first line) or a stream, written as they come."""

    def __init__(self, path: Path | None = None, *, stream: IO[str] | None = None) -> None:
        self.path = path
        self._file = stream
        self._owned = stream is None
        self.count = 0

    def write(self, value: Any) -> None:
        if self._file is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        self._file.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None and self._owned:
            self._file.close()
        elif self._file is not None:
            self._file.flush()


class ListWriter:
    """Records kept in memory, for small batches answered inline."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.count = 0

    def write(self, value: Any) -> None:
        self.values.append(value)
        self.count += 1

    def close(self) -> None:
        pass


Writer = JsonlWriter | ListWriter


# -- identical requests once, embeddings in chunks ---------------------------------------------


class Coalescer:
    """In front of the API client: identical requests within a run are sent once, and
    single-text feature-extraction requests are sent `batch_size` texts at a time."""

    def __init__(self, client: HFClient, *, batch_size: int = 32, cache_size: int = 20_000) -> None:
        self.client = client
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._answers: OrderedDict[bytes, asyncio.Future[ApiResponse]] = OrderedDict()
        self._chunks: dict[str, _Chunk] = {}
        self.sent = 0

    async def post_json(
        self, url: str, payload: Any, *, model: str, wait_for_model: bool, deadline: Deadline
    ) -> ApiResponse:
        body = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        key = hashlib.blake2b(f"{url}\n{body}".encode(), digest_size=16).digest()
        known = self._answers.get(key)
        if known is not None:
            self._answers.move_to_end(key)
            return await asyncio.shield(known)
        future: asyncio.Future[ApiResponse] = asyncio.get_running_loop().create_future()
        self._answers[key] = future
        if len(self._answers) > self.cache_size:
            self._answers.popitem(last=False)
        try:
            if _embeddable(url, payload) and self.batch_size > 1:
                answer = await self._embed(url, payload, model, wait_for_model, deadline)
            else:
                self.sent += 1
                answer = await self.client.post_json(
                    url, payload, model=model, wait_for_model=wait_for_model, deadline=deadline
                )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when unshared
            raise
        future.set_result(answer)
        return answer

    async def _embed(
        self, url: str, payload: Any, model: str, wait: bool, deadline: Deadline
    ) -> ApiResponse:
        group = f"{url}\n{json.dumps(payload.get('parameters') or {}, sort_keys=True)}"
        chunk = self._chunks.get(group)
        if chunk is None:
            chunk = self._chunks[group] = _Chunk()
            chunk.flusher = asyncio.get_running_loop().call_later(
                0.005, lambda: self._flush(group, url, payload, model, wait, deadline)
            )
        position = len(chunk.texts)
        chunk.texts.append(payload["inputs"])
        if len(chunk.texts) >= self.batch_size:
            chunk.flusher.cancel()
            self._flush(group, url, payload, model, wait, deadline)
        answer = await asyncio.shield(chunk.answer)
        body = answer.body
        if not isinstance(body, list) or len(body) != len(chunk.texts):
            # Not one answer per text: let the task's reader say what came back.
            return ApiResponse(body, answer.usage, answer.attempts)
        return ApiResponse(body[position], answer.usage, answer.attempts)

    def _flush(
        self, group: str, url: str, payload: Any, model: str, wait: bool, deadline: Deadline
    ) -> None:
        chunk = self._chunks.pop(group, None)
        if chunk is None:
            return
        request = {**payload, "inputs": list(chunk.texts)}
        self.sent += 1

        async def send() -> None:
            try:
                answer = await self.client.post_json(
                    url, request, model=model, wait_for_model=wait, deadline=deadline
                )
            except BaseException as exc:
                chunk.answer.set_exception(exc)
                chunk.answer.exception()
            else:
                chunk.answer.set_result(answer)

        chunk.task = asyncio.ensure_future(send())


@dataclass
class _Chunk:
    texts: list[str] = field(default_factory=list)
    answer: asyncio.Future[ApiResponse] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    flusher: asyncio.TimerHandle | Any = None
    task: asyncio.Future[None] | None = None


def _embeddable(url: str, payload: Any) -> bool:
    return (
        url.endswith("/pipeline/feature-extraction")
        and isinstance(payload, dict)
        and isinstance(payload.get("inputs"), str)
    )


# -- the run -----------------------------------------------------------------------------------


@dataclass
class BatchOptions:
    batch_size: int = 32
    window: int = 1024  # items between reading and writing, at most
    reserve_s: float = 2.0  # stop starting items this close to the deadline


Progress = Callable[[int, int, int], None]  # (done, succeeded, failed)


async def run_batch(
    shared: dict[str, Any],
    items: Iterable[Item],
    session: Session,
    output: Writer,
    continuation: Writer,
    options: BatchOptions | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Run every item over the run config and the shared fields; never raises for an item."""
    options = options or BatchOptions()
    started = time.monotonic()
    summary = Summary()
    try:
        base: dict[str, Any] | None = merge_inputs(shared, session.settings)
        shared_problem: RunJobError | None = None
    except RunJobError as exc:
        base, shared_problem = None, exc

    finished: dict[int, tuple[str, Any]] = {}  # index -> ("output" | "continue", value)
    running: set[asyncio.Task[None]] = set()
    next_out = 0

    def write_ready() -> None:
        nonlocal next_out
        while next_out in finished:
            kind, value = finished.pop(next_out)
            if kind == "output":
                output.write(value)
                summary.succeeded += value["success"]
                summary.failed += not value["success"]
            else:
                continuation.write(value)
                summary.continued += 1
            next_out += 1
        if progress:
            progress(next_out, summary.succeeded, summary.failed)

    async def run_one(item: Item) -> None:
        if item.problem or shared_problem:
            outcome = Outcome.failed(item.problem or shared_problem, model=None)  # type: ignore[arg-type]
        else:
            outcome = await run_job(item.fields, session, base=base)
            if outcome.transient and session.deadline.remaining() < options.reserve_s:
                finished[item.index] = ("continue", item.raw)  # the deadline cut it short
                return
        finished[item.index] = ("output", {**outcome.envelope, "id": item.id})

    def started_too_late() -> bool:
        return session.deadline.remaining() < options.reserve_s

    for item in items:
        summary.total += 1
        while running and item.index - next_out >= options.window:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running.difference_update(done)
            write_ready()
        if started_too_late():
            finished[item.index] = ("continue", item.raw)
            write_ready()
            continue
        task = asyncio.ensure_future(run_one(item))
        running.add(task)
        if len(running) >= options.window:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running.difference_update(done)
            write_ready()
    while running:
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        running.difference_update(done)
        write_ready()
    write_ready()
    summary.elapsed_s = time.monotonic() - started
    return summary
