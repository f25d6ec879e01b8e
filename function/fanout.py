"""Fan-out: one invocation splits a big JSONL input into parts of `chunk_size` items and
sends one SQS message per part; the queue's workers run the parts (each a batch over a byte
range of the input) and write `part-NNNNN.jsonl` under the output prefix. The manifest
(`manifest.json` there) lists the parts and their counts.

A part that does not finish in its invocation is reported as a failed message, so SQS
delivers it again and it is run whole again, rewriting its part file: no item is lost and
none is written twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from function.aws import aws_client
from function.batch import raw_lines, s3_location, shared_fields, whole_number_field
from function.errors import ConfigError, InputError
from function.settings import Settings

DEFAULT_CHUNK_SIZE = 500


@dataclass
class Part:
    number: int
    start: int  # byte offsets in the input: [start, end)
    end: int
    first_index: int
    first_line: int
    count: int


def split(uri: str, chunk_size: int) -> Iterator[Part]:
    """Parts of `chunk_size` items (non-blank lines), by byte offsets, in one streamed pass."""
    position = index = count = number = 0
    start = first_index = first_line = 0
    for line_number, line in enumerate(raw_lines(uri), 1):
        if count == 0:
            start, first_index, first_line = position, index, line_number
        position += len(line)
        if line.strip():
            index += 1
            count += 1
        if count == chunk_size:
            yield Part(number, start, position, first_index, first_line, count)
            number, count = number + 1, 0
    if count:
        yield Part(number, start, position, first_index, first_line, count)


def fan_out(fields: dict[str, Any], settings: Settings) -> dict[str, Any]:
    if not settings.run_queue_url:
        raise ConfigError("fan_out needs RUN_QUEUE_URL: the SQS queue that the workers read")
    input_uri, prefix = fields.get("input_uri"), fields.get("output_uri")
    if not isinstance(input_uri, str) or not input_uri:
        raise InputError("input_uri: fan_out needs the JSONL input to split")
    if not isinstance(prefix, str) or not prefix.endswith("/"):
        raise InputError("output_uri: fan_out needs a prefix ending with '/' for the part files")
    chunk_size = whole_number_field(fields, "chunk_size", DEFAULT_CHUNK_SIZE)
    shared = shared_fields(fields, with_options=True)

    sqs = aws_client("sqs")
    parts: list[dict[str, Any]] = []
    batch: list[dict[str, str]] = []
    try:
        for part in split(input_uri, chunk_size):
            output = f"{prefix}part-{part.number:05d}.jsonl"
            body = {
                **shared,
                "input_uri": input_uri,
                "output_uri": output,
                "part": {
                    "bytes": [part.start, part.end],
                    "first_index": part.first_index,
                    "first_line": part.first_line,
                },
            }
            parts.append(
                {
                    "part": part.number,
                    "output": output,
                    "first_index": part.first_index,
                    "count": part.count,
                }
            )
            batch.append({"Id": str(part.number), "MessageBody": json.dumps(body)})
            if len(batch) == 10:
                _send(sqs, settings.run_queue_url, batch)
                batch = []
    except OSError as exc:
        raise InputError(f"input_uri: could not read it ({type(exc).__name__}: {exc})") from None
    if batch:
        _send(sqs, settings.run_queue_url, batch)
    total = sum(p["count"] for p in parts)
    manifest_uri = f"{prefix}manifest.json"
    manifest = {
        "input_uri": input_uri,
        "output_prefix": prefix,
        "chunk_size": chunk_size,
        "total": total,
        "parts": parts,
    }
    _put(manifest_uri, json.dumps(manifest, indent=1).encode())
    return {
        "fan_out": True,
        "total": total,
        "parts": len(parts),
        "output": prefix,
        "manifest": manifest_uri,
    }


def _send(sqs: Any, queue_url: str, entries: list[dict[str, str]]) -> None:
    answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    if answer.get("Failed"):
        ids = ", ".join(f["Id"] for f in answer["Failed"])
        raise ConfigError(f"Could not queue part(s) {ids} to RUN_QUEUE_URL")


def _put(uri: str, data: bytes) -> None:
    bucket, key = s3_location(uri)
    if bucket is None:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(data)
        return
    aws_client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
