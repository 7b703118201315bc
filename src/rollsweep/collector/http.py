"""HTTP for the collector: a fast transport, POST with retries, the reachability check.

The transport is aiohttp's connection pool behind httpx's types: an httpx transport for an
``httpx.AsyncClient``, and, on the collector's fast path, its own ``post``, which builds no
``httpx.Request``/``httpx.Response`` (errors stay httpx's exceptions). Measured on the
collector's loop (benchmarks/collector_vs_nemo_gym.py, one core, 64 in flight, CPU per
request): httpx's own pool (httpcore) 3.4 ms; ``httpx.AsyncClient`` over
``httpx_aiohttp.AiohttpTransport`` 0.65-0.76 ms; that transport called directly 0.46 ms; this
one sent ``httpx.Request`` objects 0.37 ms; bare aiohttp 0.24-0.26 ms. Against a 2 s agent with
16,384 in flight, ``post`` took the collector's CPU per rollout from 0.46 to 0.34 ms: httpx's
header normalization in ``Request.__init__`` was ~15 % of it. The difference to httpx-aiohttp:
the body is read whole (no chunked async stream wrapped around it), one ``ClientTimeout`` per
pool instead of one per request, and aiohttp's errors keep their meaning (httpx-aiohttp 0.2
maps a dropped connection to ``ConnectTimeout``, which would make it a timeout, not a
connection error).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import math
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import orjson
import yarl

from rollsweep.errors import ServerUnavailable

#: Connections being opened at once. Thousands of rollouts starting together would otherwise
#: send thousands of SYNs at once: past the listener's backlog (net.core.somaxconn, often 4,096)
#: they are dropped and retried after 1, 3, 7 s, so connects time out and the window never
#: fills (measured: 16,384 at once against a 2 s agent, 87 % of rollouts failed on connect).
CONNECTS_IN_FLIGHT = 64
#: The longest ``Retry-After`` honoured; a server asking for more gets this much.
MAX_RETRY_AFTER_S = 60.0
JSON_HEADERS = (("content-type", "application/json"),)

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


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer on the fast path: what the retry logic reads of an ``httpx.Response``."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


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

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: Any,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> Any:
        """Open a plain connection to one address with the event loop's own connect.

        aiohttp opens every socket through aiohappyeyeballs (a Python-level connect, then the
        socket handed to the loop); for one address, no TLS and no local binding there is
        nothing to race, and uvloop's native connect costs less: against a 2 s agent, 16,384
        new connections from one core took 15 % less CPU and the agent saw 25 % more of them
        in flight (10,682 vs 8,515, bare aiohttp). Anything else goes the library's way.
        This overrides a private aiohttp method (stable since 3.10, which added happy
        eyeballs); tests/test_faults.py covers refused connects through it. A connect timeout
        is re-raised as the library's own path does (no loopback test can provoke one).
        """
        plain = (
            len(addr_infos) == 1
            and not kwargs.get("ssl")
            and not self._local_addr_infos
            and self._socket_factory is None
        )
        if not plain:
            return await super()._wrap_create_connection(
                *args,
                addr_infos=addr_infos,
                req=req,
                timeout=timeout,
                client_error=client_error,
                **kwargs,
            )
        family, _, _, _, address = addr_infos[0]
        try:
            async with asyncio.timeout(timeout.sock_connect):
                return await self._loop.create_connection(
                    *args, host=address[0], port=address[1], family=family, **kwargs
                )
        except TimeoutError:
            raise  # aiohttp makes it a ConnectionTimeoutError, as for its own connects
        except OSError as error:
            raise client_error(req.connection_key, error) from error


@functools.lru_cache(maxsize=256)
def _parsed_url(url: str) -> yarl.URL:
    """A URL parsed once, not once per request (a collector posts to one URL)."""
    return yarl.URL(url)


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
        reply, body = await self._send(
            request.method,
            str(request.url),
            request.content,
            request.headers.multi_items(),
            request,
        )
        return httpx.Response(
            reply.status, headers=reply.raw_headers, content=body, request=request
        )

    async def post(self, url: str, *, content: bytes, headers: Any = JSON_HEADERS) -> Reply:
        """POST a JSON body: the collector's fast path, with no ``httpx.Request`` or
        ``httpx.Response`` built (their headers' normalization was ~15 % of the collector's
        CPU while a 16,384-wide window filled); errors are httpx's as for any request."""
        reply, body = await self._send("POST", url, content, headers)
        if "content-encoding" in reply.headers:  # httpx decodes gzip, deflate, br, zstd
            body = httpx.Response(reply.status, headers=reply.raw_headers, content=body).content
        return Reply(reply.status, reply.headers, body)

    async def _send(
        self,
        method: str,
        url: str,
        content: bytes,
        headers: Any,
        request: httpx.Request | None = None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """One request through the pool; aiohttp's errors raised as httpx's, naming
        ``request`` (made from method and URL on the fast path, only when there is an error)."""
        try:
            async with self._session.request(
                method,
                _parsed_url(url),
                data=content or None,
                headers=headers,
                allow_redirects=False,
            ) as reply:
                body = await reply.read()
        except aiohttp.ClientError as error:
            for source, target_error in _ERRORS:
                if isinstance(error, source):
                    message = f"{type(error).__name__}: {error}"
                    failed = request or httpx.Request(method, url)
                    raise target_error(message, request=failed) from error
            raise  # pragma: no cover - ClientError is the last entry
        return reply, body

    async def aclose(self) -> None:
        await self._session.close()


# --------------------------------------------------------------------------- requests


class RolloutFailed(Exception):
    """A rollout that could not be completed; ``kind`` says why."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.attempts = attempts
        #: nothing accepted the connection (the server may be gone, not just busy)
        self.refused = False


async def post_with_retries(
    client: httpx.AsyncClient | AiohttpTransport,
    url: str,
    payload: dict[str, Any],
    max_attempts: int,
    tries: list[int] | None = None,
) -> tuple[dict[str, Any], int]:
    """POST with retries for infrastructure errors only; returns (json, attempts used).

    ``client`` is an httpx client or, on the collector's fast path, the aiohttp transport
    itself (its ``post``: the client's per-request machinery costs more than the transport
    under it). Retried: timeouts, transport errors (refused or dropped connections),
    5xx, and 429 (after its ``Retry-After`` when given, else exponential backoff with full
    jitter). Not retried: any other 4xx (bad input for the agent or its verifier). ``tries[0]``
    follows the attempts made, for a caller whose total timeout may interrupt this.
    """
    content = orjson.dumps(payload)
    for attempt in range(1, max_attempts + 1):
        if tries is not None:
            tries[0] = attempt
        delay: float | None = None
        try:
            reply = await client.post(url, content=content, headers=JSON_HEADERS)
        except httpx.HTTPError as error:
            failure = _transport_failure(error, url, attempt)
        else:
            if reply.status_code < 400:
                return _answer(reply, attempt), attempt
            failure = _status_failure(reply, attempt)
            delay = _retry_after_seconds(reply)
        if attempt == max_attempts:
            raise failure
        if delay is not None:
            delay += random.uniform(0, 0.1 * delay)  # honour it, but do not come back in step
        await asyncio.sleep(delay if delay is not None else backoff_delay(attempt))
    raise AssertionError("unreachable")


def _transport_failure(error: httpx.HTTPError, url: str | httpx.URL, attempt: int) -> RolloutFailed:
    """A request that got no answer, as a (retryable) failure."""
    if isinstance(error, httpx.TimeoutException):
        return RolloutFailed("timeout", f"{type(error).__name__} from {url}", attempt)
    if isinstance(error, httpx.TransportError):
        failure = RolloutFailed("connection", f"{type(error).__name__}: {error}", attempt)
        failure.refused = isinstance(error, httpx.ConnectError)
        return failure
    return RolloutFailed("http_error", f"{type(error).__name__}: {error}", attempt)


def _status_failure(reply: httpx.Response | Reply, attempt: int) -> RolloutFailed:
    """An error status as a retryable failure (429, 5xx); raised at once for any other 4xx."""
    status = reply.status_code
    failure = RolloutFailed(f"http_{status}", reply.text[:300].replace("\n", " "), attempt)
    if status == 429 or status >= 500:
        return failure
    raise failure


def _answer(reply: httpx.Response | Reply, attempt: int) -> Any:
    """A successful answer's JSON (orjson; the standard parser for what orjson refuses, e.g.
    NaN); not JSON is a failure, not retried."""
    try:
        return orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(reply.content)
    except ValueError:
        raise RolloutFailed("bad_response", "the answer is not JSON", attempt) from None


def _retry_after_seconds(reply: httpx.Response | Reply) -> float | None:
    """The wait a 429/503 asks for (``Retry-After``: seconds or an HTTP date), capped."""
    value = reply.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def backoff_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff with full jitter for the given (1-based) attempt."""
    return random.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))


async def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URL, when nothing listens there."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.host, port), timeout=timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise ServerUnavailable(f"cannot reach the agent at {url}: {error}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
