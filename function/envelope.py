"""The uniform envelope every run returns, and the run's outcome around it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypedDict

from function.errors import RunJobError
from function.redact import redact


class Envelope(TypedDict):
    success: bool
    result: Any
    is_classification: bool
    model: str | None
    error: str | None


def success_envelope(result: Any, *, is_classification: bool, model: str) -> Envelope:
    return {
        "success": True,
        "result": result,
        "is_classification": is_classification,
        "model": redact(model),  # a token given as the model id is not shown back
        "error": None,
    }


def failure_envelope(error: str, *, model: str | None) -> Envelope:
    return {
        "success": False,
        "result": None,
        "is_classification": False,
        "model": None if model is None else redact(model),
        "error": error,
    }


MAX_COUNT = 10**12  # characters or tokens one answer may report; past it, not believed
MAX_SECONDS = 10**6


def count(value: Any) -> int | None:
    """A count a server reports (characters, tokens): a whole number from 0 to MAX_COUNT,
    else None. A header of 400 digits, a negative or a fractional count is not usage."""
    if isinstance(value, str):
        value = int(value) if value.isascii() and value.isdigit() and len(value) <= 13 else None
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    return value if ok else None


def seconds(value: Any) -> float | None:
    """Compute seconds a server reports: a finite number from 0 to MAX_SECONDS, else None."""
    try:
        number = float(value) if isinstance(value, str | int | float) else None
    except ValueError:
        return None
    if isinstance(value, bool) or number is None or not 0 <= number <= MAX_SECONDS:
        return None  # NaN and infinities fail the comparison too
    return number


_HARDWARE = re.compile(r"[a-z0-9][a-z0-9.-]{0,31}")  # no "_": a token (hf_...) never fits


def hardware(value: Any) -> str | None:
    """The hardware a server names (`x-compute-type`: cpu, gpu, a GPU's name), if it is a
    short name: never an arbitrary header value, nor a secret a server echoes there."""
    name = value.strip() if isinstance(value, str) else ""  # as said: a key is never folded
    return name if _HARDWARE.fullmatch(name) else None


@dataclass
class Usage:
    """What the API reports about one answer (the `x-compute-*` headers)."""

    characters: int | None = None
    compute_time_s: float | None = None
    compute_type: str | None = None
    provider: str | None = None  # the Inference Provider that served it (the router says)
    prompt_tokens: int | None = None  # chat completions' `usage`
    completion_tokens: int | None = None


@dataclass
class Outcome:
    """An envelope plus what the trigger, the logs and the run record need to know."""

    envelope: Envelope
    task: str | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    error_kind: str | None = None
    transient: bool = False
    http_status: int = 200
    run_config: str | None = None
    duration_ms: int = 0
    out_of_time: bool = False  # the deadline ended it: a batch continues the item
    size: int = 0  # bytes of the answer it was read from (a batch bounds what it holds)
    where: str | None = None  # hf-inference, router[:provider], endpoint:NAME
    tried: list[dict[str, Any]] | None = None  # with a fallback: every alternate tried
    cache_hit: bool = False  # answered from the cache across runs (function.cache)

    @property
    def success(self) -> bool:
        return self.envelope["success"]

    @classmethod
    def failed(cls, exc: RunJobError, *, model: str | None) -> Outcome:
        return cls(
            envelope=failure_envelope(exc.message, model=model),
            attempts=exc.attempts,
            error_kind=exc.kind,
            transient=exc.transient,
            http_status=exc.http_status,
            out_of_time=exc.out_of_time,
            tried=exc.tried,
        )
