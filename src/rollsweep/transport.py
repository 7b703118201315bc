"""httpx's request and response types over aiohttp's connection pool: the collector's fast path.

Measured on the collector's loop (benchmarks/collector_vs_nemo_gym.py, one core, 64 in flight,
CPU per request): httpx's own pool (httpcore) 3.4 ms; ``httpx.AsyncClient`` over
``httpx_aiohttp.AiohttpTransport`` 0.65-0.76 ms; that transport called directly 0.46 ms; this
one called directly 0.37 ms; bare aiohttp 0.24-0.26 ms. The difference to httpx-aiohttp: the
body is read whole (no chunked async stream wrapped around it), one ``ClientTimeout`` per pool
instead of one per request, and aiohttp's errors keep their meaning (httpx-aiohttp 0.2 maps a
dropped connection to ``ConnectTimeout``, which would make it a timeout, not a connection error).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import httpx

#: Connections being opened at once. Thousands of rollouts starting together would otherwise
#: send thousands of SYNs at once: past the listener's backlog (net.core.somaxconn, often 4,096)
#: they are dropped and retried after 1, 3, 7 s, so connects time out and the window never
#: fills (measured: 16,384 at once against a 2 s agent, 87 % of rollouts failed on connect).
CONNECTS_IN_FLIGHT = 64

#: aiohttp's errors as httpx's, most specific first (the first isinstance match wins).
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


class _PacedConnector(aiohttp.TCPConnector):
    """aiohttp's connector, where requests take a connection in turns, CONNECTS_IN_FLIGHT at a
    time, first come first served.

    So at most that many connections are being opened at once, and a request whose turn comes
    after another's answer freed a connection reuses it rather than opening one more: when the
    collector, not the agent, is the bottleneck (a fast agent, a wide window), it keeps about as
    many connections as the agent really holds requests, instead of one per window slot
    (measured at 16,384 in flight against an agent answering at once: every rollout of a
    20,000-rollout run opened a connection, and that doubled the CPU per rollout). When the
    agent holds requests (a slow one), no connection is free and the window fills as before.
    The wait for a turn is not part of the connect timeout.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._turns = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        async with self._turns:  # asyncio's semaphore is FIFO: new requests queue behind
            return await super().connect(*args, **kwargs)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections are aiohttp's (one pool of ``max_connections``).

    Made inside the running event loop (aiohttp binds its session to it). Timeouts are the
    pool's: ``timeout.connect`` for a connection, ``timeout.read`` between bytes of an answer.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        timeout: httpx.Timeout,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        connector = _PacedConnector(
            limit=max_connections,
            limit_per_host=0,
            ssl=verify if isinstance(verify, ssl.SSLContext) else (None if verify else False),
            keepalive_timeout=60.0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=timeout.connect, sock_read=timeout.read
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx.Response decodes by content-encoding
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                data=request.content or None,
                headers=request.headers.multi_items(),
                allow_redirects=False,
            ) as reply:
                body = await reply.read()
        except aiohttp.ClientError as error:
            for source, target in _ERRORS:
                if isinstance(error, source):
                    raise target(f"{type(error).__name__}: {error}", request=request) from error
            raise  # pragma: no cover - ClientError is the last entry
        return httpx.Response(
            reply.status, headers=reply.raw_headers, content=body, request=request
        )

    async def aclose(self) -> None:
        await self._session.close()
