"""Which trigger is this? A Lambda event in, an `Invocation` out: pure (no I/O) and it
never raises, whatever the event holds.

- direct invoke and EventBridge Scheduler: the event is the run inputs;
- EventBridge events and schedules: `detail` holds the overrides;
- Function URL / API Gateway: a JSON body (or base64) or a query string; replies are HTTP;
- SQS: each message body is one request of its own; the reply lists the messages to retry.
- S3 "Object Created" (the S3 notification, or its EventBridge form; directly, or as the
  body of an SQS message): each object is an upload, run by the run config that S3_TRIGGERS
  names for its prefix (`function.uploads`).

Every request is either fields to run or a problem (an InputError saying why the event, or
that one message, cannot be read). A problem in one SQS message touches no other message.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import unquote_plus

from function import jsontext
from function.errors import InputError, RunJobError
from function.inputs import is_batch

Trigger = Literal["direct", "schedule", "eventbridge", "http", "sqs", "s3", "cli"]


@dataclass(frozen=True)
class Request:
    """One unit of work: a run or a batch (its fields), or why there is none."""

    fields: dict[str, Any] = field(default_factory=dict)
    problem: RunJobError | None = None
    message_id: str | None = None  # SQS only
    upload: str | None = None  # an S3 object that was created: s3://bucket/key

    @property
    def is_batch(self) -> bool:
        return self.problem is None and is_batch(self.fields)

    @property
    def is_comparison(self) -> bool:
        return self.problem is None and not self.is_batch and "compare" in self.fields


@dataclass(frozen=True)
class Invocation:
    trigger: Trigger
    requests: tuple[Request, ...]  # exactly one, except for SQS: a message each


def read_event(event: Any) -> Invocation:
    try:
        return _read(event)
    except Exception as exc:  # a bug here must still give the trigger its reply
        trigger: Trigger = "sqs" if _looks_like_sqs(event) else "direct"
        problem = InputError(f"The event could not be read ({type(exc).__name__})")
        if trigger == "sqs":
            return Invocation(
                trigger, tuple(Request(problem=problem, message_id=i) for i in _ids(event))
            )
        return Invocation(trigger, (Request(problem=problem),))


def _read(event: Any) -> Invocation:
    if event is None:
        return Invocation("direct", (Request(),))
    if not isinstance(event, dict):
        return Invocation("direct", (Request(problem=_not_an_object("The event", event)),))
    if _looks_like_sqs(event):
        return _sqs(event)
    uploads = _uploads(event)
    if uploads is not None:
        return Invocation("s3", tuple(uploads))
    if "requestContext" in event and (
        "body" in event or "rawPath" in event or "httpMethod" in event
    ):
        return Invocation("http", (_http(event),))
    if "detail-type" in event and "source" in event:
        trigger: Trigger = (
            "schedule" if event.get("detail-type") == "Scheduled Event" else "eventbridge"
        )
        detail = event.get("detail")
        if detail is None:
            detail = {}
        if not isinstance(detail, dict):
            kind = _not_an_object("detail", detail).message.rsplit(", not ", 1)[1]
            problem = InputError(f"detail: expected an object of run inputs, not {kind}")
            return Invocation(trigger, (Request(problem=problem),))
        return Invocation(trigger, (_checked(detail, "detail"),))
    return Invocation("direct", (_checked(event, "The event"),))


def _looks_like_sqs(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and any(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def _ids(event: Any) -> list[str]:
    return [str(r.get("messageId", "")) if isinstance(r, dict) else "" for r in event["Records"]]


def _sqs(event: dict[str, Any]) -> Invocation:
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    requests = []
    for record in event["Records"]:
        if not isinstance(record, dict):
            requests.append(
                Request(problem=InputError("The SQS record is not an object"), message_id="")
            )
            continue
        message = next(SQSEvent({"Records": [record]}).records)
        message_id = message.get("messageId")
        message_id = message_id if isinstance(message_id, str) else ""
        try:  # whatever one message holds, the others are read
            requests.append(_message(message.get("body"), message_id))
        except Exception as exc:
            problem = InputError(f"The message could not be read ({type(exc).__name__})")
            requests.append(Request(problem=problem, message_id=message_id))
    return Invocation("sqs", tuple(requests))


def _message(body: Any, message_id: str) -> Request:
    problem, fields = _json_object(body, "The message body")
    uploads = _uploads(fields)
    if uploads is None:
        return Request(fields, problem, message_id)
    # S3 -> EventBridge (or S3) -> the queue: one object a message.
    if len(uploads) != 1:
        problem = InputError("An S3 event in a queue message must name one object")
        return Request(problem=problem, message_id=message_id)
    return replace(uploads[0], message_id=message_id)


def _uploads(event: dict[str, Any]) -> list[Request] | None:
    """The objects an S3 "Object Created" event names (None: not such an event). The S3
    notification spells keys URL-encoded; its EventBridge form spells them as they are."""
    if event.get("source") == "aws.s3" and "detail-type" in event:
        if event.get("detail-type") != "Object Created":
            return [Request(problem=_not_run(event.get("detail-type")))]
        detail = event.get("detail")
        bucket = _dig(detail, "bucket", "name")
        key = _dig(detail, "object", "key")
        return [_upload(bucket, key)]
    records = event.get("Records")
    if not (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records)
    ):
        return None
    uploads = []
    for record in records:
        name = record.get("eventName")
        if not (isinstance(name, str) and name.startswith("ObjectCreated:")):
            uploads.append(Request(problem=_not_run(name)))
            continue
        key = _dig(record, "s3", "object", "key")
        key = unquote_plus(key) if isinstance(key, str) else key
        uploads.append(_upload(_dig(record, "s3", "bucket", "name"), key))
    return uploads


def _not_run(kind: Any) -> InputError:
    return InputError(f"S3 event {str(kind)[:60]!r}: only objects created start runs")


def _upload(bucket: Any, key: Any) -> Request:
    if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
        return Request(problem=InputError("The S3 event names no bucket and key"))
    return Request(upload=f"s3://{bucket}/{key}")


def _dig(value: Any, *path: str) -> Any:
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _http(event: dict[str, Any]) -> Request:
    from aws_lambda_powertools.utilities.data_classes import (
        APIGatewayProxyEvent,
        APIGatewayProxyEventV2,
    )

    request = (
        APIGatewayProxyEvent(event) if "httpMethod" in event else APIGatewayProxyEventV2(event)
    )
    body = request.body
    if not body:
        query = request.query_string_parameters
        return _checked(dict(query) if isinstance(query, dict) else {}, "The query string")
    if not isinstance(body, str):
        return Request(problem=InputError("The request body must be JSON text"))
    text = body
    if event.get("isBase64Encoded") is True:  # a string "false" is not a yes
        # Strictly: Powertools' `decoded_body` skips characters that are not base64.
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            return Request(problem=InputError("The request body is not valid base64 UTF-8"))
    problem, fields = _json_object(text, "The request body")
    return Request(fields, problem)


def _json_object(text: Any, what: str) -> tuple[InputError | None, dict[str, Any]]:
    if not isinstance(text, str):
        return InputError(f"{what} must be JSON text"), {}
    try:
        data = jsontext.parse(text)
    except ValueError as exc:
        return InputError(f"{what} is {exc}"), {}
    if not isinstance(data, dict):
        return _not_an_object(what, data), {}
    return None, data


def _checked(fields: dict[str, Any], what: str) -> Request:
    """Fields that arrived already parsed: held to the same rules as JSON text."""
    try:
        jsontext.check(fields)
    except ValueError as exc:
        return Request(problem=InputError(f"{what} is {exc}{_which(fields)}"))
    return Request(dict(fields))


def _which(fields: dict[str, Any]) -> str:
    """Where in an event's fields the value that is not usable JSON is: ` (in system)`,
    ` (in items[3])`."""
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        for index, one in enumerate(values):
            try:
                jsontext.check({name: one})
            except ValueError:
                return f" (in {name}[{index}])" if isinstance(value, list) else f" (in {name})"
    return ""


def _not_an_object(what: str, value: Any) -> InputError:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    kind = names.get(type(value), type(value).__name__)
    return InputError(f"{what} must be a JSON object of run inputs, not {kind}")
