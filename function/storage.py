"""Where batch items come from and records go: local files, stdin/stdout, or S3.

Inputs are streamed in chunks and cut into lines with a bound on a line's length (a longer
line is skipped to its end and reported, never held), so memory stays flat whatever the
input holds. Local inputs must be regular files (a FIFO or a device could block or never
end). Every AWS call is bounded by the deadline (`function.threads.bounded`).

Errors name the place: a missing input or a bad path is an InputError (permanent); a read
or write that fails (a full disk, S3 refusing or hanging) is a StorageError (transient, so
a queued message goes back and is run again).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from function import jsontext
from function.aws import aws_client, describe
from function.batch import BatchRun, Item, Line, Progress, Resume
from function.client import Deadline
from function.errors import InputError, StorageError
from function.settings import Settings, s3_spelling
from function.threads import bounded

if TYPE_CHECKING:
    from function.batchfields import BatchFields

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 16
STDIN = "-"

Reader = Callable[[], Awaitable[bytes]]


def s3_location(uri: str) -> tuple[str | None, str]:
    if not uri.startswith("s3://"):
        return None, uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise InputError(f"{uri!r}: expected s3://bucket/key")
    return bucket, key


# -- reading -----------------------------------------------------------------------------------


async def open_input(
    uri: str,
    settings: Settings,
    deadline: Deadline,
    byte_range: tuple[int, int | None] | None = None,
    *,
    field: str = "input_uri",
) -> Reader:
    """A function that returns the input's next chunk (b"" at its end)."""
    bucket, key = s3_location(uri)
    if bucket is not None:
        return await _open_s3(bucket, key, uri, settings, deadline, byte_range, field)
    if uri == STDIN:
        stream = sys.stdin.buffer
        return lambda: bounded(lambda: stream.read1(CHUNK_BYTES), deadline)
    return _open_local(Path(uri), byte_range, field)


def _open_local(path: Path, byte_range: tuple[int, int | None] | None, field: str) -> Reader:
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InputError(f"{field}: cannot read {str(path)[:200]} ({describe(exc)})") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise InputError(f"{field}: {path} is {kind}; expected a JSONL file")
    try:
        file = path.open("rb")
    except OSError as exc:
        raise InputError(f"{field}: cannot read {path} ({exc.strerror})") from None
    start, end = byte_range or (0, None)
    file.seek(start)
    left = [None if end is None else end - start]

    async def read() -> bytes:
        size = CHUNK_BYTES if left[0] is None else min(CHUNK_BYTES, left[0])
        try:
            chunk = file.read(size) if size else b""
        except OSError as exc:
            raise StorageError(f"{field}: could not read {path} ({exc.strerror})") from None
        if left[0] is not None:
            left[0] -= len(chunk)
        if not chunk:
            file.close()
        return chunk

    return read


async def _open_s3(
    bucket: str,
    key: str,
    uri: str,
    settings: Settings,
    deadline: Deadline,
    byte_range: tuple[int, int | None] | None,
    field: str,
) -> Reader:
    extra = {}
    if byte_range:
        start, end = byte_range
        if end is not None and end <= start:
            return _empty
        extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    try:
        body = (
            await bounded(
                lambda: _s3(settings).get_object(Bucket=bucket, Key=key, **extra), deadline
            )
        )["Body"]
    except Exception as exc:
        raise _s3_error(exc, f"{field}: could not read {uri}") from None

    async def read() -> bytes:
        try:
            return await bounded(lambda: body.read(CHUNK_BYTES), deadline)
        except Exception as exc:
            raise _s3_error(exc, f"{field}: could not read {uri}") from None

    return read


async def read_whole(read: Reader, limit: int) -> bytes | None:
    """Everything `read` gives, or None as soon as it is over `limit` bytes (never held)."""
    body = bytearray()
    while chunk := await read():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _s3(settings: Settings) -> Any:
    """The S3 client, made in the thread that uses it: the first one of a process loads
    botocore's service model (a second or more on a slow machine), which the deadline bounds
    only off the event loop."""
    return aws_client("s3", settings.aws_timeout_s)


async def _empty() -> bytes:
    return b""


PAGE_KEYS = 1000  # keys a listing page holds (S3's most)


def is_prefix(uri: str | None) -> bool:
    """`s3://bucket/prefix/`: every object under it (a batch of images or sounds)."""
    return uri is not None and uri.startswith("s3://") and uri.endswith("/")


async def items_from_prefix(
    uri: str, field: str, settings: Settings, deadline: Deadline
) -> AsyncIterator[Item]:
    """An item per object under an S3 prefix, `{field: "s3://bucket/key"}` with the key as
    its id, listed a page (`PAGE_KEYS` keys) at a time: a listing is never held whole."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise InputError(f"input_uri {uri!r}: expected s3://bucket/prefix/")
    options: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE_KEYS}
    index = 0
    while True:
        try:
            page = await bounded(lambda: _s3(settings).list_objects_v2(**options), deadline)
        except Exception as exc:
            raise _s3_error(exc, f"input_uri: could not list {uri}") from None
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if key.endswith("/"):  # a "folder" marker, not an object to run
                continue
            yield Item(index, key, {field: f"s3://{bucket}/{key}"})
            index += 1
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        options["ContinuationToken"] = token


async def read_lines(read: Reader, *, max_line: int, first_line: int = 1) -> AsyncIterator[Line]:
    """The input's lines (with their line ends, so that their sizes add up to offsets). A
    line longer than `max_line` bytes is skipped to its end and comes back as a problem."""
    number = first_line
    pending = bytearray()
    skipped = -1  # bytes of an over-long line skipped so far; -1: not skipping
    while chunk := await read():
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            if skipped >= 0:
                skipped += stop - start
            else:
                pending += chunk[start:stop]
                if len(pending) > max_line + 2:  # room for "\r\n"
                    skipped, pending = len(pending), bytearray()
            start = stop
            if end >= 0:
                yield _line(number, pending, skipped, max_line)
                number, pending, skipped = number + 1, bytearray(), -1
    if pending or skipped >= 0:
        yield _line(number, pending, skipped, max_line)


def _line(number: int, data: bytearray, skipped: int, max_line: int) -> Line:
    if skipped >= 0:
        return Line(number, b"", f"longer than {max_line:,} bytes (HF_MAX_LINE_BYTES)", skipped)
    return Line(number, bytes(data), None, len(data))


# -- writing -----------------------------------------------------------------------------------


class FileWriter:
    """JSON lines to a local file, a stream (stdout), or (via a temporary file) S3. The file
    is made by `prepare` (an output: before any work, so a bad path fails fast) or on the
    first line (a continuation); one left by an earlier run that this one did not need is
    removed on close."""

    def __init__(self, uri: str, *, stream: IO[str] | None = None) -> None:
        self.uri = uri
        self.count = 0
        self._stream = stream
        self._file: IO[str] | None = stream
        self._path = Path(uri) if stream is None else None

    def prepare(self) -> None:
        self._open()

    def _open(self) -> IO[str]:
        if self._file is None:
            assert self._path is not None
            try:
                _check_writable_kind(self._path)
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("w", encoding="utf-8")
            except ValueError as exc:  # a NUL byte: the path itself is wrong
                raise InputError(f"output {self.uri[:200]!r}: not a usable path ({exc})") from None
            except OSError as exc:
                raise StorageError(f"output {self.uri}: cannot write ({describe(exc)})") from None
        return self._file

    def write(self, value: dict[str, Any]) -> None:
        line = jsontext.dumps(value) + "\n"
        try:
            self._open().write(line)
        except OSError as exc:
            raise StorageError(f"output {self.uri}: could not write ({exc.strerror})") from None
        self.count += 1

    async def close(self, deadline: Deadline) -> None:
        if self._file is None:
            if self._path is not None and self._path.is_file():
                self._path.unlink()  # a stale file from an earlier run: this one wrote nothing
            return
        try:
            if self._stream is not None:
                self._file.flush()
            else:
                self._file.close()
        except OSError as exc:
            raise StorageError(f"output {self.uri}: could not write ({exc.strerror})") from None


class S3Writer(FileWriter):
    """Lines to a temporary file, uploaded to S3 on close (bounded by the deadline)."""

    def __init__(self, uri: str, settings: Settings) -> None:
        self.s3_uri = uri
        self.bucket, self.key = s3_location(uri)
        self._settings = settings
        self._folder = tempfile.mkdtemp(prefix="hf-run-job-")
        super().__init__(os.path.join(self._folder, "part.jsonl"))
        self.uri = uri

    async def close(self, deadline: Deadline) -> None:
        path = self._path
        assert path is not None
        s3 = aws_client("s3", self._settings.aws_timeout_s)
        try:
            wrote = self._file is not None
            await super().close(deadline)
            if wrote:
                await bounded(lambda: s3.upload_file(str(path), self.bucket, self.key), deadline)
            else:  # a continuation this run did not need: none left over from an earlier one
                await self._remove_stale(s3, deadline)
        except StorageError:
            raise
        except Exception as exc:
            raise _s3_error(exc, f"output {self.s3_uri}: could not write") from None
        finally:
            path.unlink(missing_ok=True)
            os.rmdir(self._folder)

    async def _remove_stale(self, s3: Any, deadline: Deadline) -> None:
        try:
            await bounded(lambda: s3.delete_object(Bucket=self.bucket, Key=self.key), deadline)
        except Exception as exc:  # best effort: the summary says there is no continuation
            log.warning("Could not remove a stale %s: %s", self.s3_uri, describe(exc))


class ListWriter:
    """Records kept in memory, for small batches answered inline."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.count = 0

    def prepare(self) -> None:
        pass

    def write(self, value: dict[str, Any]) -> None:
        self.values.append(value)
        self.count += 1

    async def close(self, deadline: Deadline) -> None:
        pass


Output = FileWriter | ListWriter


def open_output(uri: str, settings: Settings) -> FileWriter:
    """A writer for `uri`; nothing is made until `prepare` or the first line."""
    if uri.startswith("s3://"):
        return S3Writer(uri, settings)
    return FileWriter(uri)


async def put_bytes(
    uri: str,
    data: bytes,
    settings: Settings,
    deadline: Deadline,
    *,
    content_type: str = "application/octet-stream",
) -> None:
    """A whole object (a manifest, a picture): a local file or S3."""
    bucket, key = s3_location(uri)
    try:
        if bucket is None:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Path(uri).write_bytes(data)
            return
        await bounded(
            lambda: _s3(settings).put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            ),
            deadline,
        )
    except OSError as exc:
        raise StorageError(f"{uri}: could not write ({exc.strerror})") from None
    except Exception as exc:
        raise _s3_error(exc, f"{uri}: could not write") from None


# -- a batch's plan ------------------------------------------------------------------------------


@dataclass
class BatchPlan:
    """A batch ready to run: where its items come from and its records go."""

    shared: dict[str, Any]
    options: BatchFields
    open_items: Callable[[], Any]  # -> (async) iterable of Items, opened after the checks
    output: Output
    continuation: Output
    output_name: str | None  # for the summary (None: the records are inline)
    input_uri: str | None = None  # to queue the continuation with, in AWS
    progress: Progress | None = None
    on_start: Callable[[BatchRun], None] | None = None  # the CLI wires signals to it
    window: int = 1024  # items between reading and writing, at most
    # A file input whose unread rest can go on the queue as a part of its own when the
    # batch stops (where it starts); else the rest is read into the continuation.
    leave_rest: Resume | None = None


def file_plan(
    settings: Settings,
    shared: dict[str, Any],
    options: BatchFields,
    source: str,
    output: str | None,
    continuation: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    progress: Progress | None = None,
    on_start: Callable[[BatchRun], None] | None = None,
) -> BatchPlan:
    """The CLI's batch: items from a JSONL or CSV file (or stdin, `-`), records to a file
    (or stdout), unfinished items to `continuation`."""
    from function.batch import items_from_csv, items_from_jsonl

    async def open_items() -> Any:
        forever = Deadline(float("inf"))  # a file is read to its end: the batch may stop
        read = await open_input(source, settings, forever, field="--input")
        lines = read_lines(read, max_line=settings.max_line_bytes)
        if text_column:
            return items_from_csv(lines, text_column, id_column)
        return items_from_jsonl(lines)

    writer = open_output(output, settings) if output else FileWriter("stdout", stream=sys.stdout)
    return BatchPlan(
        shared,
        options,
        open_items,
        writer,
        open_output(continuation, settings),
        output or "stdout",
        progress=progress,
        on_start=on_start,
    )


def check_places(
    input_uri: str | None, output_uri: str | None, continuation: str | None = None
) -> None:
    """Refused before anything is read or written: an output or a continuation that is the
    input would destroy it while it is read, and an output that is its own continuation
    would interleave the two. (No output: the records go to stdout.)"""
    if output_uri is not None:
        continuation = continuation or continuation_uri(output_uri)
        if same_place(output_uri, continuation):
            raise InputError(f"output_uri: {output_uri} is also the continuation; choose another")
    if input_uri is None:
        return
    if is_prefix(input_uri):
        for name, place in (("output_uri", output_uri), ("the continuation", continuation)):
            if place is not None and place.startswith(input_uri):
                raise InputError(
                    f"{name}: {place} is under the input prefix {input_uri}: it would become "
                    "an item of its own batch; choose another output"
                )
        return
    if output_uri is not None and same_place(input_uri, output_uri):
        raise InputError(f"output_uri: {output_uri} is the input; choose another output")
    if continuation is not None and same_place(input_uri, continuation):
        raise InputError(
            f"output_uri: the continuation {continuation} would be the input {input_uri}; "
            "choose another output"
        )


def check_not_the_jobs_own(output_uri: str, settings: Settings) -> None:
    """An event's output may not land on what the job keeps for itself: the run records and
    the per-day usage totals (RESULTS_URI, but for BATCHES_URI under it), the answer cache
    and the report page. Overwritten, other runs' history and budgets would be gone."""
    for place in (output_uri, continuation_uri(output_uri)):
        kept = [
            ("HF_CACHE_URI", settings.cache_uri),
            ("REPORT_URI", settings.report_uri),
        ]
        if not _inside(place, settings.batches_uri):
            kept.append(("RESULTS_URI", settings.results_uri))
        for name, folder in kept:
            if folder and (_inside(place, folder) or same_place(place, folder)):
                raise InputError(
                    f"output_uri: {place} is under {name} ({folder}), where the job keeps "
                    f"its own; write batch outputs under BATCHES_URI ({settings.batches_uri})"
                )


def _inside(place: str, folder: str) -> bool:
    if place.startswith("s3://") or folder.startswith("s3://"):
        return s3_spelling(place).startswith(s3_spelling(folder))
    try:
        return Path(os.path.abspath(place)).is_relative_to(os.path.abspath(folder))
    except ValueError:  # a NUL byte
        return False


# -- names -------------------------------------------------------------------------------------

_GENERATION = re.compile(r"\.c(\d+)$")


def continuation_uri(output_uri: str) -> str:
    """Where a batch's unfinished items go: beside its output."""
    return f"{output_uri.removesuffix('.jsonl')}.continuation.jsonl"


def next_output_uri(output_uri: str) -> str:
    """The output of the batch that runs a continuation: `X.jsonl` -> `X.c1.jsonl` -> `X.c2...`.
    Deterministic, so a message that is delivered again rewrites the same files."""
    stem = output_uri.removesuffix(".jsonl")
    found = _GENERATION.search(stem)
    if found:
        return f"{stem[: found.start()]}.c{int(found.group(1)) + 1}.jsonl"
    return f"{stem}.c1.jsonl"


def same_place(a: str, b: str) -> bool:
    """Whether two inputs/outputs name the same file or object (stdin, `-`, is whatever
    file the shell redirected into it)."""
    if a.startswith("s3://") or b.startswith("s3://"):
        return a == b
    if a == b:
        return True
    try:
        one, two = (_stat_of(name) for name in (a, b))
    except (OSError, ValueError):
        one = two = None
    if one is not None and two is not None:
        return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)
    try:
        return STDIN not in (a, b) and os.path.abspath(a) == os.path.abspath(b)
    except ValueError:
        return False


def _stat_of(name: str) -> os.stat_result | None:
    if name == STDIN:
        return os.fstat(sys.stdin.fileno())
    return os.stat(name) if os.path.exists(name) else None


def _check_writable_kind(path: Path) -> None:
    """An output is a file (or /dev/null): a FIFO would block, a directory cannot be one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "it is a directory")
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise OSError(22, "it is a FIFO or a socket, not a file")


def _s3_error(exc: Exception, what: str) -> InputError | StorageError:
    """A missing object is the input's fault (permanent); anything else is storage's."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
    if code in ("NoSuchKey", "NoSuchBucket", "404", "InvalidRange"):
        return InputError(f"{what} ({code})")
    return StorageError(f"{what} ({describe(exc)})")
