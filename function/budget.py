"""`budget: {"characters": N, "tokens": N, "per": "run" | "day"}`, in a run config or an
event: a run starts no new item once it has used that much (characters billed, or input +
output tokens). What it did not start goes to the continuation, never queued on its own.

`per: "run"` counts what this run used. `per: "day"` adds what its run config already used
today (UTC), read from one small total per run config and day that every run adds to as it
stores its records (`function.runs`, `function.usage`):
`<RESULTS_URI>/usage/YYYY-MM-DD/<run config>.json`,
`{"characters", "tokens", "runs"}`. Runs that overlap add to it safely: in a folder under a
lock, on S3 by compare-and-swap (If-Match / If-None-Match, tried again when another run
wrote first). No record is read to check a budget.

Imported only by runs that have a budget, and by batches: a pydantic model costs the cold
start of every other run a few milliseconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from function.runs import Used


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    characters: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)
    per: Literal["run", "day"] = "run"

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(
                'expected an object such as {"characters": 100000, "per": "day"} '
                "(characters, tokens, per)"
            )
        unknown = sorted(str(k) for k in value if k not in cls.model_fields)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; expected characters, "
                'tokens (whole numbers) and per ("run" or "day")'
            )
        return value

    @model_validator(mode="after")
    def _limits_something(self) -> Budget:
        if self.characters is None and self.tokens is None:
            raise ValueError("expected characters or tokens (or both), each a whole number")
        return self

    def reached(self, used: Used) -> bool:
        return (self.characters is not None and used.characters >= self.characters) or (
            self.tokens is not None and used.tokens >= self.tokens
        )

    def after(self, used: Used, among: int = 1) -> Budget:
        """The budget of each of the `among` runs that continue this one (a continuation, an
        unread rest): per day, the same (the day's total counts every run); per run, what
        this run left of it, shared among them."""
        if self.per == "day":
            return self

        def left(limit: int | None, spent: int) -> int | None:
            return None if limit is None else max(1, (limit - spent) // among)

        return self.model_copy(
            update={
                "characters": left(self.characters, used.characters),
                "tokens": left(self.tokens, used.tokens),
            }
        )

    def describe(self, used: Used) -> str:
        parts = [
            f"{getattr(used, name):,} of {limit:,} {name}"
            for name, limit in (("characters", self.characters), ("tokens", self.tokens))
            if limit is not None
        ]
        when = "today" if self.per == "day" else "in this run"
        return f"used {' and '.join(parts)} {when} (budget per {self.per})"


def parse_budget(value: Any) -> Budget | None:
    """A batch's `budget` (from its event and run config), or an error naming the field."""
    if value is None:
        return None
    from pydantic import ValidationError

    from function.errors import InputError
    from function.inputs import describe_validation_error

    try:
        return Budget.model_validate(value)
    except ValidationError as exc:  # worded as a run's own inputs word it
        raise InputError("Invalid input: budget: " + describe_validation_error(exc)) from None
