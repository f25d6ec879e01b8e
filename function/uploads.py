"""S3 uploads as runs: "classify every photo users upload", "transcribe every call".

An object created under a prefix that S3_TRIGGERS maps to a run config becomes one run of
that config (the longest matching prefix wins; a key may name `bucket/prefix` too):

    S3_TRIGGERS={"uploads/images/": "classify-images", "media-in/calls/": "transcribe-calls"}

What the object is, is read from its bytes: an image or a sound is the run's `image` or
`audio` (by reference: the run reads it), a `.jsonl` object is a batch (`input_uri`; its
output goes beside the results, under BATCHES_URI), anything else is UTF-8 `text`.

An object under RESULTS_URI or BATCHES_URI is the job's own output and never starts a run:
a result the job writes cannot trigger the job again.
"""

from __future__ import annotations

from typing import Any

from function.client import Deadline
from function.errors import InputError
from function.inputs import MEDIA_TASKS, implied_task, merge_inputs
from function.media import sniff
from function.settings import Settings
from function.storage import open_input, read_whole, s3_location

HEAD_BYTES = 64  # enough for every magic number `function.media` knows


class OwnOutputError(InputError):
    """The object is one the job wrote: no run, and no record (a record would be an object
    under RESULTS_URI too)."""

    kind = "own_output"


async def upload_fields(uri: str, settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """The run fields of an uploaded object, or InputError saying why it starts no run."""
    bucket, key = s3_location(uri)
    assert bucket is not None
    for setting, location in (
        ("RESULTS_URI", settings.results_uri),
        ("BATCHES_URI", settings.batches_uri),
    ):
        own_bucket, own_prefix = _prefix(location)
        if own_bucket == bucket and key.startswith(own_prefix):
            raise OwnOutputError(
                f"Not run: {uri} is the job's own output ({setting} {location}); uploads "
                "that start runs belong under a prefix of S3_TRIGGERS"
            )
    config = run_config_for(bucket, key, settings.s3_triggers)
    if config is None:
        raise InputError(
            f"Not run: no S3_TRIGGERS prefix matches {uri} (prefixes: "
            f"{', '.join(settings.s3_triggers) or 'none set'})"
        )
    fields: dict[str, Any] = {"run_config": config}
    if key.endswith(".jsonl"):
        return {**fields, "input_uri": uri}
    read = await open_input(uri, settings, deadline, (0, HEAD_BYTES), field="upload")
    head = await read()
    kind = sniff(head)
    if kind is not None:
        return {**fields, kind.partition("/")[0]: uri}
    task = implied_task(merge_inputs(fields, settings))
    if task in MEDIA_TASKS:
        raise InputError(
            f"upload: {uri} is not an image or a sound the API reads (its first bytes are "
            f"{head[:8].hex(' ')}), and run config {config!r} runs {task}"
        )
    return {**fields, "text": await _text(uri, settings, deadline)}


def run_config_for(bucket: str, key: str, triggers: dict[str, str]) -> str | None:
    """The run config of the longest S3_TRIGGERS prefix that the object is under."""
    path = f"{bucket}/{key}"
    matches = [
        (len(prefix), config)
        for prefix, config in triggers.items()
        if key.startswith(prefix) or path.startswith(prefix)
    ]
    return max(matches)[1] if matches else None


def _prefix(location: str) -> tuple[str | None, str]:
    if not location.startswith("s3://"):
        return None, ""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix


async def _text(uri: str, settings: Settings, deadline: Deadline) -> str:
    limit = settings.max_line_bytes
    read = await open_input(uri, settings, deadline, field="upload")
    data = await read_whole(read, limit)
    if data is None:
        raise InputError(
            f"upload: {uri} is over {limit:,} bytes (HF_MAX_LINE_BYTES) and is not an image "
            "or a sound; a large upload of texts belongs in a .jsonl batch"
        )
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InputError(
            f"upload: {uri} is neither an image, a sound nor UTF-8 text (its first bytes are "
            f"{bytes(data[:8]).hex(' ')})"
        ) from None
    if not text:
        raise InputError(f"upload: {uri} is empty")
    return text
