"""aiohttp under httpx, for sessions with many requests in flight (batches).

httpx's own pool (httpcore) spends milliseconds of CPU a request with dozens in flight;
`httpx-aiohttp`'s `AiohttpTransport` (what OpenAI's SDK uses for the same reason) spends
a fraction of that. Everything above the transport (the client, retries, the deadline,
error mapping) stays httpx.

Its exception mapping is corrected here: it maps every `aiohttp.ClientConnectionError` to
`httpx.ConnectTimeout`, so a refused connection or a server that hangs up would read as a
timeout. The cause decides instead. This module (and so aiohttp) is imported only when a
batch session opens.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient


class AiohttpClient(HttpxAiohttpClient):
    """An httpx client over aiohttp whose `send` hands the request straight to a transport.

    A batch uses none of what `AsyncClient.send` adds around the transport (auth flows,
    redirects, event hooks, and a cookie jar that builds a `urllib` request per answer),
    and that costs about a third of the CPU of a request (profiled with py-spy). Proxies
    from the environment apply: httpx mounts a `Transport` with the proxy for their URLs.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int, **kwargs: Any) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        super().__init__(verify=ssl_context, limits=limits, **kwargs)

    def _init_transport(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> httpx.AsyncBaseTransport:
        return transport or Transport(**options)

    def _init_proxy_transport(self, proxy: httpx.Proxy, **options: Any) -> httpx.AsyncBaseTransport:
        return Transport(proxy=proxy, **options)

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **_: Any
    ) -> httpx.Response:
        response = await self._transport_for_url(request.url).handle_async_request(request)
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


class Transport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise remap(exc, request) from exc
        response.stream = _Stream(response.stream, request)  # type: ignore[arg-type]
        return response


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self.inner, self.request = inner, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise remap(exc, self.request) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


def remap(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx exception that the aiohttp cause really is."""
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if isinstance(cause, TimeoutError | aiohttp.ServerTimeoutError):
        return exc if isinstance(exc, httpx.TimeoutException) else httpx.ReadTimeout(str(exc))
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(cause), request=request)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError("the server closed the connection", request=request)
    if isinstance(cause, aiohttp.ClientError):
        name = type(cause).__name__
        return httpx.ReadError(f"{name}: {cause}" if str(cause) else name, request=request)
    return exc
