"""The fetcher: one shared ``httpx.AsyncClient`` per crawl, streaming bodies under a size cap.

Redirects are followed here, hop by hop, so that each hop can be checked (allowed domains,
robots.txt) before it is requested. Bodies are decompressed here too, with a bound on the
decoded size, so a gzip bomb fails one page instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from crawler import jsondata
from crawler.cookies import BoundedCookieJar, CookieJars, NoCookieJar, with_cookies
from crawler.errors import (
    AddressRefused,
    BadResponse,
    FetchError,
    ResponseTooLarge,
    SkipReason,
    TooManyRedirects,
    TransientError,
)
from crawler.guard import AddressGuard, url_endpoint
from crawler.request import Request
from crawler.response import Response
from crawler.settings import Settings, check_proxy_url
from crawler.transport import PROXY, AiohttpTransport, Exchange, HttpcoreTransport
from crawler.urls import host_of, join_url

log = logging.getLogger("crawler.fetcher")

HopCheck = Callable[[str], Awaitable[SkipReason | None]]
BeforeSend = Callable[[str], Awaitable[None]]
AfterSend = Callable[[str], None]
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


async def _allow_every_hop(url: str) -> SkipReason | None:
    return None


async def _send_at_once(url: str) -> None:
    return None


def _nothing_after(url: str) -> None:
    return None


class _BoundedDecoder:
    """Content-Encoding decoding that stops as soon as the output passes ``limit`` bytes: it
    raises ResponseTooLarge, or with ``cut`` keeps the first ``limit`` bytes and is ``full``."""

    def __init__(self, encoding: str, limit: int, *, cut: bool = False) -> None:
        encoding = encoding.strip().lower()
        self.limit = limit
        self.cut = cut
        self.full = False
        self.size = 0
        self._zlib: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 32)
        else:
            raise BadResponse(f"unsupported content-encoding {encoding!r}")

    def feed(self, chunk: bytes) -> bytes:
        room = self.limit - self.size
        if self._zlib is None:
            out = chunk
        else:
            try:
                out = self._zlib.decompress(chunk, room + 1)
            except zlib.error as exc:
                raise BadResponse(f"cannot decode body: {exc}") from None
        self.size += len(out)
        if self.size > self.limit:
            if not self.cut:
                raise ResponseTooLarge(f"body larger than max_response_bytes={self.limit}")
            out = out[: len(out) - (self.size - self.limit)]
            self.size, self.full = self.limit, True
        return out


def _guard(settings: Settings) -> AddressGuard:
    proxy = url_endpoint(settings.proxy) if settings.proxy else None
    trusted = [proxy] if proxy else []  # the operator's own egress proxy
    return AddressGuard(allow_private=settings.allow_private_addresses, trusted=trusted)


def _transport(settings: Settings, guard: AddressGuard) -> httpx.AsyncBaseTransport:
    """The transport under the client. Neither sends a request twice: each attempt the retry
    policy makes is one request on the wire, so ``max_retries`` bounds what a server sees."""
    if settings.http_transport == "aiohttp":
        return AiohttpTransport(
            max_connections=settings.concurrency + 8,
            proxy=settings.proxy,
            guard=guard,
            verify=settings.tls_verify,
        )
    return HttpcoreTransport(
        max_connections=settings.concurrency,
        proxy=settings.proxy,
        guard=guard,
        verify=settings.tls_verify,
    )


def _origin(url: str) -> tuple[str, str]:
    return url.partition(":")[0].lower(), host_of(url)


def _without(headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in names}


# What one request carries through its redirect hops besides its headers: its cookie session,
# the cookies it sends besides the jar's, and its own proxy.
SESSION = "crawler.cookiejar"
OWN_COOKIES = "crawler.cookies"


def _session_key(request: Request) -> str | None:
    """``meta["cookiejar"]`` as a jar key: its JSON text, so that 1 and "1" stay apart."""
    key = request.meta.get("cookiejar")
    return None if key is None else jsondata.dumps(key).decode()


class _NoCookies(httpx.Cookies):
    """What the client sees as its cookies: none, and nothing is kept. httpx would otherwise
    build a urllib request and response for its own jar on every response (3% of a crawl's
    CPU); the fetcher's bounded jars do the work."""

    def __bool__(self) -> bool:
        return False

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


_NO_COOKIES = _NoCookies(NoCookieJar())


class _Client(httpx.AsyncClient):
    """httpx's client with its own cookie handling left out (see ``_NoCookies``)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("the fetcher's cookies are its cookie jars, not the client's")


def _merged(defaults: dict[str, str], headers: dict[str, str]) -> dict[str, str]:
    """A request's headers over the defaults, a default left out whatever the case of its name
    (as httpx merges a client's headers)."""
    if not headers:
        return defaults
    mine = {name.lower() for name in headers}
    return {**{k: v for k, v in defaults.items() if k.lower() not in mine}, **headers}


def _with_cookie_header(
    headers: dict[str, str], jar: BoundedCookieJar, url: str, own: dict[str, str]
) -> dict[str, str]:
    """The headers with the Cookie header due from the jar and the request's own cookies; a
    Cookie header the spider set goes as it is."""
    if any(name.lower() == "cookie" for name in headers):
        return headers
    header = with_cookies(jar.cookie_header(url), own)
    return {**headers, "Cookie": header} if header else headers


class _ClientExchange:
    """An httpx client's streamed response as an Exchange."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = response.headers

    def __repr__(self) -> str:
        return f"<_ClientExchange {self.status} {self._response.url}>"

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()

    async def aclose(self) -> None:
        await self._response.aclose()


class Fetcher:
    """Fetches requests through one client whose pool is sized from the settings.

    ``guard`` decides which addresses the client may connect to; ``guard.exempt_start(url)``
    lets it reach a start request's host even if that is private (the engine calls it).
    """

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.sensitive_headers = frozenset(name.lower() for name in settings.sensitive_headers)
        self.cookie_jars = (
            CookieJars(
                lambda: BoundedCookieJar(
                    max_cookies_per_domain=settings.max_cookies_per_domain,
                    max_cookie_header_bytes=settings.max_cookie_header_bytes,
                )
            )
            if settings.cookies_enabled
            else None
        )
        self.cookies = self.cookie_jars.default if self.cookie_jars is not None else None
        self.guard = _guard(settings)
        self._refused: set[str] = set()  # hosts whose refusal was logged
        self.default_headers = {
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate",
        }
        transport = transport if transport is not None else _transport(settings, self.guard)
        # aiohttp's transport is sent to directly: httpx's client around it cost a fifth of
        # a crawl's CPU. Any other (httpcore, a test's MockTransport) goes through the client.
        self._direct = transport if isinstance(transport, AiohttpTransport) else None
        self.client = _Client(
            transport=transport,
            timeout=httpx.Timeout(settings.request_timeout),
            follow_redirects=False,
            trust_env=False,
            headers=self.default_headers,
        )
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"<Fetcher sent={self.requests_sent} user_agent={self.settings.user_agent!r}>"

    async def close(self) -> None:
        await self.client.aclose()

    async def fetch(
        self,
        request: Request,
        hop_check: HopCheck = _allow_every_hop,
        before_send: BeforeSend = _send_at_once,
        *,
        after_send: AfterSend = _nothing_after,
        keep_bytes: int | None = None,
        validators: Mapping[str, str] | None = None,
    ) -> Response | SkipReason:
        """The response to ``request`` (any status), or why a redirect hop was not followed.

        ``hop_check(url)`` vets each redirect target; ``before_send(url)`` is awaited before every
        request goes on the wire (the scheduler's politeness turn), ``after_send(url)`` called
        once its response is in or it failed (the host's delay counts from then too). With
        ``keep_bytes`` the body is cut there and the rest is not read, rather than the page
        failing past ``max_response_bytes``. Raises TransientError for failures worth retrying,
        FetchError for the others. ``validators`` (a revisit's If-None-Match,
        If-Modified-Since) go with the request's own headers, which win.
        """
        url, method, body = request.url, request.method, request.body
        sent_headers = {**validators, **request.headers} if validators else request.headers
        extensions = {SESSION: _session_key(request), OWN_COOKIES: request.cookies}
        if (proxy := self._own_proxy(request)) is not None:
            extensions[PROXY] = proxy
        for hop in range(self.settings.max_redirects + 1):
            await before_send(url)
            started = time.monotonic()  # the last hop's time on the wire, not its politeness wait
            try:
                status, headers, content = await self._send(
                    method, url, sent_headers, body, keep_bytes, extensions=extensions
                )
            except AddressRefused:
                raise  # nothing went on the wire: the host has nothing to rest from
            except BaseException:
                after_send(url)
                raise
            after_send(url)
            location = headers.get("location")
            if not (self.settings.follow_redirects and status in REDIRECT_STATUSES and location):
                elapsed = time.monotonic() - started
                return Response(url, status, headers, content, request=request, elapsed=elapsed)
            if hop == self.settings.max_redirects:
                break
            url, previous = join_url(url, location), url
            if (skip := await hop_check(url)) is not None:
                return skip
            if _origin(url) != _origin(previous):
                # Credentials stay with their origin: a redirect to another scheme, host or port
                # (an https-to-http downgrade included) loses them for the rest of the chain.
                sent_headers = _without(sent_headers, self.sensitive_headers)
                extensions = {**extensions, OWN_COOKIES: {}}  # and so do its own cookies
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", b""
        raise TooManyRedirects(f"more than max_redirects={self.settings.max_redirects} redirects")

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        keep: int | None,
        *,
        extensions: dict[str, Any],
    ) -> tuple[int, httpx.Headers, bytes]:
        self.requests_sent += 1
        jar = None if self.cookie_jars is None else self.cookie_jars.get(extensions[SESSION])
        if jar is not None:
            try:
                headers = _with_cookie_header(headers, jar, url, extensions[OWN_COOKIES])
            except ValueError as exc:  # urllib's parse of a malformed URL (an IPv6 literal...)
                raise FetchError(f"invalid URL {url!r}: {exc}") from None
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                exchange = await self._exchange(method, url, headers, body, extensions)
                try:
                    if jar is not None:
                        jar.store(url, exchange.headers.get_list("set-cookie"))
                    content = await self._read(exchange, keep)
                finally:
                    await exchange.aclose()
        except TimeoutError:
            raise TransientError(f"timed out after {self.settings.request_timeout}s") from None
        except AddressRefused as refused:
            self.requests_sent -= 1  # nothing went on the wire
            self._log_refusal(refused)
            raise
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.UnsupportedProtocol):
                raise FetchError(f"unsupported URL: {url}") from None
            raise TransientError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid URL {url!r}: {exc}") from None
        return exchange.status, exchange.headers, content

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        extensions: dict[str, Any],
    ) -> Exchange:
        if self._direct is not None:
            return await self._direct.exchange(
                method, url, _merged(self.default_headers, headers).items(), body,
                proxy=extensions.get(PROXY),
            )  # fmt: skip
        request = self.client.build_request(
            method, url, headers=headers, content=body, extensions=extensions
        )
        return _ClientExchange(await self.client.send(request, stream=True))

    def _own_proxy(self, request: Request) -> str | None:
        """The request's ``meta["proxy"]``, checked, and trusted by the guard as the configured
        proxy is; the messages never quote it (it may hold a password)."""
        proxy = request.meta.get("proxy")
        if proxy is None:
            return None
        if self.settings.http_transport != "aiohttp":
            raise FetchError('meta["proxy"] needs http_transport = "aiohttp"')
        try:
            check_proxy_url(proxy if isinstance(proxy, str) else "")
        except ValueError as exc:
            raise FetchError(f'meta["proxy"]: {exc}') from None
        self.guard.trust_proxy(proxy)
        return str(proxy)

    def _log_refusal(self, refused: AddressRefused) -> None:
        if refused.endpoint in self._refused or len(self._refused) >= 10_000:
            return
        self._refused.add(refused.endpoint)
        log.warning("%s (logged once per host; allow_private_addresses allows it)", refused)

    async def _read(self, response: Exchange, keep: int | None) -> bytes:
        limit = self.settings.max_response_bytes
        encoding = response.headers.get("content-encoding", "")
        length = response.headers.get("content-length", "")
        if keep is not None:
            limit = keep
        elif not encoding and length.isascii() and length.isdigit() and int(length) > limit:
            raise ResponseTooLarge(f"Content-Length {length} > max_response_bytes={limit}")
        decoder = _BoundedDecoder(encoding, limit, cut=keep is not None)
        chunks = []
        async for chunk in response.chunks():
            chunks.append(decoder.feed(chunk))
            if decoder.full:
                break  # the rest is never read: closing the response drops the connection
        return b"".join(chunks)
