"""The fields of a batch event, beside the run inputs (`function.inputs`): one registry of
field names for both. Imported when a batch runs (single runs never pay for the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from function.errors import InputError
from function.inputs import RUN_INPUT_FIELDS, describe_validation_error, did_you_mean


class Part(BaseModel):
    """A byte range of a JSONL input (fan-out), with the index and line number of its first
    line in the whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    bytes: list[NonNegativeInt | None] = Field(min_length=2, max_length=2)  # [start, end)

    @field_validator("bytes")
    @classmethod
    def _range(cls, value: list[int | None]) -> list[int | None]:
        start, end = value
        if start is None or (end is not None and end < start):
            raise ValueError("expected [start, end] byte offsets (end null: to the end)")
        return value

    first_index: NonNegativeInt = 0
    first_line: int = Field(default=1, ge=1)


class BatchFields(BaseModel):
    """The fields of an event that describe a batch rather than its runs. Every other field
    is shared by the items (and each item's own fields win)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    items: list[Any] | None = None
    input_uri: str | None = Field(default=None, min_length=1)
    output_uri: str | None = Field(default=None, min_length=1)
    batch_size: int = Field(default=32, ge=1, le=1024)
    concurrency: int = Field(default=64, ge=1, le=1024)
    rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    part: Part | None = None
    fan_out: bool = False
    chunk_size: int = Field(default=500, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_source(self) -> BatchFields:
        if (self.items is None) == (self.input_uri is None):
            raise ValueError("a batch takes one of items, text (a list) or input_uri")
        if (self.part or self.fan_out) and self.input_uri is None:
            raise ValueError("part and fan_out need input_uri")
        if self.fan_out and not (self.output_uri or "").endswith("/"):
            raise ValueError("output_uri: fan_out needs a prefix ending with '/' for the parts")
        return self


BATCH_FIELDS = frozenset(BatchFields.model_fields)
# Batch fields a batch passes on when it sends work to the queue's workers.
WORKER_OPTIONS = ("batch_size", "concurrency", "rate")


def passed_on(batch: BatchFields) -> dict[str, Any]:
    """The batch fields the parts, continuations and rests of a batch keep."""
    return {name: getattr(batch, name) for name in WORKER_OPTIONS if name in batch.model_fields_set}


def split_batch(fields: Mapping[str, Any]) -> tuple[BatchFields, dict[str, Any]]:
    """A batch event's own fields, and the run input fields its items share."""
    unknown = sorted(str(k) for k in fields if k not in BATCH_FIELDS and k not in RUN_INPUT_FIELDS)
    if unknown:
        raise InputError(
            f"unknown input field(s): {did_you_mean(unknown, RUN_INPUT_FIELDS | BATCH_FIELDS)}"
        )
    own = {k: v for k, v in fields.items() if k in BATCH_FIELDS}
    if isinstance(fields.get("text"), list):
        own["items"] = fields["text"]
    shared = {
        k: v
        for k, v in fields.items()
        if k not in BATCH_FIELDS and not (k == "text" and isinstance(v, list))
    }
    try:
        return BatchFields.model_validate(own), shared
    except ValidationError as exc:
        raise InputError("Invalid batch: " + describe_validation_error(exc)) from None
