"""Many items in one run: the engine. Items in (an async stream), records out in input
order, a continuation for what did not finish. It knows nothing of AWS, files or HTTP: the
lifecycle hands it the items, the writers, and how to run one item.

Every item ends as exactly one output record or exactly one continuation line:
- an item that cannot be read (a malformed line) is a failure record at once, naming the
  line; it is never run and never continued;
- an item that ran is a record, unless the deadline ended it (`Outcome.out_of_time`);
- when the batch stops (the deadline, or Ctrl-C / SIGTERM on the CLI), the items in flight
  are cancelled and, with the items not yet started, written to the continuation as they
  came in, with their `id` (an item without one keeps its original position).
Memory stays flat: at most `window` items run at once, at most `REORDER x window` items
are between reading and writing, and no new item starts while the answers waiting, plus
those the running items will bring at the average size so far, pass `PENDING_BYTES`. Records
go out in input order, so an item that waits (a Retry-After) holds back the ones after it;
the items behind it keep running until the reorder bound, not just the window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from function import jsontext
from function.budget import Budget
from function.client import Deadline
from function.envelope import Outcome, Usage, failure_envelope
from function.errors import InputError, RunJobError
from function.redact import redact, redact_value
from function.runs import Used

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resume:
    """Where the rest of a file input starts: the byte offset, its line number, its index."""

    offset: int
    line: int
    index: int


@dataclass
class Item:
    """One input item: its position in the whole input, its id, its run input fields (or why
    it has none), and for file inputs where the input goes on after it."""

    index: int
    id: Any
    fields: dict[str, Any]
    problem: InputError | None = None
    after: Resume | None = None


@dataclass(frozen=True)
class Line:
    """A line of an input file: its number, its bytes, or why it could not be read whole."""

    number: int
    data: bytes
    problem: str | None = None
    size: int = 0  # bytes it takes in the input, line end included


def items_from_list(values: Iterable[Any], where: str = "items") -> Iterator[Item]:
    """`items`: objects of run inputs, each with an optional `id`; or `text`: strings."""
    for index, value in enumerate(values):
        yield _item(index, value, f"{where}[{index}]")


async def items_from_jsonl(
    lines: AsyncIterable[Line], start: Resume | None = None
) -> AsyncIterator[Item]:
    """A JSONL input, a line an item (a JSON object, or a JSON string: the text). Blank lines
    are skipped; a line that is not usable JSON is an item with a problem naming it. `start`
    places a part of a file in the whole (its offset, first line number and first index)."""
    offset, index = (start.offset, start.index) if start else (0, 0)
    async for line in lines:
        offset += line.size
        if line.problem is None and not line.data.strip():
            continue
        if line.problem is not None:
            item = _broken(index, f"line {line.number}: {line.problem}")
        else:
            try:
                value = jsontext.parse(line.data)
            except ValueError as exc:  # a line is one line: its column is enough
                reason = str(exc).replace("(line 1, column", "(column")
                item = _broken(index, f"line {line.number}: {reason}")
            else:
                item = _item(index, value, f"line {line.number}")
        index += 1
        item.after = Resume(offset, line.number + 1, index)
        yield item


async def items_from_csv(
    lines: AsyncIterable[Line], text_column: str, id_column: str | None = None
) -> AsyncIterator[Item]:
    """A CSV input with a header row: each row's `text_column` is the item's text and its
    `id_column` (by default `id`, when the file has one) its id. Other columns are ignored.
    A quoted field may hold line breaks: a row ends where its quotes are balanced."""
    header: list[str] | None = None
    index = 0
    async for first, row, problem in _csv_rows(lines):
        if header is None:
            if problem is not None or text_column not in row:
                raise InputError(
                    f"--text-column: the CSV header has no column {text_column!r}"
                    + (f" (columns: {', '.join(row)})" if problem is None else f" ({problem})")
                )
            if id_column is not None and id_column not in row:
                raise InputError(
                    f"--id-column: the CSV header has no column {id_column!r} "
                    f"(columns: {', '.join(row)})"
                )
            id_column = id_column or ("id" if "id" in row else None)
            header = row
            continue
        if problem is not None or len(row) != len(header):
            yield _broken(index, problem or f"line {first}: expected {len(header)} columns")
        else:
            values = dict(zip(header, row, strict=True))
            item_id = values[id_column] if id_column and id_column in values else index
            yield Item(index, item_id, {"text": values[text_column]})
        index += 1


MAX_CSV_ROW = 1024 * 1024


async def _csv_rows(
    lines: AsyncIterable[Line],
) -> AsyncIterator[tuple[int, list[str], str | None]]:
    """(first line number, fields, problem) per CSV row, blank lines skipped."""
    import csv

    pending, first = "", 0
    async for line in lines:
        if line.problem is not None:
            pending = ""
            yield line.number, [], f"line {line.number}: {line.problem}"
            continue
        try:
            text = line.data.decode("utf-8-sig" if line.number == 1 else "utf-8")
        except UnicodeDecodeError:
            pending = ""
            yield line.number, [], f"line {line.number}: not valid UTF-8"
            continue
        if not pending:
            if not text.strip():
                continue
            first = line.number
        pending += text
        if len(pending) > MAX_CSV_ROW:
            pending = ""
            yield first, [], f"line {first}: a row runs past {MAX_CSV_ROW:,} characters"
            continue
        if pending.count('"') % 2:  # inside a quoted field: the row goes on
            continue
        try:
            (row,) = csv.reader([pending])
            problem = None
        except (ValueError, csv.Error) as exc:
            row, problem = [], f"line {first}: not a CSV row ({type(exc).__name__})"
        pending = ""
        yield first, row, problem
    if pending:
        yield first, [], f"line {first}: a quoted field is not closed"


def _item(index: int, value: Any, where: str) -> Item:
    if isinstance(value, str):
        return Item(index, index, {"text": value})
    if not isinstance(value, dict):
        return _broken(index, f"{where}: expected an object of run inputs or a text")
    fields = dict(value)
    return Item(index, fields.pop("id", index), fields)


def _broken(index: int, problem: str) -> Item:
    return Item(index, index, {}, InputError(problem))


# -- records and the summary --------------------------------------------------------------


class Writer(Protocol):
    def write(self, value: dict[str, Any]) -> None: ...


def failure_record(item: Item, problem: RunJobError) -> dict[str, Any]:
    return {**failure_envelope(problem.message, model=None), "id": _shown(item.id)}


def _shown(id_: Any) -> Any:
    """An item's id as its record shows it: a token given as an id is masked."""
    return redact(id_) if isinstance(id_, str) else redact_value(id_)  # in a list id too


@dataclass
class Summary:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    continued: int = 0
    characters: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    compute_time_s: float = 0.0
    # Compute seconds per hardware (x-compute-type: a batch may run on a CPU and a GPU).
    compute_by_type: dict[str, float] = field(default_factory=dict)
    places: set[tuple[str | None, str | None]] = field(default_factory=set)  # where, provider
    cache_hits: int = 0
    failed_by_kind: dict[str, int] = field(default_factory=dict)  # error kind -> items
    # The first failed item in input order (position, id, error): why, when all failed.
    first_failure: tuple[int, Any, str] | None = None
    # Records ready, written or waiting for an earlier item to be written (the progress):
    # a local model runs its texts by length, so a long text holds back the order a while.
    answered: int = 0
    stopped: str | None = None  # "deadline" | "interrupted" when items were continued
    elapsed_s: float = 0.0

    def count(self, usage: Usage) -> None:
        """What one item used, added to the batch's (its record sums them: `usage`)."""
        self.characters += usage.characters or 0
        self.prompt_tokens += usage.prompt_tokens or 0
        self.completion_tokens += usage.completion_tokens or 0
        self.compute_time_s += usage.compute_time_s or 0.0
        if usage.compute_type:
            seconds = self.compute_by_type.get(usage.compute_type, 0.0)
            self.compute_by_type[usage.compute_type] = seconds + (usage.compute_time_s or 0.0)

    def count_failure(self, kind: str | None, seq: int, record: dict[str, Any]) -> None:
        """A failed item's record (its id shown as the record shows it)."""
        kind = kind or "unknown"
        self.failed_by_kind[kind] = self.failed_by_kind.get(kind, 0) + 1
        if self.first_failure is None or seq < self.first_failure[0]:
            error = redact(str(record.get("error")))  # masked: a reply never shows the token
            self.first_failure = (seq, record.get("id"), error)

    def as_dict(self) -> dict[str, Any]:
        done = self.succeeded + self.failed
        summary: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "items_per_s": round(done / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }
        if self.failed_by_kind:
            summary["failed_by_kind"] = dict(sorted(self.failed_by_kind.items()))
        if self.first_failure is not None:
            _, id_, error = self.first_failure
            summary["first_failure"] = {"id": id_, "error": error}
        if self.continued:
            summary["continued"] = self.continued
            summary["stopped"] = self.stopped
        return summary


Progress = Callable[[Summary], None]


# -- the engine ---------------------------------------------------------------------------


PENDING_BYTES = 16 * 1024 * 1024
START_BURST = 64  # items started before those started run a step
REORDER = 4  # finished records that may wait for an earlier item: this many windows
NEAR_S = 1.0  # an item out of time with less than this left: the batch stops


class BatchRun:
    """One pass over the items. `stop()` (a signal handler, the deadline's timer) cancels
    what is in flight; the rest of the items are read and continued."""

    def __init__(
        self,
        run_item: Callable[[Item], Awaitable[Outcome]],
        output: Writer,
        continuation: Writer,
        *,
        stop_at: Deadline,
        window: int = 1024,
        progress: Progress | None = None,
        leave_rest: Resume | None = None,
        shared: dict[str, Any] | None = None,
        on_read_all: Callable[[], None] | None = None,
        budget: Budget | None = None,
        used: Used | None = None,
    ) -> None:
        self.run_item = run_item
        self.budget = budget
        self.used = used or Used()  # what a daily budget counted before this batch
        self._counted = 0  # items whose use is in the summary
        self.output = output
        self.continuation = continuation
        self.stop_at = stop_at
        self.window = window
        self.progress = progress
        # A file input whose unread rest another run can take (AWS: a part on the queue):
        # once stopped, the batch reads no further. Else the rest is read into the
        # continuation. The value is where the input starts.
        self.leave_rest = leave_rest
        self.rest: Resume | None = None
        self.shared = shared or {}
        self.on_read_all = on_read_all
        self.summary = Summary()
        self._finished: dict[int, tuple[bool, dict[str, Any]]] = {}  # seq -> (record?, line)
        self._sizes: dict[int, int] = {}  # seq -> bytes of the answer behind its record
        self._pending_bytes = 0
        self._answers, self._answer_bytes = 0, 0  # every answer so far, for the average
        self._running: dict[int, asyncio.Task[None]] = {}
        self._next_out = 0
        self._wake = asyncio.Event()
        self._check_budget()  # a daily budget may be used up before the first item

    def stop(self, reason: str) -> None:
        if self.summary.stopped is None:
            self.summary.stopped = reason
            log.info("The batch stops (%s): what is in flight goes to the continuation", reason)
        for task in self._running.values():
            task.cancel()
        self._wake.set()

    async def run(self, items: AsyncIterable[Item] | Iterable[Item]) -> Summary:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        remaining = self.stop_at.remaining()
        timer = (
            loop.call_later(remaining, self.stop, "deadline") if math.isfinite(remaining) else None
        )
        try:
            seq = 0
            source = _aiter(items)
            resume = self.leave_rest
            while True:
                if self.summary.stopped is not None and self.leave_rest is not None:
                    self.rest = resume  # unread: another run takes it from here
                    break
                item = await anext(source, None)
                if item is None:
                    break
                resume = item.after
                self.summary.total += 1
                while self._running and (
                    len(self._running) >= min(self.window, self._budget_window())
                    or seq - self._next_out >= self.window * REORDER
                    or self._over_budget()
                ):
                    await self._settle()
                if item.problem is not None:
                    self._answered(seq, self._failed(seq, item, item.problem))
                elif self.summary.stopped is not None:
                    self._finished[seq] = (False, self.continuation_line(item))
                else:
                    self._start(seq, item)
                    if seq % START_BURST == START_BURST - 1:
                        await asyncio.sleep(0)  # the first items go on while the rest start
                seq += 1
                self._write_ready()
            if self.on_read_all is not None:
                self.on_read_all()
            while self._running:
                await self._settle()
            self._write_ready()
        except BaseException:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _over_budget(self) -> bool:
        """Whether the answers waiting to be written, and those the running items will
        bring (at the average size so far), would pass PENDING_BYTES."""
        if not self._answers:
            return False
        average = self._answer_bytes / self._answers
        return self._pending_bytes + average * len(self._running) > PENDING_BYTES

    def _start(self, seq: int, item: Item) -> None:
        task = asyncio.ensure_future(self.run_item(item))
        self._running[seq] = task
        # A callback, not a try/finally in a wrapper: a task cancelled before it ever ran
        # runs none of its code, and its item must still land somewhere.
        task.add_done_callback(lambda done: self._settled(seq, item, done))

    def _settled(self, seq: int, item: Item, task: asyncio.Future[Outcome]) -> None:
        self._running.pop(seq, None)
        self._wake.set()
        if task.cancelled():  # the batch stopped while it was in flight
            self._finished[seq] = (False, self.continuation_line(item))
            return
        error = task.exception()
        if error is not None:  # run_item never raises; still, no item is lost
            log.error("Unexpected error running an item", exc_info=error)
            problem = RunJobError(f"Internal error ({type(error).__name__}); see the logs")
            self._answered(seq, self._failed(seq, item, problem))
            return
        outcome = task.result()
        if outcome.out_of_time:  # the deadline came before it could finish: continued
            self._finished[seq] = (False, self.continuation_line(item))
            # The batch stops only when the deadline is near for everyone: an item told to
            # come back after the deadline (a long Retry-After) holds up no other.
            if self.stop_at.remaining() < NEAR_S:
                self.stop("deadline")
        else:
            record = {**outcome.envelope, "id": _shown(item.id)}
            self._answered(seq, record)
            if not outcome.success:
                self.summary.count_failure(outcome.error_kind, seq, record)
            self.summary.count(outcome.usage)
            self._counted += 1
            if outcome.where is not None:  # an item refused before it ran went nowhere
                self.summary.places.add((outcome.where, outcome.usage.provider))
            self.summary.cache_hits += outcome.cache_hit
            self._check_budget()
            if outcome.size:
                self._sizes[seq] = outcome.size
                self._pending_bytes += outcome.size
                self._answers += 1
                self._answer_bytes += outcome.size

    def _answered(self, seq: int, record: dict[str, Any]) -> None:
        """An item's record, written once the items before it are."""
        self._finished[seq] = (True, record)
        self.summary.answered += 1

    def _failed(self, seq: int, item: Item, problem: RunJobError) -> dict[str, Any]:
        record = failure_record(item, problem)
        self.summary.count_failure(problem.kind, seq, record)
        return record

    def _budget_window(self) -> int:
        """With a budget, the items in flight are what is left of it divided by what an item
        has cost so far (one until an item has finished), so that the items in flight when
        it is reached overshoot it by little."""
        if self.budget is None:
            return self.window
        if not self._counted:
            return 1
        mine = self._spent()
        used = self.used + mine
        room = self.window
        for limit, total, cost in (
            (self.budget.characters, used.characters, mine.characters),
            (self.budget.tokens, used.tokens, mine.tokens),
        ):
            if limit is None:
                continue
            if cost > 0:
                room = min(room, max(1, int((limit - total) * self._counted / cost)))
            else:  # nothing has cost anything yet (failures, cache hits): widen one at a time
                room = min(room, self._counted + 1)
        return room

    def _spent(self) -> Used:
        """What this batch's items used so far."""
        spent = self.summary
        return Used(spent.characters, spent.prompt_tokens + spent.completion_tokens)

    def _check_budget(self) -> None:
        """At the budget (what was used before, a daily budget's, and what this batch used),
        nothing new starts; what is in flight finishes."""
        budget, summary = self.budget, self.summary
        if (
            budget is not None
            and summary.stopped is None
            and budget.reached(self.used + self._spent())
        ):
            summary.stopped = "budget"
            log.info("The batch reached its budget: the items not started are continued")

    def continuation_line(self, item: Item) -> dict[str, Any]:
        """The item as the next batch takes it: the batch's shared fields under its own (so
        the continuation runs alike without them), and its id (its position if it had none).
        A null stays null: it removes a run config's value there too."""
        line = {k: v for k, v in self.shared.items() if k != "budget"}  # the batch's, not an item's
        for key, value in item.fields.items():
            if key == "parameters" and isinstance(value, dict) and isinstance(line.get(key), dict):
                line[key] = {**line[key], **value}
            else:
                line[key] = value
        line["id"] = item.id
        return line

    async def _settle(self) -> None:
        self._wake.clear()
        await self._wake.wait()
        self._write_ready()

    def _write_ready(self) -> None:
        summary = self.summary
        while self._next_out in self._finished:
            is_record, line = self._finished.pop(self._next_out)
            self._pending_bytes -= self._sizes.pop(self._next_out, 0)
            if is_record:
                self.output.write(line)
                if line["success"]:
                    summary.succeeded += 1
                else:
                    summary.failed += 1
            else:
                self.continuation.write(line)
                summary.continued += 1
            self._next_out += 1
        if self.progress:
            self.progress(summary)


async def _aiter(items: AsyncIterable[Item] | Iterable[Item]) -> AsyncIterator[Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
