"""A fake Hugging Face Inference API on 127.0.0.1, for end-to-end tests and benchmarks.

A real HTTP/1.1 server (asyncio, keep-alive) on a real socket, running in its own thread.
It replays recorded exchanges from `../shared/reference/recorded-responses/` and injects
faults: any status and body, `Retry-After`, slow answers, connection resets.

    with FakeHF() as hf:
        hf.on("/models/facebook/bart-large-mnli", Reply(503, {...}), Reply(200, [...]))
        ... HUGGINGFACE_API_ENDPOINT=hf.endpoint ...
        hf.requests  # what the client sent

Replies scripted for a path are served in order; the last one is served again after that.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The shared reference beside the repository when it is there, else the copy the repository
# carries (tests/reference: the same files), so that a clone anywhere runs its tests.
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"
REFERENCE_DIR = Path(
    os.environ.get(
        "HF_REFERENCE_DIR", _SHARED if _SHARED.is_dir() else Path(__file__).parent / "reference"
    )
)
RECORDINGS_DIR = REFERENCE_DIR / "recorded-responses"
PREFIX = "/hf-inference"
CHAT = "/v1/chat/completions"
LEGACY_PREFIX = "legacy-api-inference__InferenceClientVCRTest.test_"
ROUTER_PREFIX = "router__TestInferenceClient.test_"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # str/bytes are sent as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    reset: bool = False  # drop the connection with a TCP reset instead of answering
    # Misbehaving peers:
    hang: bool = False  # read the request, never answer
    trickle: float = 0.0  # send the whole answer a byte at a time, this many seconds apart
    endless: bool = False  # a chunked body that never ends (a chunk every 10 ms)
    claim_length: int | None = None  # a Content-Length header of this, then an endless body

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if isinstance(self.body, bytes):
            body = self.body
        elif isinstance(self.body, str):
            body = self.body.encode()
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        else:
            body = json.dumps(self.body).encode()
        headers.setdefault("content-type", "application/json")
        return body, headers


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


NOT_FOUND = Reply(404, {"error": "Model not found (fake server: nothing scripted for this path)"})
OVER_CAPACITY = Reply(429, {"error": "Too many requests in flight"}, {"Retry-After": "1"})


Handler = Callable[["Seen"], Reply]  # a reply made from the request


class FakeHF:
    def __init__(self, *, latency: float = 0.0, max_in_flight: int | None = None) -> None:
        self.latency = latency
        # Like the API's rate limiter: past this many requests at once, 429 + Retry-After.
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self.refused = 0
        self.requests: list[Seen] = []
        self._scripts: dict[str, list[Reply | Handler]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- control --------------------------------------------------------------------------

    def start(self) -> FakeHF:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self._loop.is_running():
            return

        async def close() -> None:
            if self._server:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeHF:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """What HUGGINGFACE_API_ENDPOINT should be set to."""
        return self.base_url + PREFIX

    def on(self, path: str, *replies: Reply | Handler, prefix: str = PREFIX) -> None:
        """Script the replies for a path below the endpoint, e.g. `/models/org/name` (with
        `prefix=""`, below the server's root: the router's `/v1/chat/completions`); a
        reply may be a function of the request."""
        with self._lock:
            self._scripts[prefix + path] = list(replies)

    def seen(self, path: str, prefix: str = PREFIX) -> list[Seen]:
        return [r for r in self.requests if r.path == prefix + path]

    def on_chat(self, *replies: Reply | Handler) -> None:
        """The router's chat completions route (HUGGINGFACE_ROUTER_URL is the root)."""
        self.on(CHAT, *replies, prefix="")

    def chats(self) -> list[Seen]:
        return self.seen(CHAT, prefix="")

    def _next_reply(self, request: Seen) -> Reply:
        with self._lock:
            script = self._scripts.get(request.path)
            if not script:
                return NOT_FOUND
            reply = script.pop(0) if len(script) > 1 else script[0]
        return reply if isinstance(reply, Reply) else reply(request)

    # -- HTTP -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self.requests.append(request)
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    if self.max_in_flight is not None and self.in_flight > self.max_in_flight:
                        self.refused += 1
                        reply = OVER_CAPACITY  # at once, as a rate limiter answers
                    else:
                        reply = self._next_reply(request)
                        if self.latency or reply.delay:
                            await asyncio.sleep(self.latency + reply.delay)
                finally:
                    self.in_flight -= 1
                if reply.reset:
                    _reset(writer)
                    return
                if reply.hang or reply.endless or reply.claim_length is not None:
                    await _misbehave(reply, writer)
                    return
                body, headers = reply.encoded()
                head = [f"HTTP/1.1 {reply.status} X", f"content-length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
                if reply.trickle:
                    for i in range(len(data)):
                        writer.write(data[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(reply.trickle)
                else:
                    writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _misbehave(reply: Reply, writer: asyncio.StreamWriter) -> None:
    """Answers no client should wait for or hold in memory: nothing at all, a chunked body
    without end, a huge Content-Length with a body that keeps coming."""
    if reply.hang:
        await asyncio.sleep(3600)
        return
    if reply.endless:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"[" + b"0.5," * 16_000
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0.01)
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {reply.claim_length}"
    )
    writer.write(head.encode() + b"\r\n\r\n")
    chunk = b"[" + b"0.5," * 16_000
    while True:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, urlsplit(target).path, headers, body)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- recorded exchanges ---------------------------------------------------------------------


def recording(name: str) -> dict[str, Any]:
    """A recorded exchange file, by its name without `.json`."""
    path = RECORDINGS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the tests need ../shared/reference beside the repository "
            "(or HF_REFERENCE_DIR pointing at it)"
        )
    return json.loads(path.read_text())


def recorded_reply(exchange: dict[str, Any]) -> Reply:
    response = exchange["response"]
    return Reply(response["status"], response["body"].encode(), dict(response["headers"]))
