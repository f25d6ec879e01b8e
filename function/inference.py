"""One inference: validated inputs in, an Outcome (envelope, usage, attempts) out.

With `fallback`, the alternates are tried in order after the primary, under the one
deadline: each gets its share of the time left (the last one all of it), none starts with
less than `MIN_ALTERNATE_S`, and the next is tried only after a failure another model could
fix (`MOVE_ON`). Invalid input and a refused token stop the chain at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from function.backends import NO_TOKEN, target_for, where
from function.client import Deadline, Fetcher
from function.envelope import Outcome, success_envelope
from function.errors import (
    BadResponseError,
    ConfigError,
    ConnectionFailedError,
    LocalModelError,
    ModelLoadingError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    RunJobError,
    ServerError,
    UpstreamError,
    UpstreamTimeoutError,
)
from function.inputs import MEDIA_TASKS, RunInputs
from function.settings import DEAD_HOST, DEFAULT_ENDPOINT, Settings
from function.tasks import get_task, recognize, recognize_or_none
from function.tasks.base import ModelPipeline, Task

if TYPE_CHECKING:
    from function.media import Media

log = logging.getLogger(__name__)

_MODEL_PIPELINE = ModelPipeline()
MIN_ALTERNATE_S = 1.0
# Failures another model, provider or endpoint could fix: not served, still loading, over
# capacity or failing after retries, out of time, unreachable, out of credits, and a model
# that cannot run in this process (not cached, too large, damaged).
MOVE_ON = (
    LocalModelError,
    NotFoundError,
    ModelLoadingError,
    ServerError,
    RateLimitedError,
    UpstreamTimeoutError,
    ConnectionFailedError,
    PaymentRequiredError,
)


def check_ready(settings: Settings, token: str | None, *, needs_token: bool = True) -> None:
    """Refuse before any request what cannot work: the dead host, a missing token (unless
    every run of the invocation runs in this process)."""
    if settings.endpoint_host == DEAD_HOST:
        raise ConfigError(
            f"HUGGINGFACE_API_ENDPOINT points at {DEAD_HOST}, which Hugging Face has shut down; "
            f"use {DEFAULT_ENDPOINT}"
        )
    if needs_token and settings.needs_token and not token:
        raise ConfigError(NO_TOKEN)


async def run_inference(
    inputs: RunInputs,
    settings: Settings,
    client: Fetcher,
    deadline: Deadline,
    token: str | None,
    *,
    files: bool = False,
    media_slots: asyncio.Semaphore | None = None,
) -> Outcome:
    """`files`: an image or audio input may be a file path (the CLI's runs). A media task
    holds one of `media_slots` from reading its image or sound until its answer: a batch
    holds that many in memory at most, whatever its concurrency."""
    if MEDIA_TASKS.get(inputs.task or "") is None:
        return await _run_chain(inputs, settings, client, deadline, token, None)
    async with media_slots or contextlib.nullcontext():
        media = await _read_media(inputs, settings, deadline, files)
        return await _run_chain(inputs, settings, client, deadline, token, media)


async def _run_chain(
    inputs: RunInputs,
    settings: Settings,
    client: Fetcher,
    deadline: Deadline,
    token: str | None,
    media: Media | None,
) -> Outcome:
    if not inputs.fallback:
        return await _run_on(inputs, settings, client, deadline, token, media)
    chain = [inputs, *(inputs.alternate(a) for a in inputs.fallback)]
    for candidate in chain:  # an unknown endpoint or a missing key, before any request
        target_for(candidate, settings, token)
    tried: list[dict[str, Any]] = []
    failures: list[str] = []
    for position, candidate in enumerate(chain):
        last = position == len(chain) - 1
        share = deadline if last else deadline.share(len(chain) - position, MIN_ALTERNATE_S)
        started = time.monotonic()
        try:
            outcome = await _run_on(candidate, settings, client, share, token, media)
        except RunJobError as exc:
            tried.append(_attempt(candidate, exc.kind, started, exc.attempts))
            failures.append(f"{candidate.model} ({where(candidate)}): {exc.message}")
            if last or not isinstance(exc, MOVE_ON):
                raise _chain_failed(exc, failures, tried, len(chain), out_of_time=last) from None
            if deadline.remaining() < MIN_ALTERNATE_S:
                skipped = ", ".join(c.model for c in chain[position + 1 :])
                failures.append(f"not tried for lack of time: {skipped}")
                # Not finished: a batch continues the item, to try them all with time enough.
                error = _chain_failed(exc, failures, tried, len(chain), out_of_time=True)
                error.out_of_time = True
                raise error from None
            log.info("Model %s failed (%s); trying the next alternate", candidate.model, exc.kind)
            continue
        tried.append(_attempt(candidate, None, started, outcome.attempts))
        return replace(outcome, tried=tried, attempts=sum(t["attempts"] for t in tried))
    raise AssertionError("unreachable: the last alternate returns or raises")


async def _read_media(
    inputs: RunInputs, settings: Settings, deadline: Deadline, files: bool
) -> Media | None:
    """The image or sound a media task reads, once for every alternate."""
    field = MEDIA_TASKS.get(inputs.task or "")
    if field is None:
        return None
    from function.media import read_media

    return await read_media(field, getattr(inputs, field), settings, deadline, files=files)


async def _run_on(
    inputs: RunInputs,
    settings: Settings,
    client: Fetcher,
    deadline: Deadline,
    token: str | None,
    media: Media | None = None,
) -> Outcome:
    named = get_task(inputs.task) if inputs.task else None
    request = named or _MODEL_PIPELINE
    target = target_for(inputs, settings, token)
    call = request.call(inputs, target, media)
    if call.cache_s:
        call = call._replace(accepts=lambda body: _readable(named, body, inputs))
    answer = await client.post_json(call, deadline)
    task = named or recognize(answer.body)
    try:
        result = task.read(answer.body, inputs)
    except BadResponseError as exc:
        looks_like = recognize_or_none(answer.body)
        if looks_like is not None and looks_like is not task:
            exc.message += (
                f". It looks like a {looks_like.name} answer: is the model a "
                f"{looks_like.name} model? Name the task that fits it"
                + (" (candidate_labels: null drops the labels)" if inputs.labels else "")
            )
        raise
    result = await task.finish(result, settings, deadline)
    # An answer from the cache used no tokens now: its body's `usage` is the first run's.
    prompt, completion = (None, None) if answer.cached else task.tokens(answer.body)
    usage = replace(
        answer.usage,
        provider=answer.usage.provider or inputs.routed_provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
    )
    return Outcome(
        envelope=success_envelope(
            result, is_classification=task.is_classification, model=inputs.model
        ),
        task=task.name,
        attempts=answer.attempts,
        usage=usage,
        size=answer.size,
        where=where(inputs),
        cache_hit=answer.cached,
    )


def _readable(named: Task | None, body: Any, inputs: RunInputs) -> bool:
    """Whether the task (named, or recognized from the answer) reads this answer."""
    task = named or recognize_or_none(body)
    if task is None:
        return False
    try:
        task.read(body, inputs)
    except BadResponseError:
        return False
    return True


def _attempt(
    inputs: RunInputs, error_kind: str | None, started: float, attempts: int
) -> dict[str, Any]:
    """One alternate's try, for the run record."""
    return {
        "model": inputs.model,
        "where": where(inputs),
        "error_kind": error_kind,
        "attempts": attempts,
        "duration_ms": round((time.monotonic() - started) * 1000),
    }


def _chain_failed(
    last: RunJobError,
    failures: list[str],
    tried: list[dict[str, Any]],
    total: int,
    *,
    out_of_time: bool,
) -> RunJobError:
    """The last alternate's error (its kind decides retry or not), naming every failure. A
    copy: the error may be shared by many items (one model's load, one request's answer)."""
    last = copy.copy(last)
    if len(failures) > 1:
        said = (
            f"All {total} models failed"
            if len(tried) == total
            else f"{len(tried)} of {total} models tried, none answered"
        )
        last.message = f"{said}: " + "; ".join(failures)
        last.args = (last.message,)
    last.out_of_time = last.out_of_time and out_of_time
    last.tried = tried
    last.attempts = sum(t["attempts"] for t in tried)
    if isinstance(last, UpstreamError):
        last.attempts = last.attempts or 1
    return last
