"""A cache of answers across runs: `cache: "7d"` answers a request the job sent in the last
7 days from what came back then, with no request at all.

The key is the canonical request: where it goes (backend, provider or endpoint, model and
task are in the URL and the payload), its content type and its payload (JSON with sorted
keys, or an image's bytes), hashed (SHA-256). Only successes the task can read are kept,
each with the moment it was stored: the reader's lifetime decides whether it is still fresh,
and an entry that is not one (damaged, another shape, from the future) is a miss. The
store sits beside the results, `HF_CACHE_URI` (default `RESULTS_URI/cache`): a folder, or
an S3 prefix (the template expires it with a lifecycle rule). Reads and writes are bounded
by the deadline; a cache that cannot be read is a miss, and one that cannot be written is
logged: the cache never fails a run.

Within a run, identical requests are still sent once (`function.coalescer`, behind this).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from function import jsontext
from function.client import ApiResponse, Call, Deadline, Fetcher
from function.envelope import Usage
from function.settings import Settings
from function.threads import bounded

log = logging.getLogger(__name__)

_LIFETIME = re.compile(r"(\d{1,6})\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LIFETIME_S = 366 * 86400
IO_TIMEOUT_S = 2.0  # a cache read or write never takes more of the run than this
CLOCK_SKEW_S = 60.0  # an entry stored later than this from now is not trusted


def lifetime(value: Any) -> float:
    """`cache`: "off" (0), or a lifetime such as "90s", "30m", "1h", "7d" (seconds)."""
    said = value.strip().lower() if isinstance(value, str) else None
    if value is None or value is False or said == "off":
        return 0.0
    match = _LIFETIME.fullmatch(said) if said is not None else None
    seconds = int(match[1]) * _UNIT_S[match[2]] if match else -1
    if not 0 < seconds <= MAX_LIFETIME_S:
        raise ValueError(
            'expected "off" or a lifetime up to 366 days: a number and s, m, h or d, e.g. '
            '"1h" or "7d"'
        )
    return float(seconds)


def request_key(call: Call) -> str:
    """Identical requests have the same key: where they go, their content type and their
    payload, JSON (keys sorted) or bytes. The coalescer keys a run's requests by it too."""
    body = (
        call.payload
        if isinstance(call.payload, bytes)
        else jsontext.dumps(call.payload, sort_keys=True).encode()
    )
    head = f"{call.url}\n{call.content_type}\n".encode()
    return hashlib.sha256(head + body).hexdigest()


class CachedFetcher:
    """A Fetcher in front of another: a call with `cache_s` is answered from the store when
    it can be, and its success is stored for next time."""

    def __init__(self, inner: Fetcher, settings: Settings) -> None:
        self.inner = inner
        self.settings = settings
        self._store: LocalStore | S3Store | None = None  # opened by the first cached call

    @property
    def store(self) -> LocalStore | S3Store:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    async def post_json(self, call: Call, deadline: Deadline) -> ApiResponse:
        if call.cache_s <= 0:
            return await self.inner.post_json(call, deadline)
        name = request_key(call)
        # An entry is held to the answers' size limit (with room for its own few keys).
        limit = self.settings.max_response_bytes + 1024
        data = await self._io(lambda: self.store.get(name, limit), deadline, "read")
        kept = _entry(data)
        if _fresh(kept, call):
            return ApiResponse(kept["body"], Usage(), 0, size=len(data), cached=True)
        answer = await self.inner.post_json(call, deadline)
        # Pictures are stored as results, not here; an answer the task cannot read is not kept.
        if not isinstance(answer.body, bytes) and _readable(answer.body, call):
            entry = {"stored_at": time.time(), "body": answer.body}
            await self._io(lambda: self.store.put(name, jsontext.dumps(entry)), deadline, "write")
        return answer

    async def _io(self, work: Any, deadline: Deadline, what: str) -> Any:
        budget = Deadline(min(IO_TIMEOUT_S, deadline.remaining()))
        try:
            return await bounded(work, budget)
        except Exception as exc:  # a miss, never a failure
            log.warning("The answer cache could not %s (%s): going on without it", what, exc)
            return None


def _entry(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return jsontext.parse(data)
    except ValueError as exc:
        log.warning("A damaged entry in the answer cache (%s): a miss", exc)
        return None


def _fresh(entry: Any, call: Call) -> bool:
    """Stored less than the caller's lifetime ago (a shorter lifetime than the writer's is
    honoured), and an answer the task reads."""
    if not isinstance(entry, dict) or "body" not in entry:
        return False
    stored = entry.get("stored_at")
    if not isinstance(stored, int | float) or isinstance(stored, bool):
        return False
    age = time.time() - stored
    return -CLOCK_SKEW_S <= age < call.cache_s and _readable(entry["body"], call)


def _readable(body: Any, call: Call) -> bool:
    return call.accepts is None or call.accepts(body)


class LocalStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / name[:2] / f"{name}.json"

    def get(self, name: str, limit: int) -> bytes | None:
        path = self._path(name)
        if not path.is_file():
            return None
        with path.open("rb") as file:
            data = file.read(limit + 1)
        return None if len(data) > limit else data

    def put(self, name: str, text: str) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)  # whole or not at all, whoever reads it meanwhile


class S3Store:
    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        from function.aws import aws_client

        self.bucket, self.prefix = bucket, prefix
        self.s3 = aws_client("s3", settings.aws_timeout_s)

    def get(self, name: str, limit: int) -> bytes | None:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.json")
        except self.s3.exceptions.NoSuchKey:
            return None
        if got.get("ContentLength", 0) > limit:
            got["Body"].close()
            return None
        data: bytes = got["Body"].read(limit + 1)
        return None if len(data) > limit else data

    def put(self, name: str, text: str) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{self.prefix}{name}.json",
            Body=text.encode(),
            ContentType="application/json",
        )


def open_store(settings: Settings) -> LocalStore | S3Store:
    uri = settings.cache_uri
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return S3Store(bucket, prefix.rstrip("/") + "/" if prefix.strip("/") else "", settings)
    return LocalStore(Path(uri.removeprefix("file://")))
