"""One inference: validated inputs in, an Outcome (envelope, usage, attempts) out."""

from __future__ import annotations

import logging

from function.client import Deadline, Fetcher
from function.envelope import Outcome, success_envelope
from function.errors import BadResponseError, ConfigError
from function.inputs import RunInputs
from function.settings import DEAD_HOST, DEFAULT_ENDPOINT, Settings
from function.tasks import get_task, recognize, recognize_or_none
from function.tasks.base import ModelPipeline

log = logging.getLogger(__name__)

_MODEL_PIPELINE = ModelPipeline()


def check_ready(settings: Settings, token: str | None) -> None:
    """Refuse before any request what cannot work: the dead host, a missing token."""
    if settings.endpoint_host == DEAD_HOST:
        raise ConfigError(
            f"HUGGINGFACE_API_ENDPOINT points at {DEAD_HOST}, which Hugging Face has shut down; "
            f"use {DEFAULT_ENDPOINT}"
        )
    if settings.needs_token and not token:
        raise ConfigError(
            "No Hugging Face token: set HUGGINGFACE_API_KEY (or HF_TOKEN) to a token from "
            "https://huggingface.co/settings/tokens, or HUGGINGFACE_API_KEY_SECRET_ARN / "
            "HUGGINGFACE_API_KEY_PARAMETER to where it is stored"
        )


async def run_inference(
    inputs: RunInputs, settings: Settings, client: Fetcher, deadline: Deadline
) -> Outcome:
    named = get_task(inputs.task) if inputs.task else None
    request = named or _MODEL_PIPELINE
    answer = await client.post_json(
        request.url(settings.huggingface_api_endpoint, inputs.model),
        request.payload(inputs),
        model=inputs.model,
        wait_for_model=inputs.wait_for_model,
        deadline=deadline,
    )
    task = named or recognize(answer.body)
    try:
        result = task.parse(answer.body)
    except BadResponseError as exc:
        looks_like = recognize_or_none(answer.body)
        if looks_like is not None and looks_like is not task:
            exc.message += (
                f". It looks like a {looks_like.name} answer: is the model a "
                f"{looks_like.name} model? Name the task that fits it"
                + (" (candidate_labels: null drops the labels)" if inputs.labels else "")
            )
        raise
    return Outcome(
        envelope=success_envelope(
            result, is_classification=task.is_classification, model=inputs.model
        ),
        task=task.name,
        attempts=answer.attempts,
        usage=answer.usage,
        size=answer.size,
    )
