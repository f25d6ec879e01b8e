"""The benchmark's stand-in for the Inference API, in its own process on 127.0.0.1.

Every answer takes `--latency` seconds; past `--cap` requests in flight it answers 429 with
`Retry-After` at once, like a rate limiter. Answers are read from the request's shape:
zero-shot (`candidate_labels`) -> `[{label, score}]`; a list of texts -> one vector each;
one text -> one vector. Lean on purpose (no request log), so that the client is measured.

    python bench/server.py --latency 0.05 --cap 32   # prints the port, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import json

VECTOR = [0.125] * 384


class Server:
    def __init__(self, latency: float, cap: int | None, retry_after: int) -> None:
        self.latency = latency
        self.cap = cap
        self.in_flight = 0
        self.refused = 0
        self.busy = (
            b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
            b"retry-after: %d\r\ncontent-length: 33\r\n\r\n"
            b'{"error": "Too many requests..."}' % retry_after
        )

    def answer(self, body: bytes) -> bytes:
        payload = json.loads(body)
        inputs = payload.get("inputs")
        parameters = payload.get("parameters") or {}
        if "candidate_labels" in parameters:
            labels = parameters["candidate_labels"]
            result = [{"label": x, "score": 1.0 / (i + 1)} for i, x in enumerate(labels)]
        elif isinstance(inputs, list):
            result = [VECTOR] * len(inputs)
        else:
            result = VECTOR
        data = json.dumps(result).encode()
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-compute-characters: %d\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), len(data), data)
        )

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if self.cap is not None and self.in_flight >= self.cap:
                    self.refused += 1
                    writer.write(self.busy)
                    continue
                self.in_flight += 1
                try:
                    await asyncio.sleep(self.latency)
                    writer.write(self.answer(body))
                finally:
                    self.in_flight -= 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--cap", type=int, default=None)
    parser.add_argument("--retry-after", type=int, default=1)
    args = parser.parse_args()
    server = Server(args.latency, args.cap, args.retry_after)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, backlog=1024)
    print(listener.sockets[0].getsockname()[1], flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
