"""Which trigger is this? Turn a Lambda event into run inputs, and outcomes into its reply.

Triggers: direct invoke and EventBridge Scheduler (a dict of run inputs, passed through
unchanged), EventBridge events and schedules (`detail` holds the overrides), Function URL /
API Gateway HTTP requests (a JSON body or query string; the reply is an HTTP response), and
SQS batches (each message body is one set of run inputs; the reply is the partial batch
response). Every invocation stores its records in the results sink (`function.runs`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from function.client import Deadline
from function.envelope import Envelope, Outcome
from function.errors import InputError, RunJobError
from function.job import open_session, run_job, run_once
from function.observability import (
    configure_logging,
    flush_metrics,
    record_batch_metrics,
    record_metrics,
    start_invocation,
)
from function.runs import Run, store
from function.settings import Settings, load_settings

log = logging.getLogger(__name__)

DIRECT, SCHEDULE, EVENTBRIDGE, HTTP, SQS = "direct", "schedule", "eventbridge", "http", "sqs"


@dataclass
class Message:
    """One SQS message: its id and its run inputs (or why they cannot be read)."""

    message_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    problem: RunJobError | None = None


@dataclass
class Invocation:
    trigger: str
    overrides: dict[str, Any] = field(default_factory=dict)
    problem: RunJobError | None = None  # the event itself could not be read
    messages: list[Message] = field(default_factory=list)  # SQS only


# -- reading events ----------------------------------------------------------------------------


def parse_event(event: Any) -> Invocation:
    if event is None:
        return Invocation(DIRECT)
    if not isinstance(event, dict):
        return Invocation(DIRECT, problem=_not_an_object("The event", event))
    if _is_sqs(event):
        return Invocation(SQS, messages=[_sqs_message(r) for r in event["Records"]])
    if "requestContext" in event and (
        "body" in event or "rawPath" in event or "httpMethod" in event
    ):
        return _http_invocation(event)
    if "detail-type" in event and "source" in event:
        trigger = SCHEDULE if event.get("detail-type") == "Scheduled Event" else EVENTBRIDGE
        detail = event.get("detail")
        if detail is None:
            detail = {}
        if not isinstance(detail, dict):
            return Invocation(trigger, problem=_not_an_object("detail", detail, "detail: expected"))
        return Invocation(trigger, dict(detail))
    return Invocation(DIRECT, dict(event))


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _sqs_message(record: dict[str, Any]) -> Message:
    message_id = str(record.get("messageId", ""))
    problem, data = _json_object(record.get("body"), "The message body")
    return Message(message_id, data, problem)


def _http_invocation(event: dict[str, Any]) -> Invocation:
    body = event.get("body")
    if not body:
        query = event.get("queryStringParameters")
        return Invocation(HTTP, dict(query) if isinstance(query, dict) else {})
    if isinstance(body, str) and event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            return Invocation(
                HTTP, problem=InputError("The request body is not valid base64 UTF-8")
            )
    problem, data = _json_object(body, "The request body")
    return Invocation(HTTP, data, problem)


def _json_object(text: Any, what: str) -> tuple[InputError | None, dict[str, Any]]:
    if not isinstance(text, str):
        return InputError(f"{what} must be JSON text"), {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return InputError(f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"), {}
    if not isinstance(data, dict):
        return _not_an_object(what, data), {}
    return None, data


def _not_an_object(what: str, value: Any, prefix: str | None = None) -> InputError:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    kind = names.get(type(value), type(value).__name__)
    if prefix:
        return InputError(f"{prefix} an object of run inputs, not {kind}")
    return InputError(f"{what} must be a JSON object of run inputs, not {kind}")


# -- handling them -----------------------------------------------------------------------------


async def handle_event(event: Any, context: Any) -> Any:
    """Run the job for one Lambda event and return the trigger's reply. Never raises."""
    configure_logging()
    try:
        invocation = parse_event(event)
    except Exception as exc:  # a bug here must still give an envelope
        log.exception("Could not read the event")
        problem = RunJobError(f"Internal error reading the event ({type(exc).__name__})")
        invocation = Invocation(DIRECT, problem=problem)
    run = Run(invocation.trigger, datetime.now(UTC), _request_id(context))
    start_invocation(run_id=run.run_id, trigger=run.trigger, request_id=run.request_id)
    try:
        try:
            settings = load_settings()
        except RunJobError as exc:
            return _without_settings(invocation, exc)
        deadline = Deadline.for_invocation(context, settings)
        if invocation.trigger == SQS:
            return await _handle_sqs(invocation.messages, run, settings, deadline)
        return await _handle_single(invocation, run, settings, deadline)
    except Exception as exc:  # a bug must still give the trigger its reply
        log.exception("Unexpected error handling the invocation")
        if invocation.trigger == SQS:
            return _batch_response([m.message_id for m in invocation.messages])
        problem = RunJobError(f"Internal error ({type(exc).__name__}); see the logs")
        return reply(invocation.trigger, Outcome.failed(problem, model=None))
    finally:
        flush_metrics()


def _without_settings(invocation: Invocation, problem: RunJobError) -> Any:
    """Nothing can run or be stored: say so in the trigger's own reply."""
    log.error("Invalid settings: %s", problem.message)
    if invocation.trigger == SQS:  # back to the queue, and on to its DLQ
        record_metrics([], retried_by_queue=len(invocation.messages))
        return _batch_response([m.message_id for m in invocation.messages])
    outcome = Outcome.failed(problem, model=None)
    record_metrics([outcome])
    return reply(invocation.trigger, outcome)


async def _handle_single(
    invocation: Invocation, run: Run, settings: Settings, deadline: Deadline
) -> Any:
    if invocation.problem is None and is_batch(invocation.overrides):
        return await _handle_items(invocation, run, settings, deadline)
    if invocation.problem is not None:
        outcome = Outcome.failed(invocation.problem, model=None)
        store(settings, run, [run.record(0, outcome)])
    else:
        outcome = await run_once(invocation.overrides, run, settings, deadline)
    record_metrics([outcome])
    return reply(invocation.trigger, outcome)


def is_batch(fields: dict[str, Any]) -> bool:
    """Many items: `items`, `text` as a list, or `input_uri`."""
    return "items" in fields or "input_uri" in fields or isinstance(fields.get("text"), list)


async def _handle_items(
    invocation: Invocation, run: Run, settings: Settings, deadline: Deadline
) -> Any:
    """A batch in one invocation: the summary is the reply (with the records inline when
    the batch is small and names no output)."""
    from function.batch import run_batch_event  # only batches pay for importing it

    try:
        summary = await run_batch_event(invocation.overrides, run, settings, deadline)
    except RunJobError as exc:
        outcome = Outcome.failed(exc, model=None)
        record_metrics([outcome])
        return reply(invocation.trigger, outcome)
    log.info("Batch finished", extra={k: v for k, v in summary.items() if k != "results"})
    record_batch_metrics(summary)
    return _http_response(200, summary) if invocation.trigger == HTTP else summary


async def _handle_sqs(
    messages: list[Message], run: Run, settings: Settings, deadline: Deadline
) -> dict[str, Any]:
    """An SQS batch: each message is one run (or a batch of items, such as a fan-out part).
    Transient failures go back to the queue (listed in `batchItemFailures`); the rest are
    stored. Nothing is lost: a message whose record could not be stored goes back too."""
    parts = [m for m in messages if m.problem is None and is_batch(m.overrides)]
    singles = [m for m in messages if m not in parts]
    limit = asyncio.Semaphore(settings.sqs_concurrency)
    async with open_session(
        settings, deadline, max_connections=settings.sqs_concurrency
    ) as session:

        async def one(message: Message) -> Outcome:
            if message.problem is not None:
                return Outcome.failed(message.problem, model=None)
            async with limit:
                return await run_job(message.overrides, session)

        outcomes = await asyncio.gather(*(one(m) for m in singles))
    retry = [m.message_id for m, o in zip(singles, outcomes, strict=True) if o.transient]
    done = [
        (i, m, o) for i, (m, o) in enumerate(zip(singles, outcomes, strict=True)) if not o.transient
    ]
    if done and not store(settings, run, [run.record(i, o, m.message_id) for i, m, o in done]):
        retry += [m.message_id for _, m, _ in done]
    for message in parts:  # batches (fan-out parts): one at a time, each with the whole pool
        if not await _run_part(message, run, settings, deadline):
            retry.append(message.message_id)
    record_metrics(list(outcomes), retried_by_queue=len(retry))
    log.info(
        "Handled an SQS batch",
        extra={
            "messages": len(messages),
            "stored": len(messages) - len(retry),
            "retry": len(retry),
        },
    )
    return _batch_response(retry)


async def _run_part(message: Message, run: Run, settings: Settings, deadline: Deadline) -> bool:
    """Run a batch message; False sends it back to the queue (it is then run whole again,
    rewriting its output, so no item is lost or written twice)."""
    from function.batch import run_batch_event

    try:
        summary = await run_batch_event(message.overrides, run, settings, deadline)
    except RunJobError as exc:
        log.error(
            "A batch message failed: %s", exc.message, extra={"message_id": message.message_id}
        )
        return not exc.transient
    log.info(
        "Ran a batch message",
        extra={
            "message_id": message.message_id,
            **{k: v for k, v in summary.items() if k != "results"},
        },
    )
    return not summary.get("continued")


def _batch_response(message_ids: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in message_ids]}


def _request_id(context: Any) -> str | None:
    value = getattr(context, "aws_request_id", None)
    return value if isinstance(value, str) else None


def reply(trigger: str, outcome: Outcome) -> Envelope | dict[str, Any]:
    if trigger == HTTP:
        return _http_response(outcome.http_status, outcome.envelope)
    return outcome.envelope


def _http_response(status: int, body: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
