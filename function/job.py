"""The boundary where raw run inputs become an Outcome and every error becomes an envelope."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from function.client import Deadline, Fetcher, HFClient, new_http_client
from function.envelope import Outcome
from function.errors import RunJobError
from function.inference import check_ready, run_inference
from function.inputs import (
    merge_inputs,
    overlay,
    requested_model,
    run_config_name,
    validate_inputs,
)
from function.runs import Run, store
from function.secrets import resolve_token
from function.settings import Settings

if TYPE_CHECKING:
    from function.limiter import AdaptiveLimiter

log = logging.getLogger(__name__)


@dataclass
class Session:
    """What the runs of one invocation share: settings, deadline, connections, the token,
    and for batches the concurrency limiter and the request coalescer."""

    settings: Settings
    deadline: Deadline
    http: httpx.AsyncClient
    limiter: AdaptiveLimiter | None = None
    coalesce: Callable[[HFClient], Fetcher] | None = None
    _token: list[str | None] = field(default_factory=list)  # empty until resolved
    _client: Fetcher | None = None

    def client(self) -> Fetcher:
        """The API client, made once the token is known and the endpoint is usable."""
        if self._client is None:
            token = self.token()
            check_ready(self.settings, token)
            client = HFClient(self.settings, self.http, token, self.limiter)
            self._client = self.coalesce(client) if self.coalesce else client
        return self._client

    def token(self) -> str | None:
        """The token, resolved once per session (raises ConfigError if its store fails)."""
        if not self._token:
            self._token.append(resolve_token(self.settings))
        return self._token[0]

    def redact(self, text: str) -> str:
        secret = self._token[0] if self._token else self.settings.env_token
        return text.replace(secret, "***") if secret else text


@asynccontextmanager
async def open_session(
    settings: Settings,
    deadline: Deadline,
    *,
    max_connections: int = 10,
    limiter: AdaptiveLimiter | None = None,
    coalesce: Callable[[HFClient], Fetcher] | None = None,
) -> AsyncIterator[Session]:
    """Batches (a limiter) get the lean transport: many requests in flight, little CPU."""
    lean = limiter is not None
    async with new_http_client(settings, max_connections=max_connections, lean=lean) as http:
        yield Session(settings, deadline, http, limiter, coalesce)


async def run_job(
    overrides: Mapping[str, Any],
    session: Session,
    base: Mapping[str, Any] | None = None,
    *,
    log_level: int = logging.INFO,
) -> Outcome:
    """Merge, validate and run; never raises. `overrides` are the trigger's input fields,
    laid over the run config, or over `base` (a batch's run config and shared fields).
    Batches log each item at DEBUG: their summary is the INFO line."""
    settings = session.settings
    model: str | None = None
    started = time.monotonic()
    try:
        merged = overlay(base, overrides) if base is not None else merge_inputs(overrides, settings)
        model = requested_model(merged)
        inputs = validate_inputs(merged)
        outcome = await run_inference(inputs, settings, session.client(), session.deadline)
    except RunJobError as exc:
        outcome = Outcome.failed(exc, model=model)
        # Belt and braces: no message may carry the token, whatever produced it.
        outcome.envelope["error"] = session.redact(exc.message)
    except Exception as exc:  # the envelope is the contract: nothing escapes
        log.exception("Unexpected error in the run")
        outcome = Outcome.failed(
            RunJobError(f"Internal error ({exc.__class__.__name__}); see the logs"), model=model
        )
    outcome.run_config = run_config_name(overrides, settings)
    outcome.duration_ms = round((time.monotonic() - started) * 1000)
    log.log(
        log_level,
        "Run finished",
        extra={
            "model": outcome.envelope["model"],
            "task": outcome.task,
            "success": outcome.success,
            "error_kind": outcome.error_kind,
            "attempts": outcome.attempts,
            "duration_ms": outcome.duration_ms,
            "characters": outcome.usage.characters,
        },
    )
    return outcome


async def run_once(
    overrides: Mapping[str, Any], run: Run, settings: Settings, deadline: Deadline
) -> Outcome:
    """One run in its own session, its record stored in the results sink."""
    async with open_session(settings, deadline) as session:
        outcome = await run_job(overrides, session)
    store(settings, run, [run.record(0, outcome)])
    return outcome
