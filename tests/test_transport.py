"""The lean HTTP/1.1 transport, against raw answers from a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import Callable

import httpx
import pytest

from function.transport import LeanTransport

Answer = Callable[[bytes], bytes | None]  # request head+body -> raw response (None: hang up)


async def serve(answers: list[Answer], *, tls: ssl.SSLContext | None = None):
    """A server that answers each request on a connection with the next raw answer."""
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        (
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        ),
                        b"0",
                    )
                )
                body = await reader.readexactly(length)
                raw = answers.pop(0)(head + body)
                if raw is None:
                    writer.close()
                    return
                writer.write(raw)
                await writer.drain()
                if b"Connection: close" in raw:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    return server, server.sockets[0].getsockname()[1], connections


def ok(body: bytes, extra: bytes = b"") -> Answer:
    return lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def post(port: int, transport: LeanTransport, scheme: str = "http", timeout: float = 5):
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        return await client.post(f"{scheme}://127.0.0.1:{port}/models/x", json={"inputs": "hi"})


def transport() -> LeanTransport:
    return LeanTransport(ssl_context=ssl.create_default_context())


def test_content_length_and_keep_alive():
    async def main():
        server, port, connections = await serve([ok(b'{"a": 1}'), ok(b'{"b": 2}')])
        lean = transport()
        async with httpx.AsyncClient(transport=lean) as client:
            first = await client.post(f"http://127.0.0.1:{port}/m", content=b"x")
            second = await client.post(f"http://127.0.0.1:{port}/m", content=b"y")
        server.close()
        return first.json(), second.json(), len(connections)

    assert asyncio.run(main()) == ({"a": 1}, {"b": 2}, 1)  # one connection, kept alive


def test_chunked_body_and_trailers():
    body = b'[{"label": "a", "score": 1}]'
    pieces = [body[:5], body[5:21], body[21:]]
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n" + chunks + b"0\r\nX-Trailer: t\r\n\r\n"
    )

    async def main():
        server, port, _ = await serve([lambda _: chunked])
        response = await post(port, transport())
        server.close()
        return response

    response = asyncio.run(main())
    assert response.json() == [{"label": "a", "score": 1}]


def test_body_until_the_connection_closes():
    answer = b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n<html>busy</html>"

    async def main():
        server, port, connections = await serve([lambda _: answer, ok(b"again")])
        lean = transport()
        async with httpx.AsyncClient(transport=lean) as client:
            first = await client.post(f"http://127.0.0.1:{port}/m", content=b"x")
            second = await client.post(f"http://127.0.0.1:{port}/m", content=b"y")
        server.close()
        return first, second.text, len(connections)

    first, second, connections = asyncio.run(main())
    assert (first.status_code, first.text) == (503, "<html>busy</html>")
    assert (second, connections) == ("again", 2)  # not kept alive after "close"


def test_gzip_bodies_are_decoded():
    body = gzip.compress(b'[{"label": "z", "score": 0.5}]')

    async def main():
        server, port, _ = await serve([ok(body, b"Content-Encoding: gzip\r\n")])
        response = await post(port, transport())
        server.close()
        return response

    assert asyncio.run(main()).json() == [{"label": "z", "score": 0.5}]


def test_a_kept_alive_connection_the_server_closed_is_replaced():
    async def main():
        server, port, connections = await serve([ok(b"1"), None, ok(b"2")])
        lean = transport()
        async with httpx.AsyncClient(transport=lean) as client:
            first = await client.post(f"http://127.0.0.1:{port}/m", content=b"x")
            second = await client.post(f"http://127.0.0.1:{port}/m", content=b"y")
        server.close()
        return first.text, second.text, len(connections)

    assert asyncio.run(main()) == ("1", "2", 2)


def test_no_answer_in_time_is_a_timeout():
    async def main():
        async def hang(reader, writer):
            await asyncio.sleep(5)

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await post(port, transport(), timeout=0.3)
        finally:
            server.close()

    with pytest.raises(httpx.TimeoutException):
        asyncio.run(main())


def test_nothing_listening_is_a_connect_error():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await post(port, transport())

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())


def test_tls_with_the_server_name_checked(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def main(context):
        server, port, _ = await serve([ok(b'{"tls": true}')], tls=server_side)
        try:
            return await post(port, LeanTransport(ssl_context=context), scheme="https")
        finally:
            server.close()

    assert asyncio.run(main(trusting)).json() == {"tls": True}
    with pytest.raises(httpx.ConnectError):
        asyncio.run(main(ssl.create_default_context()))  # an unknown issuer is refused
