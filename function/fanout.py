"""Fan-out: one invocation splits a big JSONL input into parts of `chunk_size` items and
sends one SQS message per part; the queue's workers run the parts (each a batch over a byte
range of the input) and write `part-NNNNN.jsonl` under the output prefix. The manifest
(`manifest.json` there) lists the parts and their counts.

A part is a batch like any other: what it does not finish goes back on the queue as its
continuation (`part-NNNNN.c1.jsonl`, ...), so no item is lost and none is written twice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from function.aws import aws_client
from function.batchfields import BatchFields, passed_on
from function.client import Deadline
from function.errors import ConfigError, StorageError
from function.settings import Settings
from function.storage import open_input, put_bytes, read_lines
from function.threads import bounded


@dataclass
class Part:
    number: int
    start: int  # byte offsets in the input: [start, end)
    end: int
    first_index: int
    first_line: int
    count: int


async def split(
    uri: str, chunk_size: int, settings: Settings, deadline: Deadline
) -> AsyncIterator[Part]:
    """Parts of `chunk_size` items (non-blank lines), by byte offsets, in one streamed pass."""
    position = index = count = number = 0
    start = first_index = first_line = 0
    read = await open_input(uri, settings, deadline)
    async for line in read_lines(read, max_line=settings.max_line_bytes):
        if count == 0:
            start, first_index, first_line = position, index, line.number
        position += line.size
        if line.problem is not None or line.data.strip():
            index += 1
            count += 1
        if count == chunk_size:
            yield Part(number, start, position, first_index, first_line, count)
            number, count = number + 1, 0
    if count:
        yield Part(number, start, position, first_index, first_line, count)


async def fan_out(
    batch: BatchFields, shared: dict[str, Any], settings: Settings, deadline: Deadline
) -> dict[str, Any]:
    if not settings.run_queue_url:
        raise ConfigError("fan_out needs RUN_QUEUE_URL: the SQS queue that the workers read")
    assert batch.input_uri is not None and batch.output_uri is not None
    options = passed_on(batch)
    parts: list[dict[str, Any]] = []
    entries: list[dict[str, str]] = []
    async for part in split(batch.input_uri, batch.chunk_size, settings, deadline):
        output = f"{batch.output_uri}part-{part.number:05d}.jsonl"
        body = {
            **shared,
            **options,
            "input_uri": batch.input_uri,
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
        entries.append({"Id": str(part.number), "MessageBody": json.dumps(body)})
        if len(entries) == 10:
            await send_messages(entries, settings, deadline)
            entries = []
    if entries:
        await send_messages(entries, settings, deadline)
    total = sum(p["count"] for p in parts)
    manifest_uri = f"{batch.output_uri}manifest.json"
    manifest = {
        "input_uri": batch.input_uri,
        "output_prefix": batch.output_uri,
        "chunk_size": batch.chunk_size,
        "total": total,
        "parts": parts,
    }
    await put_bytes(manifest_uri, json.dumps(manifest, indent=1).encode(), settings, deadline)
    return {
        "fan_out": True,
        "total": total,
        "parts": len(parts),
        "output": batch.output_uri,
        "manifest": manifest_uri,
    }


async def send_messages(
    entries: list[dict[str, str]], settings: Settings, deadline: Deadline
) -> None:
    """Up to 10 messages to RUN_QUEUE_URL; StorageError if any is not accepted."""
    sqs = aws_client("sqs", settings.aws_timeout_s)
    queue = settings.run_queue_url
    try:
        answer = await bounded(
            lambda: sqs.send_message_batch(QueueUrl=queue, Entries=entries), deadline
        )
    except TimeoutError:
        raise StorageError("RUN_QUEUE_URL: no answer before the deadline") from None
    except Exception as exc:
        raise StorageError(f"RUN_QUEUE_URL: could not send ({type(exc).__name__})") from None
    if answer.get("Failed"):
        ids = ", ".join(f["Id"] for f in answer["Failed"])
        raise StorageError(f"RUN_QUEUE_URL: message(s) {ids} were not accepted")
