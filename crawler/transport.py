"""The connection layer under the fetcher's ``httpx.AsyncClient``: an httpx transport that sends
requests through aiohttp's connection pool and C HTTP parser, and stock httpx (httpcore) beside
it; both connect only where the address guard (``crawler.guard``) allows.

httpx keeps its API (the client, requests, responses, headers, errors); only the sockets and the
HTTP/1.1 parsing are aiohttp's. Stock httpcore scans every pooled connection on each request,
which makes it the largest cost of a busy crawl; aiohttp's pool does not. One request handed to
this transport is one request on the wire: retrying is the fetcher's decision, never aiohttp's.

The guard sees every address after resolution, on every connection: aiohttp resolves through
``_GuardedResolver`` and connects to exactly the addresses it returns (its DNS cache holds only
those); httpcore connects through ``GuardedNetworkBackend``, which resolves and connects to a
vetted address itself. IP-literal hosts, which aiohttp never resolves, and every host sent through a
proxy, which resolves names itself, are checked before the request leaves.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from crawler.guard import DEFAULT_PORTS, AddressGuard, IPAddress, ip_literal

# A host name and port to the addresses they resolve to, in the order to try them.
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


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


class Exchange(Protocol):
    """A response as the fetcher reads it: its status and headers, then its body as it came on
    the wire (still content-encoded) from ``chunks()``; ``aclose()`` gives the connection back."""

    status: int
    headers: httpx.Headers

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpExchange:
    """An aiohttp response as an Exchange; its errors reach the reader as httpx's."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = httpx.Headers(response.raw_headers)

    def __repr__(self) -> str:
        return f"<AiohttpExchange {self.status} {self._response.url}>"

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it: raw bytes, still content-encoded."""

    def __init__(self, exchange: AiohttpExchange) -> None:
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.chunks():
            yield chunk

    async def aclose(self) -> None:
        await self._exchange.aclose()


PROXY = "crawler.proxy"
"""An httpx request extension: the proxy URL for that one request (Scrapy's ``meta["proxy"]``)."""


def proxy_host(proxy: str | None) -> str:
    """A proxy URL as logs and reprs may show it: ``host:port``, never its credentials."""
    return proxy.partition("://")[2].rpartition("@")[2].rstrip("/") if proxy else ""


def _vetted(guard: AddressGuard, host: str, port: int, answers: Iterable[str]) -> list[IPAddress]:
    """The resolved addresses the guard allows; an answer that is no IP address is dropped."""
    found = [address for answer in answers if (address := ip_literal(answer)) is not None]
    return guard.vet(host, port, list(dict.fromkeys(found)))


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the guard allows for that host and port;
    raises AddressRefused (no OSError, so aiohttp passes it on as it is) when none is left."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = set(_vetted(self._guard, host, port, (answer["host"] for answer in answers)))
        return [answer for answer in answers if ip_literal(answer["host"]) in allowed]

    async def close(self) -> None:
        await self._inner.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(max_connections=64, guard=guard))``.

    ``proxy="http://user:password@proxy:3128"`` sends every request through an HTTP proxy (a
    CONNECT tunnel for https); a request's ``extensions[PROXY]`` names its own. ``guard`` vets
    every address connected to; without one, any address is. ``verify=False`` accepts any TLS
    certificate. ``resolver`` replaces aiohttp's own (tests). The session is made on first use,
    inside the running event loop.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        proxy: str | None = None,
        guard: AddressGuard | None = None,
        resolver: AbstractResolver | None = None,
        verify: bool = True,
    ) -> None:
        self.verify = verify
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.proxy = proxy
        self.guard = guard
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "idle"
        via = f" via {proxy_host(self.proxy)}" if self.proxy else ""
        return f"<AiohttpTransport {state} max_connections={self.max_connections}{via}>"

    async def _check_target(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """A client middleware: the host as aiohttp reads it, checked where aiohttp will not
        resolve it (an IP literal) or will not resolve it here (through a proxy)."""
        if self.guard is not None:
            self.guard.check_target(request.url.raw_host or "", request.url.port or 0)
        return await handler(request)

    def _open(self) -> aiohttp.ClientSession:
        resolver = None
        if self.guard is not None:
            resolver = _GuardedResolver(self.guard, self._resolver)
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            keepalive_timeout=self.keepalive_expiry,
            enable_cleanup_closed=False,
            resolver=resolver or self._resolver,
            ssl=self.verify,  # aiohttp: False skips certificate checks
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # the fetcher decodes, under its size cap
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            timeout=aiohttp.ClientTimeout(total=None),  # the fetcher times whole requests
            middlewares=(self._check_target, _send_once),
            proxy=self.proxy,
        )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        proxy: str | None = None,
    ) -> AiohttpExchange:
        """Send one request, without httpx's client around it (the fetcher's own path): the
        response with its body unread. ``proxy``: this request's own, else the session's.
        Raises httpx's errors, as ``handle_async_request`` does."""
        if self._session is None:
            self._session = self._open()
        try:
            response = await self._session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                compress=None,
                proxy=proxy,  # None: the session's, if any
            )
        except aiohttp.InvalidURL as exc:
            raise httpx.InvalidURL(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc
        return AiohttpExchange(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            exchange = await self.exchange(
                request.method,
                str(request.url),
                headers,
                request.content,
                proxy=request.extensions.get(PROXY),
            )
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(
            status_code=exchange.status,
            headers=exchange.headers,
            stream=_Body(exchange),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
    )
    return [str(info[4][0]) for info in infos]


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's sockets, opened only to vetted addresses: the host is resolved here and the
    connection made to an allowed address. TLS still names the host: httpcore takes the SNI
    and certificate name from the request's origin, not from what was connected to.

    >>> pool = httpcore.AsyncConnectionPool(network_backend=GuardedNetworkBackend(AddressGuard()))
    """

    def __init__(self, guard: AddressGuard, resolve: Resolve = _getaddrinfo) -> None:
        self._guard = guard
        self._resolve = resolve
        self._sockets = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = _vetted(self._guard, host, port, await self._answers(host, port, timeout))
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return await self._sockets.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def _answers(self, host: str, port: int, limit_s: float | None) -> Sequence[str]:
        if ip_literal(host) is not None:
            return [host]
        try:
            async with asyncio.timeout(limit_s):
                return await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the crawler connects over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._sockets.sleep(seconds)


class HttpcoreTransport(httpx.AsyncHTTPTransport):
    """Stock httpx connections (httpcore), on a network backend that connects only where
    ``guard`` allows. ``proxy`` and ``verify`` as for AiohttpTransport; ``resolve`` replaces DNS
    (tests)."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        proxy: str | None = None,
        guard: AddressGuard,
        resolve: Resolve = _getaddrinfo,
        verify: bool = True,
    ) -> None:
        super().__init__(
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            trust_env=False,
            retries=0,  # httpcore's own connect retries: off, as is its default
            proxy=proxy,
        )
        self.guard = guard
        self.proxy = proxy
        # httpx takes no network backend; its pool (direct or proxy) keeps one here, and makes
        # every connection through it. Fail loudly rather than run unguarded if that moves.
        if not hasattr(self._pool, "_network_backend"):
            raise RuntimeError("cannot guard this httpcore version's connections")
        self._pool._network_backend = GuardedNetworkBackend(guard, resolve)

    def __repr__(self) -> str:
        via = f" via {proxy_host(self.proxy)}" if self.proxy else ""
        return f"<HttpcoreTransport{via}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self.guard.check_target(url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0))
        return await super().handle_async_request(request)
