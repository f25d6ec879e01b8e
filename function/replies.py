"""What each trigger gets back: pure, from what became of its requests.

- SQS: `{"batchItemFailures": [...]}`, the messages to deliver again (always this shape);
- Function URL / API Gateway: `{statusCode, headers, body}` (always this shape);
- everything else: the envelope, or a batch's summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from function.triggers import Trigger


@dataclass(frozen=True)
class Done:
    """What became of one request: the body to answer with (an envelope or a batch's
    summary), its HTTP status, whether a queue should deliver it again, and whether it
    fully succeeded (the CLI's exit status)."""

    body: dict[str, Any]
    http_status: int = 200
    retry: bool = False
    ok: bool = True
    message_id: str | None = None


def reply(trigger: Trigger, done: list[Done]) -> Any:
    if trigger == "sqs":
        return {
            "batchItemFailures": [{"itemIdentifier": d.message_id or ""} for d in done if d.retry]
        }
    if trigger == "s3" and len(done) != 1:  # an S3 notification naming several objects
        return {"results": [d.body for d in done]}
    (only,) = done
    if trigger == "http":
        return http_response(only.http_status, only.body)
    return only.body


def http_response(status: int, body: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, ensure_ascii=False),
    }
