"""The boundary where raw run inputs become an Outcome and every error becomes an envelope."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from function.client import Deadline, HFClient, new_http_client
from function.envelope import Outcome
from function.errors import RunJobError
from function.inference import run_inference
from function.inputs import merge_inputs, requested_model, validate_inputs
from function.settings import Settings

log = logging.getLogger(__name__)


async def run_job(
    overrides: Mapping[str, Any],
    settings: Settings,
    deadline: Deadline,
    *,
    http: httpx.AsyncClient | None = None,
) -> Outcome:
    """Merge, validate and run; never raises. `overrides` are the trigger's input fields."""
    model: str | None = None
    started = time.monotonic()
    try:
        merged = merge_inputs(overrides, settings)
        model = requested_model(merged)
        inputs = validate_inputs(merged)
        if http is not None:
            outcome = await run_inference(inputs, settings, HFClient(settings, http), deadline)
        else:
            async with new_http_client(settings) as own_http:
                client = HFClient(settings, own_http)
                outcome = await run_inference(inputs, settings, client, deadline)
    except RunJobError as exc:
        outcome = Outcome.failed(exc, model=model)
        if settings.token:
            _redact(outcome, settings.token)
    except Exception as exc:  # the envelope is the contract: nothing escapes
        log.exception("Unexpected error in the run")
        outcome = Outcome.failed(
            RunJobError(f"Internal error ({exc.__class__.__name__}); see the logs"), model=model
        )
    log.info(
        "Run finished",
        extra={
            "model": outcome.envelope["model"],
            "task": outcome.task,
            "success": outcome.success,
            "error_kind": outcome.error_kind,
            "attempts": outcome.attempts,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    return outcome


def _redact(outcome: Outcome, secret: str) -> None:
    """Belt and braces: no message may carry the token, whatever produced it."""
    error = outcome.envelope["error"]
    if error and secret in error:
        outcome.envelope["error"] = error.replace(secret, "***")
