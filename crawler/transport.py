"""The connection layer under the fetcher's ``httpx.AsyncClient``: an httpx transport that sends
requests through aiohttp's connection pool and C HTTP parser.

httpx keeps its API (the client, requests, responses, headers, errors); only the sockets and the
HTTP/1.1 parsing are aiohttp's. Stock httpcore scans every pooled connection on each request,
which makes it the largest cost of a busy crawl; aiohttp's pool does not. One request handed to
this transport is one request on the wire: retrying is the fetcher's decision, never aiohttp's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class _Unanswered(aiohttp.ClientConnectionError):
    """The connection closed before a response began; raised instead of letting aiohttp resend."""


async def _send_once(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A client middleware that stops aiohttp's hidden second try of an idempotent request.

    ``ClientSession`` sends a GET again, once, when its connection drops before the response
    (RFC 9112 allows it), so a server that hangs up would see each attempt twice and
    ``max_retries`` would not bound what it sees. That resend happens around the middleware
    chain and only for ``ClientOSError`` and ``ServerDisconnectedError``: any other error
    raised here propagates as it is.
    """
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise  # could not connect: nothing was sent, and aiohttp does not resend these
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise _Unanswered(str(exc) or type(exc).__name__) from exc


# Most specific first: the first class that matches names the httpx error.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a response we cannot parse
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (_Unanswered, httpx.ReadError),
    (aiohttp.ServerDisconnectedError, httpx.ReadError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (TimeoutError, httpx.TimeoutException),
    (aiohttp.ClientError, httpx.NetworkError),
)


def _translate(exc: Exception, request: httpx.Request | None = None) -> httpx.TransportError:
    """The httpx exception the fetcher expects for an aiohttp failure."""
    kind = next(kind for cause, kind in _ERRORS if isinstance(exc, cause))
    return kind(str(exc) or type(exc).__name__, request=request)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it: raw bytes, still content-encoded."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(max_connections=64))``.

    ``proxy="http://user:password@proxy:3128"`` sends every request through an HTTP proxy (a
    CONNECT tunnel for https). The session is made on first use, inside the running event loop.
    """

    def __init__(
        self, *, max_connections: int, keepalive_expiry: float = 30.0, proxy: str | None = None
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "idle"
        via = f" via {self.proxy.rpartition('@')[2]}" if self.proxy else ""  # no credentials
        return f"<AiohttpTransport {state} max_connections={self.max_connections}{via}>"

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            keepalive_timeout=self.keepalive_expiry,
            enable_cleanup_closed=False,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # the fetcher decodes, under its size cap
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            timeout=aiohttp.ClientTimeout(total=None),  # the fetcher times whole requests
            middlewares=(_send_once,),
            proxy=self.proxy,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.content or None,
                allow_redirects=False,
                compress=None,
            )
        except aiohttp.InvalidURL as exc:
            raise httpx.InvalidURL(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
