"""The one lifecycle of an invocation, for every trigger (Lambda events and the CLI alike).

    event -> triggers.read_event -> Invocation (pure)
    Lifecycle:  settings -> deadline -> token and pre-flight checks (once)
                -> a session -> each request: one run, or a batch (engine + storage)
                -> retry / acknowledge / continue (`Done`), decided here and only here
                -> run records stored (bounded by the deadline)
    -> replies.reply -> the trigger's own reply shape (pure)

The deadline: the Lambda context's remaining time less `HF_DEADLINE_MARGIN` (else the CLI's
--timeout, else HF_DEFAULT_BUDGET). Work stops a reserve before it, so that outputs and
records are written and the reply goes out in time whatever a peer does.

Retry or acknowledge: a request goes back to the queue when its failure is transient
(timeouts, 429/5xx after retries, a model still loading at the deadline, storage failures,
configuration errors); invalid input and other 4xx are stored and acknowledged. A batch is
acknowledged once its records are written and its continuation (if any) is queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from function.backends import remember_keys, where
from function.client import Deadline, Fetcher, HFClient, new_http_client
from function.envelope import Outcome
from function.errors import BudgetError, ConfigError, InputError, RunJobError, StorageError
from function.inference import check_ready, run_inference
from function.inputs import (
    MEDIA_TASKS,
    RunInputs,
    batch_base,
    merge_inputs,
    overlay,
    requested_model,
    run_config_name,
    runs_locally,
    split_comparison,
    validate_inputs,
)
from function.observability import configure_logging, record_metrics, start_invocation
from function.redact import redact
from function.replies import Done, reply
from function.runs import Run, Used, store, used_today
from function.secrets import resolve_token
from function.settings import Settings, load_settings
from function.triggers import Invocation, Request, Trigger, read_event

if TYPE_CHECKING:
    from function.batch import Resume
    from function.batchfields import BatchFields
    from function.budget import Budget
    from function.limiter import AdaptiveLimiter
    from function.storage import BatchPlan

log = logging.getLogger(__name__)

INLINE_LIMIT = 100  # batches this small with no output target answer their records inline
RESERVE_S = 2.0  # work stops this long before the deadline (a quarter of a short budget)
FINISH_S = 0.1  # and writing this long before it
MEDIA_SLOTS = 16  # runs holding an image or a sound at once (16 x 10 MB at the default limit)


@dataclass(repr=False)
class Handled:
    """The trigger's reply, and whether everything in it succeeded (the CLI's exit status)."""

    reply: Any
    ok: bool

    def __repr__(self) -> str:
        # asyncio.run writes out its main task (and so this result) when it restores the
        # SIGINT handler: a reply of many megabytes took seconds to print past the deadline.
        return f"Handled(ok={self.ok})"


async def handle_event(event: Any, context: Any = None) -> Handled:
    """The Lambda handler's work (and `hf-run-job run --event`). Never raises."""
    configure_logging()
    return await handle(read_event(event), context=context)


async def handle(
    invocation: Invocation,
    *,
    context: Any = None,
    timeout: float | None = None,
    plan: BatchPlan | None = None,
) -> Handled:
    """Run an invocation to its reply. `plan` is a batch the CLI has set up (its input,
    output and progress); otherwise batches come from the requests' fields."""
    run = Run(invocation.trigger, datetime.now(UTC), _request_id(context))
    start_invocation(run_id=run.run_id, trigger=run.trigger, request_id=run.request_id)
    try:
        settings = load_settings()
    except ConfigError as exc:
        log.error("Invalid settings: %s", exc.message)
        done = [_failed(exc, request) for request in invocation.requests]
        return Handled(reply(invocation.trigger, done), ok=False)
    work = None
    if plan is not None:  # the CLI's batch: --timeout stops the work; writing is not cut short
        deadline = Deadline(math.inf)
        work = Deadline(timeout if timeout is not None else math.inf)
    elif timeout is not None:
        deadline = Deadline(timeout)
    else:
        deadline = Deadline.for_invocation(context, settings)
    lifecycle = Lifecycle(settings, deadline, run, work)
    try:
        done = await lifecycle.run(invocation.requests, plan)
    except Exception as exc:  # a bug must still give the trigger its reply
        log.exception("Unexpected error handling the invocation")
        problem = RunJobError(f"Internal error ({type(exc).__name__}); see the logs")
        problem.transient = True  # nothing is known to be stored: let a queue try again
        done = [_failed(problem, request) for request in invocation.requests]
    if settings.in_lambda:
        record_metrics(lifecycle.outcomes, done)
    return Handled(reply(invocation.trigger, done), ok=all(d.ok for d in done))


def _failure(error: RunJobError, model: str | None = None) -> Outcome:
    outcome = Outcome.failed(error, model=model)
    outcome.envelope["error"] = redact(outcome.envelope["error"] or "")
    return outcome


def _failed(error: RunJobError, request: Request, model: str | None = None) -> Done:
    """A request that did not run: its failure envelope, retried if the failure is
    transient. The one place that decides retry-or-acknowledge from an error."""
    return _done(_failure(error, model), request)


def _usage(outcome: Outcome) -> dict[str, Any]:
    """What an answer reported about its cost, the fields that were given."""
    usage = {
        "provider": outcome.usage.provider,
        "prompt_tokens": outcome.usage.prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens,
        "characters": outcome.usage.characters,
        "compute_time_s": outcome.usage.compute_time_s,
    }
    return {k: v for k, v in usage.items() if v is not None}


def _done(outcome: Outcome, request: Request) -> Done:
    return Done(
        outcome.envelope,  # type: ignore[arg-type]
        outcome.http_status,
        retry=outcome.transient,
        ok=outcome.success,
        message_id=request.message_id,
    )


class Lifecycle:
    def __init__(
        self, settings: Settings, deadline: Deadline, run: Run, work: Deadline | None = None
    ) -> None:
        self.settings = settings
        self.run_meta = run
        # Work stops early enough to write outputs and records, and to reply, in time; the
        # writing itself ends a moment before the deadline, for the reply to go out.
        self.work = work or deadline.before(min(RESERVE_S, deadline.remaining() / 4))
        self.deadline = deadline.before(min(FINISH_S, deadline.remaining() / 20))
        # The CLI may name run configs by path; an event names them only.
        self.paths = run.trigger == "cli"
        self.token: str | None = None
        self.outcomes: list[Outcome] = []  # every single run's, for the metrics
        # Images and sounds held in memory at once (each up to HF_MEDIA_MAX_BYTES).
        self.media_slots = asyncio.Semaphore(MEDIA_SLOTS)

    async def run(self, requests: Iterable[Request], plan: BatchPlan | None = None) -> list[Done]:
        requests = tuple([await self._uploaded(r) for r in requests])
        try:  # pre-flight, once: a batch without a token is one error, not N item failures
            self.token = await resolve_token(self.settings, self.work)
            remember_keys(self.settings)
            needs_token = any(self._may_call_hugging_face(r) for r in requests)
            check_ready(self.settings, self.token, needs_token=needs_token)
        except ConfigError as exc:
            log.error("Cannot run: %s", exc.message)
            outcomes = [_failure(exc, self._model_of(r)) for r in requests]
            self.outcomes += outcomes  # the dashboard's failures: a broken secret shows
            if self.run_meta.trigger != "sqs":  # queued messages go back and will run again
                await self._keep_failures(requests, outcomes)
            return [_done(o, r) for r, o in zip(requests, outcomes, strict=True)]
        if plan is not None:
            return [await self._batch(requests[0], plan)]
        singles = [r for r in requests if not r.is_batch and not r.is_comparison]
        done = {id(r): d for r, d in zip(singles, await self._singles(singles), strict=True)}
        for request in requests:
            if request.is_batch:
                done[id(request)] = await self._batch(request)
            elif request.is_comparison:
                done[id(request)] = await self._compare(request)
        if self.run_meta.trigger == "schedule" and self.settings.report_uri:
            await self._rewrite_report()
        return [done[id(r)] for r in requests]

    async def _rewrite_report(self) -> None:
        """A scheduled run rewrites the report page (REPORT_URI) once its records are
        stored; a page that cannot be written is logged, never a failure of the runs."""
        from function.aws import describe
        from function.report import write_report
        from function.runs import open_sink
        from function.threads import bounded

        settings = self.settings
        try:
            where = await bounded(
                lambda: write_report(
                    open_sink(settings.results_uri, settings.aws_timeout_s),
                    settings,
                    settings.report_uri,
                ),
                self.deadline,
            )
        except Exception as exc:
            log.error("Could not rewrite the report page: %s", describe(exc))
            return
        log.info("Rewrote the report page", extra={"location": where})

    async def _uploaded(self, request: Request) -> Request:
        """An S3 upload's request as the run it starts (`function.uploads`)."""
        if request.upload is None or request.problem is not None:
            return request
        from function.uploads import upload_fields

        try:
            fields = await upload_fields(request.upload, self.settings, self.work)
        except RunJobError as exc:
            log.warning("Upload %s starts no run: %s", request.upload, exc.message)
            return replace(request, problem=exc)
        return replace(request, fields=fields)

    async def _keep_failures(self, requests: tuple[Request, ...], outcomes: list[Outcome]) -> None:
        """The run records of requests that could not start, for `history`."""
        records = []
        for i, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
            if request.problem is not None and request.problem.kind == "own_output":
                continue  # the job's own output: its record would be output again
            outcome.run_config = run_config_name(request.fields, self.settings)
            records.append(self.run_meta.record(i, outcome, request.message_id))
        try:
            await store(self.settings, self.run_meta, records, self.deadline)
        except RunJobError as exc:
            log.error("Could not store the run records: %s", exc.message)

    def _may_call_hugging_face(self, request: Request) -> bool:
        """Whether a request may need the token: all but those whose runs are all in this
        process (`provider: local`, fallbacks and comparisons included), and those whose
        inputs cannot run anywhere (no such run config, unknown fields): their own error
        says what to fix, not a missing token. Its other problems are found when it runs."""
        try:
            fields = request.fields
            if request.is_batch:
                from function.batchfields import split_batch

                fields = split_batch(fields)[1]
            compared = {}
            if request.is_comparison:  # the fields its runs share, as `_compare` takes them
                compared = {"compare": fields["compare"]}
                fields = split_comparison(fields)[1]
            merged = {**merge_inputs(fields, self.settings, paths=self.paths), **compared}
        except InputError:
            return False
        except Exception:
            return True
        return not runs_locally(merged)

    def _model_of(self, request: Request) -> str | None:
        """The model a request asks for, for an envelope of a run that could not start."""
        if request.problem is not None or request.is_batch:
            return None
        try:
            return requested_model(merge_inputs(request.fields, self.settings, paths=self.paths))
        except Exception:
            return requested_model(request.fields)

    # -- single runs -------------------------------------------------------------------------

    async def _singles(self, requests: list[Request]) -> list[Done]:
        if not requests:
            return []
        limit = asyncio.Semaphore(self.settings.sqs_concurrency)

        async def one(request: Request, client: Fetcher) -> Outcome:
            if request.problem is not None:
                return Outcome.failed(request.problem, model=None)
            async with limit:
                return await self.run_one(request.fields, client)

        async with self._client() as client:
            outcomes = await asyncio.gather(*(one(r, client) for r in requests))
        self.outcomes += outcomes
        done = [_done(o, r) for r, o in zip(requests, outcomes, strict=True)]
        # A message that goes back to its queue will run again: only its last run is stored.
        queued = self.run_meta.trigger == "sqs"
        records = [
            self.run_meta.record(i, o, r.message_id)
            for i, (r, o) in enumerate(zip(requests, outcomes, strict=True))
            if not (queued and o.transient) and o.error_kind != "own_output"
        ]
        if records:
            try:
                await store(self.settings, self.run_meta, records, self.deadline)
            except RunJobError as exc:  # what is not stored goes back to a queue
                log.error("Could not store the run records: %s", exc.message)
                done = [replace(d, retry=True) for d in done]
        return done

    async def run_one(
        self,
        fields: Mapping[str, Any],
        client: Fetcher,
        base: Mapping[str, Any] | None = None,
        shared: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Merge, validate and run one inference; never raises. `fields` lie over the run
        config, or over `base` (a batch's run config and `shared` fields); a batch item
        that names its own run config starts from that one, under the shared fields."""
        model: str | None = None
        inputs: RunInputs | None = None
        started = time.monotonic()
        try:
            if base is not None and fields.get("run_config") is not None:
                own = {**(shared or {}), "run_config": fields["run_config"]}
                base = batch_base(own, self.settings, paths=self.paths)
            merged = (
                overlay(base, fields)
                if base is not None
                else merge_inputs(fields, self.settings, paths=self.paths)
            )
            model = requested_model(merged)
            if base is not None and "budget" in fields:
                raise InputError(
                    "Invalid input: budget: a batch has one budget, in the event or its run "
                    "config; an item cannot have its own"
                )
            inputs = validate_inputs(merged)
            if base is None and inputs.budget is not None:
                from function.budget import parse_budget

                budget = parse_budget(inputs.budget)
                used = await self._used_before(budget, fields)
                if budget is not None and budget.reached(used):
                    raise BudgetError(
                        f"Budget reached: run config {run_config_name(fields, self.settings)!r} "
                        f"{budget.describe(used)}; the run did not start"
                    )
            outcome = await run_inference(
                inputs,
                self.settings,
                client,
                self.work,
                self.token,
                files=self.paths,
                media_slots=self.media_slots,
            )
        except RunJobError as exc:
            outcome = Outcome.failed(exc, model=model)
            outcome.envelope["error"] = redact(exc.message)
        except Exception as exc:  # the envelope is the contract: nothing escapes
            log.exception("Unexpected error in the run")
            problem = RunJobError(f"Internal error ({exc.__class__.__name__}); see the logs")
            outcome = Outcome.failed(problem, model=model)
        if inputs is not None and not outcome.success:  # the record says what was tried
            outcome.task = outcome.task or inputs.task
            outcome.where = outcome.where or where(inputs)
        outcome.run_config = run_config_name(fields, self.settings)
        outcome.duration_ms = round((time.monotonic() - started) * 1000)
        log.log(
            logging.DEBUG if base is not None else logging.INFO,  # a batch logs its summary
            "Run finished",
            extra={
                "model": outcome.envelope["model"],
                "task": outcome.task,
                "success": outcome.success,
                "error_kind": outcome.error_kind,
                "attempts": outcome.attempts,
                "duration_ms": outcome.duration_ms,
                "characters": outcome.usage.characters,
                "where": outcome.where,
                "provider": outcome.usage.provider,
                "prompt_tokens": outcome.usage.prompt_tokens,
                "completion_tokens": outcome.usage.completion_tokens,
            },
        )
        return outcome

    # -- comparisons --------------------------------------------------------------------------

    async def _compare(self, request: Request) -> Done:
        """The same input on every alternate at once: a summary with a record each (the
        envelope, the alternate as given as `id`, `latency_ms`, `usage`). One alternate
        failing fails none of the others."""
        started = time.monotonic()
        try:
            alternates, shared = split_comparison(request.fields)
        except InputError as exc:
            return _failed(exc, request)
        # The answers are held together: together they stay within one answer's limit.
        limit = max(64 * 1024, self.settings.max_response_bytes // len(alternates))
        async with self._client(answer_limit=limit) as client:
            outcomes = await asyncio.gather(
                *(self.run_one({**shared, **fields}, client) for _, fields in alternates)
            )
        self.outcomes += outcomes
        records = [
            {
                **outcome.envelope,
                "id": given,
                "latency_ms": outcome.duration_ms,
                "usage": _usage(outcome),
            }
            for (given, _), outcome in zip(alternates, outcomes, strict=True)
        ]
        succeeded = sum(o.success for o in outcomes)
        summary = {
            "total": len(records),
            "succeeded": succeeded,
            "failed": len(records) - succeeded,
            "elapsed_s": round(time.monotonic() - started, 3),
            "results": records,
        }
        retry = succeeded == 0 and any(o.transient for o in outcomes)
        if not (retry and self.run_meta.trigger == "sqs"):
            try:
                await store(
                    self.settings,
                    self.run_meta,
                    [
                        self.run_meta.record(i, o, request.message_id)
                        for i, o in enumerate(outcomes)
                    ],
                    self.deadline,
                )
            except RunJobError as exc:
                log.error("Could not store the run records: %s", exc.message)
                retry = True
        # Over HTTP, a comparison that found no answer says why, as one run would: the status
        # all its failures share (400 for a bad input they share), else 502.
        statuses = {o.http_status for o in outcomes}
        status = 200 if succeeded else (statuses.pop() if len(statuses) == 1 else 502)
        return Done(
            summary,
            status,
            retry=retry,
            ok=succeeded == len(records),
            message_id=request.message_id,
        )

    @asynccontextmanager
    async def _client(
        self,
        batch: BatchFields | None = None,
        limiter: AdaptiveLimiter | None = None,
        answer_limit: int | None = None,
    ) -> AsyncIterator[Fetcher]:
        """The API client of a request: for single runs, httpx's own pool; for a batch, many
        connections through aiohttp, its adaptive limiter and the coalescer in front."""
        cap = batch.concurrency if batch else self.settings.sqs_concurrency
        many = batch is not None
        async with new_http_client(self.settings, max_connections=cap, many=many) as http:
            from function.cache import CachedFetcher

            if batch is None:
                settings = self.settings
                if answer_limit is not None:
                    settings = settings.model_copy(update={"max_response_bytes": answer_limit})
                yield CachedFetcher(HFClient(settings, http), settings)  # one limit for both
                return
            from function.coalescer import Coalescer

            coalescer = Coalescer(
                HFClient(self.settings, http, limiter), batch_size=batch.batch_size
            )
            try:  # the cache in front: it keeps one text's answer, not a chunk's
                yield CachedFetcher(coalescer, self.settings)
            finally:
                await coalescer.aclose()

    # -- batches -----------------------------------------------------------------------------

    async def _batch(self, request: Request, plan: BatchPlan | None = None) -> Done:
        """A batch: its summary, or one failure for the whole of it (retried if transient)."""
        try:
            if plan is None:
                from function.batchfields import split_batch

                batch, shared = split_batch(request.fields)
                prefix_field = self._prefix_field(batch, shared)  # checked before it fans out
                if batch.fan_out:
                    from function.budget import parse_budget
                    from function.fanout import fan_out

                    # What every part would refuse is refused once, before any is queued.
                    base = merge_inputs(shared, self.settings, paths=self.paths)
                    parse_budget(base.get("budget"))

                    summary = await fan_out(batch, shared, self.settings, self.work)
                    return Done(summary, message_id=request.message_id)
                plan = await self._plan(batch, shared, prefix_field)
            summary = await self._run_plan(plan, request)
        except RunJobError as exc:
            log.error("The batch failed: %s", exc.message, extra={"message_id": request.message_id})
            return await self._batch_failed(exc, request)
        except Exception as exc:  # a bug touches this request only; a queue tries it again
            log.exception("Unexpected error in a batch", extra={"message_id": request.message_id})
            problem = RunJobError(f"Internal error ({type(exc).__name__}); see the logs")
            problem.transient = True
            return await self._batch_failed(problem, request)
        ok = summary["failed"] == 0 and not summary.get("continued")
        # Acknowledged: every item is a record or a line of a continuation that is queued
        # (in AWS) or written beside the output (to run as the next batch). A continuation
        # that could not be queued sends a queued message back: run again, it rewrites the
        # same output and queues what is left.
        retry = "queue_error" in summary and self.run_meta.trigger == "sqs"
        return Done(summary, ok=ok, retry=retry, message_id=request.message_id)

    async def _batch_failed(self, problem: RunJobError, request: Request) -> Done:
        """A batch that failed whole is a failed run like any other: in the metrics, and in
        the records (unless a queue delivers it again: only its last run is stored)."""
        outcome = _failure(problem)
        self.outcomes.append(outcome)
        if not (self.run_meta.trigger == "sqs" and outcome.transient):
            await self._keep_failures((request,), [outcome])
        return _done(outcome, request)

    def _prefix_field(self, batch: BatchFields, shared: dict[str, Any]) -> str | None:
        """For an input_uri that is an S3 prefix: the field its objects fill, `image` or
        `audio`, from the batch's task."""
        from function.storage import is_prefix

        if not is_prefix(batch.input_uri):
            return None
        if batch.part or batch.fan_out:
            raise InputError("fan_out: an S3 prefix is listed, not split; give a JSONL input_uri")
        task = merge_inputs(shared, self.settings, paths=self.paths).get("task")
        field = MEDIA_TASKS.get(task) if isinstance(task, str) else None
        if field is None:
            raise InputError(
                f"input_uri: {batch.input_uri} is a prefix: each object under it is an image "
                "or a sound; name the image or audio task that reads them (task), or give a "
                "JSONL file"
            )
        return field

    async def _plan(
        self, batch: BatchFields, shared: dict[str, Any], prefix_field: str | None
    ) -> BatchPlan:
        """A batch event's plan: items from `items` / `text` / `input_uri`, records to
        `output_uri`, else inline (small lists) or under BATCHES_URI."""
        from function.batch import Resume, items_from_jsonl, items_from_list
        from function.storage import (
            BatchPlan,
            ListWriter,
            Output,
            check_not_the_jobs_own,
            check_places,
            continuation_uri,
            items_from_prefix,
            open_input,
            open_output,
            read_lines,
        )

        inline = (
            batch.output_uri is None
            and batch.items is not None
            and len(batch.items) <= INLINE_LIMIT
        )
        target = (
            batch.output_uri
            or f"{self.settings.batches_uri.rstrip('/')}/{self.run_meta.run_id}.jsonl"
        )
        check_places(batch.input_uri, target)
        check_not_the_jobs_own(target, self.settings)
        output: Output = ListWriter() if inline else open_output(target, self.settings)
        continuation = open_output(continuation_uri(target), self.settings)

        part = batch.part
        start = Resume(part.bytes[0] or 0, part.first_line, part.first_index) if part else None

        async def open_items() -> Any:
            if batch.items is not None:
                return items_from_list(batch.items)
            assert batch.input_uri is not None
            if prefix_field is not None:
                return items_from_prefix(
                    batch.input_uri, prefix_field, self.settings, self.deadline
                )
            byte_range = (part.bytes[0] or 0, part.bytes[1]) if part else None
            read = await open_input(batch.input_uri, self.settings, self.deadline, byte_range)
            first_line = start.line if start else 1
            lines = read_lines(read, max_line=self.settings.max_line_bytes, first_line=first_line)
            return items_from_jsonl(lines, start)

        # A file input is left where the batch stopped reading, never copied against the
        # deadline: the rest goes on the queue, or the reply says how to resume it. (What a
        # prefix's listing has not reached goes into the continuation.)
        file_input = batch.input_uri is not None and prefix_field is None
        return BatchPlan(
            shared,
            batch,
            open_items,
            output,
            continuation,
            None if inline else target,
            input_uri=batch.input_uri,
            leave_rest=(start or Resume(0, 1, 0)) if file_input else None,
        )

    async def _run_plan(self, plan: BatchPlan, request: Request) -> dict[str, Any]:
        from function.batch import BatchRun
        from function.batchfields import passed_on
        from function.budget import parse_budget

        # A bad shared field: nothing runs, nothing is written.
        base = batch_base(plan.shared, self.settings, paths=self.paths)
        budget = parse_budget(base.get("budget"))
        used = await self._used_before(budget, plan.shared)
        plan.output.prepare()  # a bad output fails here, before any work
        items = await plan.open_items()
        from function.limiter import AdaptiveLimiter

        limiter = AdaptiveLimiter(cap=plan.options.concurrency, rate=plan.options.rate)
        self.media_slots = asyncio.Semaphore(min(MEDIA_SLOTS, plan.options.concurrency))
        async with self._client(plan.options, limiter) as client:
            engine = BatchRun(
                lambda item: self.run_one(item.fields, client, base, plan.shared),
                plan.output,
                plan.continuation,
                stop_at=self.work,
                # With a budget, items start only as slots free up: what stops at the budget
                # is then what has not started.
                window=plan.window
                if budget is None
                else min(plan.window, plan.options.concurrency),
                progress=plan.progress,
                leave_rest=plan.leave_rest,
                shared=plan.shared,
                # No more work is coming: a refused probe now would only delay the last items.
                on_read_all=limiter.stop_probing,
                budget=budget,
                used=used,
            )
            if plan.on_start:
                plan.on_start(engine)
            result = await engine.run(items)
        await plan.output.close(self.deadline)
        await plan.continuation.close(self.deadline)
        summary = {**result.as_dict(), "output": plan.output_name}
        if result.characters:
            summary["characters"] = result.characters
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "compute_time_s": round(result.compute_time_s, 4),
        }
        summary.update({k: v for k, v in usage.items() if v})
        if len(result.compute_by_type) == 1:
            summary["compute_type"] = next(iter(result.compute_by_type))
        elif result.compute_by_type:  # priced per hardware (`usage`)
            summary["compute_time_s_by_type"] = {
                kind: round(seconds, 4) for kind, seconds in sorted(result.compute_by_type.items())
            }
        if result.cache_hits:
            summary["cache_hits"] = result.cache_hits
        if len(result.places) == 1:  # where the items ran, when they all ran in one place
            ((where, provider),) = result.places
            summary["where"] = where
            if provider is not None:  # the router's provider (text-generation)
                summary["provider"] = provider
        # The work that follows (continuation, rest) keeps the batch's fields, and of a
        # per-run budget what this run left.
        follow = {**plan.shared, **passed_on(plan.options)}
        if budget is not None:
            spent = Used(result.characters, result.prompt_tokens + result.completion_tokens)
            among = max(1, (result.continued > 0) + (engine.rest is not None))
            follow["budget"] = budget.after(spent, among).model_dump(exclude_none=True)
        # Stopped by the budget only if something was left to do when it was reached.
        stopped_by_budget = result.stopped == "budget" and (
            result.continued > 0 or engine.rest is not None
        )
        if stopped_by_budget:  # what is left waits for a run with budget left: never queued
            summary["stopped"] = "budget"
            summary["budget"] = budget.model_dump(exclude_none=True)  # type: ignore[union-attr]
            summary["budget"]["used"] = (used + spent)._asdict()
        if result.continued:
            summary["continuation"] = getattr(plan.continuation, "uri", None)
            if self.settings.run_queue_url and summary["continuation"] and not stopped_by_budget:
                try:
                    summary["continuation_queued"] = await self._queue_continuation(
                        follow, summary["continuation"]
                    )
                except RunJobError as exc:  # written, not lost: the reply says where it is
                    summary["continuation_queued"] = None
                    summary["queue_error"] = exc.message
        if engine.rest is not None:
            summary["rest"] = await self._queue_rest(plan, follow, engine.rest, summary)
        if plan.output_name is None:
            summary["results"] = plan.output.values  # type: ignore[union-attr]
        record = self.run_meta.batch_record(
            {k: v for k, v in summary.items() if k != "results"},
            run_config_name(plan.shared, self.settings),
            base.get("model") if isinstance(base.get("model"), str) else None,
            request.message_id,
        )
        try:  # the batch's own record is its history; its items' records are written
            await store(self.settings, self.run_meta, [record], self.deadline)
        except RunJobError as exc:
            log.error("Could not store the batch's run record: %s", exc.message)
        log.info("Batch finished", extra={k: v for k, v in summary.items() if k != "results"})
        return summary

    async def _used_before(self, budget: Budget | None, shared: Mapping[str, Any]) -> Used:
        """What a daily budget has already counted today: its run config's total."""
        if budget is None or budget.per != "day":
            return Used()
        day = self.run_meta.started_at.astimezone(UTC).date().isoformat()
        try:
            return await used_today(
                self.settings, run_config_name(shared, self.settings), day, self.work
            )
        except Exception as exc:  # unknown use is not a budget left: try again later
            raise StorageError(
                f"budget: could not read today's usage total ({type(exc).__name__})"
            ) from None

    async def _queue_rest(
        self, plan: BatchPlan, follow: dict[str, Any], rest: Resume, summary: dict[str, Any]
    ) -> dict[str, Any]:
        """The unread rest of a file input: a part of its own, on the queue (in AWS), or in
        the reply as the event that resumes it."""
        from function.fanout import send_messages
        from function.storage import next_output_uri

        stem = next_output_uri(plan.output_name or summary["continuation"]).removesuffix(".jsonl")
        end = _part_end(plan.options)
        resume = {
            **follow,
            "input_uri": plan.input_uri,
            "output_uri": f"{stem}.rest.jsonl",
            "part": {
                "bytes": [rest.offset, end],
                "first_index": rest.index,
                "first_line": rest.line,
            },
        }
        said = {"from_line": rest.line, "first_index": rest.index}
        if not self.settings.run_queue_url or summary.get("stopped") == "budget":
            return {**said, "resume": resume}
        if end is None or rest.offset < end:
            try:
                await send_messages(
                    [{"Id": "0", "MessageBody": json.dumps(resume)}], self.settings, self.deadline
                )
            except RunJobError as exc:  # the reply says how to resume it
                summary["queue_error"] = exc.message
                return {**said, "resume": resume}
        return {**said, "queued": resume["output_uri"]}

    async def _queue_continuation(self, follow: dict[str, Any], continuation: str) -> str:
        """In AWS the continuation goes back on the queue as a batch of its own, its records
        beside the output (`X.c1.jsonl`, `X.c2.jsonl`, ...). Returns where they will be."""
        from function.fanout import send_messages
        from function.storage import next_output_uri

        output = next_output_uri(continuation.removesuffix(".continuation.jsonl") + ".jsonl")
        body = {**follow, "input_uri": continuation, "output_uri": output}
        await send_messages(
            [{"Id": "0", "MessageBody": json.dumps(body)}], self.settings, self.deadline
        )
        return output


def _part_end(options: BatchFields) -> int | None:
    return options.part.bytes[1] if options.part else None


def _request_id(context: Any) -> str | None:
    value = getattr(context, "aws_request_id", None)
    return value if isinstance(value, str) else None


def cli_invocation(trigger: Trigger, fields: dict[str, Any]) -> Invocation:
    """A CLI run as an invocation of its own (its flags were checked like an event's)."""
    return Invocation(trigger, (Request(fields),))
