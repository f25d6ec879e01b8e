"""Which trigger is this? Turn a Lambda event into run inputs, and the outcome into its reply.

Triggers: direct invoke and EventBridge Scheduler (a dict of run inputs, passed through
unchanged), EventBridge events and schedules (`detail` holds the overrides), Function URL /
API Gateway HTTP requests (a JSON body or query string; the reply is an HTTP response).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from function.client import Deadline
from function.envelope import Envelope, Outcome
from function.errors import ConfigError, InputError, RunJobError
from function.job import run_job
from function.settings import load_settings

log = logging.getLogger(__name__)

DIRECT, SCHEDULE, EVENTBRIDGE, HTTP = "direct", "schedule", "eventbridge", "http"


@dataclass
class Invocation:
    trigger: str
    overrides: dict[str, Any] = field(default_factory=dict)
    problem: RunJobError | None = None  # the event itself could not be read


def parse_event(event: Any) -> Invocation:
    if event is None:
        return Invocation(DIRECT)
    if not isinstance(event, dict):
        return Invocation(
            DIRECT,
            problem=InputError(
                f"The event must be a JSON object of run inputs, not {_json_type(event)}"
            ),
        )
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
            return Invocation(
                trigger,
                problem=InputError(
                    f"detail: expected an object of run inputs, not {_json_type(detail)}"
                ),
            )
        return Invocation(trigger, dict(detail))
    return Invocation(DIRECT, dict(event))


def _http_invocation(event: dict[str, Any]) -> Invocation:
    body = event.get("body")
    if not body:
        query = event.get("queryStringParameters")
        return Invocation(HTTP, dict(query) if isinstance(query, dict) else {})
    if not isinstance(body, str):
        return Invocation(HTTP, problem=InputError("The request body must be JSON text"))
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            return Invocation(
                HTTP, problem=InputError("The request body is not valid base64 UTF-8")
            )
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return Invocation(
            HTTP,
            problem=InputError(
                f"The request body is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ),
        )
    if not isinstance(data, dict):
        return Invocation(
            HTTP,
            problem=InputError(
                f"The request body must be a JSON object of run inputs, not {_json_type(data)}"
            ),
        )
    return Invocation(HTTP, data)


def _json_type(value: Any) -> str:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), type(value).__name__)


async def handle_event(event: Any, context: Any) -> Any:
    """Run the job for one Lambda event and return the trigger's reply. Never raises."""
    try:
        invocation = parse_event(event)
    except Exception as exc:  # a bug here must still give an envelope
        log.exception("Could not read the event")
        invocation = Invocation(
            DIRECT, problem=RunJobError(f"Internal error reading the event ({type(exc).__name__})")
        )
    try:
        settings = load_settings()
    except ConfigError as exc:
        return reply(invocation.trigger, Outcome.failed(exc, model=None))
    if invocation.problem is not None:
        outcome = Outcome.failed(invocation.problem, model=None)
    else:
        deadline = Deadline.for_invocation(context, settings)
        outcome = await run_job(invocation.overrides, settings, deadline)
    log.info("Handled %s invocation", invocation.trigger, extra={"trigger": invocation.trigger})
    return reply(invocation.trigger, outcome)


def reply(trigger: str, outcome: Outcome) -> Envelope | dict[str, Any]:
    if trigger == HTTP:
        return {
            "statusCode": outcome.http_status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(outcome.envelope),
        }
    return outcome.envelope
