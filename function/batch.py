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
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from function.aws import aws_client
from function.client import ApiResponse, Deadline, HFClient
from function.envelope import Outcome
from function.errors import InputError, RunJobError
from function.inputs import merge_inputs
from function.job import Session, open_session, run_job
from function.limiter import AdaptiveLimiter
from function.runs import Run
from function.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 64
_WORKER_OPTIONS = ("batch_size", "concurrency", "rate")
# Fields of a batch event that describe the batch rather than the runs.
BATCH_FIELDS = (
    "items",
    "input_uri",
    "output_uri",
    "batch_size",
    "concurrency",
    "rate",
    "part",
    "fan_out",
    "chunk_size",
)


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


def items_from_jsonl(
    lines: Iterable[str], *, first_index: int = 0, first_line: int = 1
) -> Iterator[Item]:
    """A JSONL file, a line an item (a JSON object, or a JSON string: the text). A part of a
    file (fan-out) gives the index and line number its first line has in the whole."""
    index = first_index
    for number, line in enumerate(lines, first_line):
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


def _record(outcome: Outcome, item: Item) -> dict[str, Any]:
    return {**outcome.envelope, "id": item.id}


def _embeddable(url: str, payload: Any) -> bool:
    return (
        url.endswith("/pipeline/feature-extraction")
        and isinstance(payload, dict)
        and isinstance(payload.get("inputs"), str)
    )


# -- the run -----------------------------------------------------------------------------------


@asynccontextmanager
async def open_batch_session(
    settings: Settings,
    deadline: Deadline,
    *,
    concurrency: int = DEFAULT_MAX_CONCURRENCY,
    rate: float | None = None,
    batch_size: int = 32,
) -> AsyncIterator[Session]:
    """A session for many requests: adaptive concurrency capped at `concurrency`, requests
    coalesced, the lean transport."""
    async with open_session(
        settings,
        deadline,
        max_connections=concurrency,
        limiter=AdaptiveLimiter(cap=concurrency, rate=rate),
        coalesce=lambda client: Coalescer(client, batch_size=batch_size),
    ) as session:
        yield session


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
    # Stop starting items this close to the deadline (a quarter of a short budget).
    reserve = min(options.reserve_s, session.deadline.remaining() / 4)
    try:
        base: dict[str, Any] | None = merge_inputs(shared, session.settings)
        shared_problem: RunJobError | None = None
    except RunJobError as exc:
        base, shared_problem = None, exc

    finished: dict[int, tuple[str, Any]] = {}  # seq -> ("output" | "continue", value)
    running = 0
    one_done = asyncio.Event()
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

    async def run_one(seq: int, item: Item) -> None:
        nonlocal running
        try:
            if item.problem or shared_problem:
                problem = item.problem or shared_problem
                assert problem is not None
                finished[seq] = ("output", _record(Outcome.failed(problem, model=None), item))
                return
            outcome = await run_job(item.fields, session, base=base, log_level=logging.DEBUG)
            if outcome.transient and session.deadline.remaining() < reserve:
                finished[seq] = ("continue", item.raw)  # the deadline cut it short
            else:
                finished[seq] = ("output", _record(outcome, item))
        finally:
            running -= 1
            one_done.set()

    async def wait_for_one() -> None:
        one_done.clear()
        await one_done.wait()
        write_ready()

    tasks: set[asyncio.Task[None]] = set()  # strong references until done
    for seq, item in enumerate(items):  # seq: the item's place in this run's output
        summary.total += 1
        while running and (seq - next_out >= options.window or running >= options.window):
            await wait_for_one()
        if session.deadline.remaining() < reserve:
            finished[seq] = ("continue", item.raw)
            write_ready()
            continue
        running += 1
        task = asyncio.ensure_future(run_one(seq, item))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if session.limiter is not None:
        session.limiter.stop_probing()
    while running:
        await wait_for_one()
    write_ready()
    summary.elapsed_s = time.monotonic() - started
    return summary


# -- where items come from and records go: local files or S3 ------------------------------------

INLINE_LIMIT = 100  # batches this small with no output target answer their records inline


def read_lines(uri: str, byte_range: tuple[int, int] | None = None) -> Iterator[str]:
    """The lines of a local file or an S3 object (or of a byte range of it), streamed."""
    for line in raw_lines(uri, byte_range):
        yield line.decode("utf-8")


def raw_lines(uri: str, byte_range: tuple[int, int] | None = None) -> Iterator[bytes]:
    """Lines as bytes, with their line ends, so that their offsets add up."""
    start, end = byte_range or (0, None)
    bucket, key = s3_location(uri)
    if bucket is None:
        with Path(uri).open("rb") as file:
            file.seek(start)
            position = start
            for line in file:
                if end is not None and position >= end:
                    return
                position += len(line)
                yield line
        return
    extra = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if byte_range else {}
    body = aws_client("s3").get_object(Bucket=bucket, Key=key, **extra)["Body"]
    pending = b""
    for chunk in body.iter_chunks(chunk_size=1 << 16):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


class UploadingWriter(JsonlWriter):
    """Writes to a temporary file and uploads it to S3 on close (flat memory)."""

    def __init__(self, uri: str) -> None:
        import tempfile

        bucket, key = s3_location(uri)
        assert bucket is not None
        self.bucket, self.key = bucket, key
        super().__init__(Path(tempfile.mkdtemp(prefix="hf-run-job-")) / "part.jsonl")

    def close(self) -> None:
        super().close()
        assert self.path is not None
        if self.count:
            aws_client("s3").upload_file(str(self.path), self.bucket, self.key)
            self.path.unlink()
        self.path.parent.rmdir()


def open_writer(uri: str) -> JsonlWriter:
    return UploadingWriter(uri) if uri.startswith("s3://") else JsonlWriter(Path(uri))


def continuation_uri(output_uri: str) -> str:
    stem = output_uri.removesuffix(".jsonl")
    return f"{stem}.continuation.jsonl"


def s3_location(uri: str) -> tuple[str | None, str]:
    if not uri.startswith("s3://"):
        return None, uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise InputError(f"{uri!r}: expected s3://bucket/key")
    return bucket, key


def batch_items(fields: dict[str, Any]) -> Iterator[Item] | None:
    """The items of a batch event (`items`, `text` as a list, or `input_uri`), or None."""
    if "items" in fields:
        values = fields["items"]
        if not isinstance(values, list):
            raise InputError("items: expected a list of objects of run inputs")
        return items_from_list(values)
    if isinstance(fields.get("text"), list):
        return items_from_list(fields["text"])
    if "input_uri" in fields:
        uri = fields["input_uri"]
        if not isinstance(uri, str) or not uri:
            raise InputError("input_uri: expected a local path or s3://bucket/key of a JSONL file")
        part = fields.get("part")
        if part is None:
            return items_from_jsonl(read_lines(uri))
        if not (isinstance(part, dict) and {"bytes", "first_index", "first_line"} <= set(part)):
            raise InputError("part: expected {bytes: [start, end], first_index, first_line}")
        start, end = part["bytes"]
        return items_from_jsonl(
            read_lines(uri, (start, end)),
            first_index=part["first_index"],
            first_line=part["first_line"],
        )
    return None


async def run_batch_event(
    fields: dict[str, Any], run: Run, settings: Settings, deadline: Deadline
) -> dict[str, Any]:
    """A batch event: `items` / `text` list / `input_uri`, with optional `output_uri`,
    `batch_size`, `concurrency` and `rate`; every other field is shared by the items.
    With `fan_out`, the input is split into parts for the queue's workers instead."""
    if fields.get("fan_out"):
        from function.fanout import fan_out

        return fan_out(fields, settings)
    items = batch_items(fields)
    assert items is not None
    options = BatchOptions(batch_size=whole_number_field(fields, "batch_size", 32))
    cap = whole_number_field(fields, "concurrency", DEFAULT_MAX_CONCURRENCY)
    rate = fields.get("rate")
    if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
        raise InputError("rate: expected a positive number of requests per second")
    shared = shared_fields(fields)
    output_uri = fields.get("output_uri")
    if output_uri is not None and (not isinstance(output_uri, str) or not output_uri):
        raise InputError("output_uri: expected a local path or s3://bucket/key")
    known = fields.get("items", fields.get("text"))
    inline = output_uri is None and isinstance(known, list) and len(known) <= INLINE_LIMIT
    target = output_uri or f"{settings.results_uri.rstrip('/')}/batches/{run.run_id}.jsonl"
    output: Writer = ListWriter() if inline else open_writer(target)
    continuation = open_writer(continuation_uri(target))
    try:
        async with open_batch_session(
            settings, deadline, concurrency=cap, rate=rate, batch_size=options.batch_size
        ) as session:
            summary = await run_batch(shared, items, session, output, continuation, options)
    except (OSError, ValueError) as exc:  # the input could not be read
        raise InputError(f"input_uri: could not read it ({type(exc).__name__}: {exc})") from None
    finally:
        output.close()
        continuation.close()
    summary.output = None if isinstance(output, ListWriter) else target
    if isinstance(output, ListWriter):
        summary.results = output.values
    result = summary.as_dict()
    if summary.continued:
        result["continuation"] = continuation_uri(target)
        if settings.run_queue_url and "part" not in fields:  # a part is retried whole instead
            result["continuation_queued"] = _queue_continuation(
                fields, result["continuation"], target, run, settings.run_queue_url
            )
    return result


def _queue_continuation(
    fields: dict[str, Any], continuation: str, target: str, run: Run, queue_url: str
) -> str:
    """In AWS the continuation goes back on the queue as a batch of its own; its records go
    beside the output. Returns where they will be."""
    output = f"{target.removesuffix('.jsonl')}.cont-{run.run_id}.jsonl"
    body = {
        **shared_fields(fields, with_options=True),
        "input_uri": continuation,
        "output_uri": output,
    }
    aws_client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    return output


def shared_fields(fields: dict[str, Any], *, with_options: bool = False) -> dict[str, Any]:
    """What every item of a batch shares: all but the batch's own fields (and `text` when it
    lists the items). `with_options` keeps batch_size/concurrency/rate, for batches sent on
    to the queue's workers."""
    options = _WORKER_OPTIONS if with_options else ()
    return {
        k: v
        for k, v in fields.items()
        if (k not in BATCH_FIELDS or k in options) and not (k == "text" and isinstance(v, list))
    }


def whole_number_field(fields: dict[str, Any], name: str, default: int) -> int:
    value = fields.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name}: expected a whole number of 1 or more")
    return value
