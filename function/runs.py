"""Run records and where they are kept: a local directory (JSONL, one file a day) or S3
(one JSONL object a run under `dt=YYYY-MM-DD/`, so Athena can query it).

One record per envelope, flat so that it reads as a table:
`run_id, item, trigger, run_config, request_id, message_id, started_at, ended_at,
duration_ms, attempts, task, model, success, error_kind, characters, compute_time_s,
compute_type, where, provider, prompt_tokens, completion_tokens, tried, envelope` (`tried`:
with a fallback, every alternate's model, where it ran, error kind and duration). A batch
has one record (`kind: "batch"`) with its summary and the sums of what its items used.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from function import jsontext
from function.aws import aws_client
from function.client import Deadline
from function.envelope import Outcome, count
from function.errors import StorageError
from function.settings import Settings
from function.threads import bounded

log = logging.getLogger(__name__)


def new_run_id(now: datetime) -> str:
    """Sortable by time (to the millisecond); its date locates the run in either sink."""
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:8]}"


def run_date(run_id: str) -> date | None:
    try:
        return datetime.strptime(run_id[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass
class Run:
    """One invocation: its metadata, for every record it writes."""

    trigger: str
    started_at: datetime
    request_id: str | None = None
    run_id: str = ""

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.started_at)

    def record(self, item: int, outcome: Outcome, message_id: str | None = None) -> dict[str, Any]:
        ended = datetime.now(UTC)
        envelope = outcome.envelope
        return {
            "run_id": self.run_id,
            "item": item,
            "trigger": self.trigger,
            "run_config": outcome.run_config,
            "request_id": self.request_id,
            "message_id": message_id,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(ended),
            "duration_ms": outcome.duration_ms,
            "attempts": outcome.attempts,
            "task": outcome.task,
            "model": envelope["model"],
            "success": envelope["success"],
            "error_kind": outcome.error_kind,
            "characters": outcome.usage.characters,
            "compute_time_s": outcome.usage.compute_time_s,
            "compute_type": outcome.usage.compute_type,
            "where": outcome.where,
            "provider": outcome.usage.provider,
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "tried": outcome.tried,
            "cache_hit": outcome.cache_hit,
            "envelope": envelope,
        }

    def batch_record(
        self,
        summary: dict[str, Any],
        run_config: str | None,
        model: str | None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """One record for a whole batch (its items' records are in its output): what
        `history` lists, and the usage of the batch."""
        ended = datetime.now(UTC)
        return {
            "run_id": self.run_id,
            "item": None,
            "kind": "batch",
            "trigger": self.trigger,
            "run_config": run_config,
            "request_id": self.request_id,
            "message_id": message_id,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(ended),
            "duration_ms": round(summary.get("elapsed_s", 0) * 1000),
            "model": model,
            "success": summary.get("failed", 0) == 0 and not summary.get("continued"),
            "characters": summary.get("characters") or None,
            "prompt_tokens": summary.get("prompt_tokens") or None,
            "completion_tokens": summary.get("completion_tokens") or None,
            "compute_time_s": summary.get("compute_time_s") or None,
            "compute_type": summary.get("compute_type"),
            "cache_hits": summary.get("cache_hits", 0),
            "where": summary.get("where"),
            "provider": summary.get("provider"),
            "summary": summary,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what a record used, and the per-day totals of daily budgets (function.budget) ---------


class Used(NamedTuple):
    characters: int = 0
    tokens: int = 0

    def __add__(self, other: Any) -> Used:  # type: ignore[override]
        return Used(self.characters + other.characters, self.tokens + other.tokens)


def used_by(record: dict[str, Any]) -> Used:
    """What a run record (a single run's, or a batch's sums) used."""

    def whole(name: str) -> int:
        return count(record.get(name)) or 0

    return Used(whole("characters"), whole("prompt_tokens") + whole("completion_tokens"))


def spent_per_day(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Used]:
    """(day, run config) -> what the records used, for the per-day totals."""
    spent: dict[tuple[str, str], Used] = {}
    for record in records:
        name = total_name(record.get("run_config"))
        used = used_by(record)
        day = str(record.get("started_at") or "")[:10]
        if name and len(day) == 10 and used != (0, 0):
            spent[(day, name)] = spent.get((day, name), Used()) + used
    return spent


def total_name(run_config: Any) -> str | None:
    """The run config's name as it names its total: a path run config's file stem, with any
    character but letters, digits, `-` and `_` as `_` (no `.`: a name never climbs out of
    its day's folder)."""
    if not isinstance(run_config, str):
        return None
    stem = run_config.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in stem)
    return name[:100] or None


class Sink(Protocol):
    def write(self, run_id: str, records: list[dict[str, Any]]) -> str:
        """Store a run's records; return where they went."""

    def runs(self, since: date | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each run's records, newest run first."""

    def run(self, run_id: str) -> list[dict[str, Any]]:
        """One run's records (empty if there is no such run)."""

    def day_total(self, day: str, name: str) -> Used:
        """What run config `name` used on `day` (for a daily `budget`)."""

    def add_to_day(self, day: str, name: str, used: Used) -> None:
        """Add to that total, safely when runs overlap."""


class LocalSink:
    """`<dir>/YYYY-MM-DD.jsonl`, a line per record, appended."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, run_id: str, records: list[dict[str, Any]]) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{run_date(run_id) or date.today()}.jsonl"
        lines = "".join(jsontext.dumps(r) + "\n" for r in records)
        with path.open("a", encoding="utf-8") as file:
            file.write(lines)  # one write: concurrent runs do not interleave lines
        return str(path)

    def runs(self, since: date | None = None) -> Iterator[list[dict[str, Any]]]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.jsonl"), reverse=True):
            if since and path.stem < since.isoformat():
                break
            yield from reversed(list(_group_by_run(_read_lines(path))))

    def run(self, run_id: str) -> list[dict[str, Any]]:
        day = run_date(run_id)
        paths = [self.directory / f"{day}.jsonl"] if day else self.directory.glob("*.jsonl")
        return [
            r for p in paths if p.is_file() for r in _read_lines(p) if r.get("run_id") == run_id
        ]

    def _total(self, day: str, name: str) -> Path:
        return self.directory / "usage" / day / f"{name}.json"

    def day_total(self, day: str, name: str) -> Used:
        path = self._total(day, name)
        return _as_used(path.read_bytes(), str(path)) if path.is_file() else Used()

    def add_to_day(self, day: str, name: str, used: Used) -> None:
        import fcntl

        path = self._total(day, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.lock", "w") as lock:  # runs in other processes wait here
            fcntl.flock(lock, fcntl.LOCK_EX)
            before = path.read_bytes() if path.is_file() else None
            text = _total_text(before, used, str(path))
            temporary = path.with_suffix(".tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(path)  # whole or not at all, for readers without the lock


class S3Sink:
    """`s3://bucket/prefix/dt=YYYY-MM-DD/<run_id>.<part>.jsonl`: an object for each time a
    run stores records (an SQS invocation stores its batches and its single runs apart, and
    one must never replace another), read back together as the run's records."""

    def __init__(self, bucket: str, prefix: str, timeout_s: float = 10.0) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.s3 = aws_client("s3", timeout_s)

    def _day(self, run_id: str) -> str:
        return f"{self.prefix}dt={run_date(run_id) or date.today()}/"

    def write(self, run_id: str, records: list[dict[str, Any]]) -> str:
        body = "".join(jsontext.dumps(r) + "\n" for r in records).encode()
        key = f"{self._day(run_id)}{run_id}.{uuid.uuid4().hex[:8]}.jsonl"
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
        )
        return f"s3://{self.bucket}/{key}"

    def runs(self, since: date | None = None) -> Iterator[list[dict[str, Any]]]:
        start_after = f"{self.prefix}dt={since.isoformat()}" if since else ""
        keys = self._keys(self.prefix, start_after)
        keys.sort(key=lambda k: k.rsplit("/", 1)[-1], reverse=True)  # a run's parts together
        # READ_AHEAD objects at once (a report reads a fortnight of them), in order; a
        # reader that stops early (history --limit) waits for one window at most.
        from concurrent.futures import ThreadPoolExecutor

        run: list[dict[str, Any]] = []
        run_id = None
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="hf-run-job-read") as pool:
            for start in range(0, len(keys), READ_AHEAD):
                window = keys[start : start + READ_AHEAD]
                for key, records in zip(window, pool.map(self._read, window), strict=True):
                    if run and _run_of(key) != run_id:
                        yield run
                        run = []
                    run_id = _run_of(key)
                    run += records
        if run:
            yield run

    def run(self, run_id: str) -> list[dict[str, Any]]:
        return [
            r for key in sorted(self._keys(self._day(run_id) + run_id)) for r in self._read(key)
        ]

    def _keys(self, prefix: str, start_after: str = "") -> list[str]:
        """Record objects only: `dt=YYYY-MM-DD/<run id>[.<part>].jsonl` (batch outputs may
        share the prefix)."""
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after):
            keys += [
                o["Key"]
                for o in page.get("Contents", [])
                if o["Key"].endswith(".jsonl")
                and o["Key"].removeprefix(self.prefix).startswith("dt=")
            ]
        return keys

    def _read(self, key: str) -> list[dict[str, Any]]:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:  # expired (lifecycle rule) since it was listed
            return []
        return list(_records(body.decode("utf-8", "replace").splitlines(), key))

    def _total(self, day: str, name: str) -> str:
        return f"{self.prefix}usage/{day}/{name}.json"

    def day_total(self, day: str, name: str) -> Used:
        key = self._total(day, name)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return Used()
        return _as_used(body, key)

    def add_to_day(self, day: str, name: str, used: Used) -> None:
        """Read, add, write back only if nobody wrote meanwhile (If-Match on the ETag read,
        If-None-Match for a new total); else read again, a few times."""
        from botocore.exceptions import ClientError

        key = self._total(day, name)
        for attempt in range(TOTAL_TRIES):
            try:
                got = self.s3.get_object(Bucket=self.bucket, Key=key)
                before, condition = got["Body"].read(), {"IfMatch": got["ETag"]}
            except self.s3.exceptions.NoSuchKey:
                before, condition = None, {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_total_text(before, used, key).encode(),
                    ContentType="application/json",
                    **condition,
                )
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    raise
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # another run wrote first
        raise StorageError(f"the usage total {key} changed under every one of {TOTAL_TRIES} tries")


def _run_of(key: str) -> str:
    """The run id in a record object's name (`<run_id>.jsonl` or `<run_id>.<part>.jsonl`)."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


TOTAL_TRIES = 8
READ_AHEAD = 64


def _as_used(data: bytes | None, where: str) -> Used:
    return _parse_total(data, where)[0]


def _parse_total(data: bytes | None, where: str) -> tuple[Used, int]:
    """A usage total's (characters, tokens) and runs; a damaged one counts from zero."""
    try:
        total = jsontext.parse(data) if data else {}
    except ValueError:
        total = None
    if not isinstance(total, dict):
        log.warning("The usage total %s is damaged: counted from zero", where)
        return Used(), 0
    used = Used(count(total.get("characters")) or 0, count(total.get("tokens")) or 0)
    return used, count(total.get("runs")) or 0


def _total_text(before: bytes | None, used: Used, where: str) -> str:
    was, runs = _parse_total(before, where)
    total = was + used
    return jsontext.dumps(
        {"characters": total.characters, "tokens": total.tokens, "runs": runs + 1}
    )


def open_sink(uri: str, timeout_s: float = 10.0) -> Sink:
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"RESULTS_URI {uri!r} names no bucket; expected s3://bucket/prefix/")
        return S3Sink(parts.netloc, parts.path, timeout_s)
    if parts.scheme not in ("", "file"):
        raise ValueError(f"RESULTS_URI {uri!r}: expected a directory or s3://bucket/prefix/")
    return LocalSink(Path(parts.path if parts.scheme == "file" else uri))


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as file:  # a bad byte: one bad line
        yield from _records(file, str(path))


def _records(lines: Iterable[str], where: str) -> Iterator[dict[str, Any]]:
    """The records of a sink's file; a damaged line (not JSON, not an object) is skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:  # strict: no NaN, no 5,000-digit number, no nesting past jsontext's limit
            record = jsontext.parse(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            yield record
        else:
            log.warning("Skipping a damaged line %d of %s", number, where)


def _group_by_run(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    current: list[dict[str, Any]] = []
    for record in records:
        if current and record.get("run_id") != current[0].get("run_id"):
            yield current
            current = []
        current.append(record)
    if current:
        yield current


async def store_image(
    settings: Settings, data: bytes, content_type: str, deadline: Deadline
) -> str:
    """A picture a run made, beside the run records, named by its content (the same picture
    is stored once): `<RESULTS_URI>/images/YYYY-MM-DD/<sha256>.png`. Its URI."""
    from function.storage import put_bytes

    extension = content_type.partition("/")[2].replace("jpeg", "jpg") or "bin"
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
    base = settings.results_uri.removeprefix("file://").rstrip("/")
    uri = f"{base}/images/{datetime.now(UTC):%Y-%m-%d}/{name}"
    await put_bytes(uri, data, settings, deadline, content_type=content_type)
    return uri


async def store(
    settings: Settings, run: Run, records: list[dict[str, Any]], deadline: Deadline
) -> None:
    """Write the run's records, within the deadline; StorageError if they could not be."""
    try:
        # The sink is made in the thread too: a process's first S3 client takes a while.
        where = await bounded(
            lambda: open_sink(settings.results_uri, settings.aws_timeout_s).write(
                run.run_id, records
            ),
            deadline,
        )
    except TimeoutError:
        raise StorageError(
            f"RESULTS_URI {settings.results_uri}: no answer before the deadline"
        ) from None
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StorageError(
            f"RESULTS_URI {settings.results_uri}: could not store ({reason})"
        ) from None
    log.info("Stored the run's records", extra={"location": where, "records": len(records)})
    spent = spent_per_day(records)
    if spent:
        try:
            await bounded(lambda: _add_to_days(settings, spent), deadline)
        except TimeoutError:
            log.error("No time left to add to the usage totals: a daily budget undercounts")


def _add_to_days(settings: Settings, spent: dict[tuple[str, str], Used]) -> None:
    sink = open_sink(settings.results_uri, settings.aws_timeout_s)
    for (day, name), used in spent.items():
        try:
            sink.add_to_day(day, name, used)
        except Exception as exc:  # the records are stored: they still count in `usage`
            log.error(
                "Could not add to the usage total of %s on %s (%s): a daily budget undercounts",
                name,
                day,
                getattr(exc, "message", None) or type(exc).__name__,
            )


async def used_today(
    settings: Settings, run_config: str | None, day: str, deadline: Deadline
) -> Used:
    """What a run config used on `day` so far, from its total (a daily budget)."""
    name = total_name(run_config)
    if name is None:
        return Used()
    return await bounded(
        lambda: open_sink(settings.results_uri, settings.aws_timeout_s).day_total(day, name),
        deadline,
    )
