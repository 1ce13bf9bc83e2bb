"""The connection layer under the fetcher, on both transports: one attempt is one request on the
wire, raw bodies, headers as given, and failures as httpx exceptions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from crawler import Response, Spider
from crawler.errors import FetchError, TransientError
from crawler.fetcher import Fetcher
from crawler.request import Request
from crawler.settings import Settings
from crawler.transport import AiohttpTransport
from tests.crawling import crawl
from tests.site import TestSite

TRANSPORTS = ("aiohttp", "httpcore")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def fetcher(transport: str) -> AsyncIterator[Fetcher]:
    fetcher = Fetcher(
        Settings(http_transport=transport, request_timeout=5.0, allow_private_addresses=True)
    )
    try:
        yield fetcher
    finally:
        await fetcher.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """Our transport alone under a bare client, to see what it hands httpx."""
    async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=4)) as bare:
        yield bare


async def test_a_hung_up_request_on_a_reused_connection_is_sent_once(
    site: TestSite, fetcher: Fetcher
) -> None:
    await fetcher.fetch(Request(site.url("/leaf/1")))
    with pytest.raises(TransientError):
        await fetcher.fetch(Request(site.url("/hang-up/a")))

    assert site.hits("/hang-up/a") == 1
    assert site.connections(0) == 1  # it went out on the kept-alive connection of /leaf/1
    assert fetcher.requests_sent == 2
    response = await fetcher.fetch(Request(site.url("/leaf/2")))
    assert isinstance(response, Response)
    assert response.status == 200


async def test_max_retries_bounds_the_requests_the_server_sees(
    site: TestSite, tmp_path: Path, transport: str
) -> None:
    class HungUp(Spider):
        name = "hung-up"
        start_urls = (site.url("/leaf/0"), site.url("/hang-up/b"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(
        HungUp,
        tmp_path,
        http_transport=transport,
        obey_robots=False,
        max_retries=2,
        retry_backoff=0.01,
        per_host_concurrency=1,
    )

    assert site.hits("/hang-up/b") == 3  # max_retries + 1
    assert result.stats.retries == 2
    assert result.stats.failures == 1
    assert result.stats.requests_total == site.hits_total() == 4


async def test_a_server_closing_every_connection_still_serves_each_page_once(
    site: TestSite, tmp_path: Path, transport: str
) -> None:
    pages = 30

    class Closing(Spider):
        name = "closing"
        start_urls = (site.url(f"/closing/0?n={pages}"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            node = response.css_first("p.v")
            yield {"v": int(node.text()) if node else -1}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(
        Closing, tmp_path, http_transport=transport, obey_robots=False, retry_backoff=0.01
    )

    assert sorted(item["v"] for item in result.items) == list(range(pages))
    assert [site.hits(f"/closing/{i}?n={pages}") for i in range(1, pages)] == [1] * (pages - 1)
    assert site.connections(0) == pages  # the server did close each one after its response
    assert result.stats.failures == 0
    # A request can still go out on a connection the server is closing at that moment; the
    # server never reads it, and sending it again is a retry the stats count, not a hidden one.
    assert result.stats.requests_total == pages + result.stats.retries


async def test_a_timeout_is_a_transient_failure(site: TestSite, transport: str) -> None:
    fetcher = Fetcher(
        Settings(http_transport=transport, request_timeout=0.2, allow_private_addresses=True)
    )
    try:
        with pytest.raises(TransientError, match="timed out"):
            await fetcher.fetch(Request(site.url("/slow?delay=5")))
    finally:
        await fetcher.close()


async def test_headers_go_out_as_given_and_nothing_is_added(
    site: TestSite, fetcher: Fetcher
) -> None:
    headers = {"X-First": "1", "x-lower": "2", "X-MiXeD-Case": "3"}
    response = await fetcher.fetch(Request(site.url("/echo"), headers=headers))

    assert isinstance(response, Response)
    seen = json.loads(response.body)["raw_headers"]
    names = [name for name, _ in seen]
    assert names[-3:] == ["X-First", "x-lower", "X-MiXeD-Case"]
    defaults = {"host", "accept", "accept-encoding", "connection", "user-agent"}
    assert {name.lower() for name in names[:-3]} <= defaults
    assert dict(seen)["User-Agent"] == fetcher.settings.user_agent
    assert len(names) == len({name.lower() for name in names})  # nothing said twice


async def test_bodies_stay_content_encoded_for_the_fetchers_decoder(
    site: TestSite, client: httpx.AsyncClient
) -> None:
    request = client.build_request("GET", site.url("/gzip-bomb?size=100000"))
    response = await client.send(request, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()

    assert response.headers["content-encoding"] == "gzip"
    assert body[:2] == b"\x1f\x8b"
    assert len(body) < 100_000


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RawServer:
    """A loopback server that answers each connection's first request with fixed bytes, then
    closes it; it keeps the request heads it read."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.heads: list[str] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            self.heads.append((await reader.readuntil(b"\r\n\r\n")).decode("latin-1"))
            writer.write(self.answer)
            await writer.drain()
        writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], Awaitable[RawServer]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(answer: bytes) -> RawServer:
            raw = RawServer(answer)
            server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
            await stack.enter_async_context(server)
            raw.port = server.sockets[0].getsockname()[1]
            return raw

        yield start


async def test_failures_map_to_httpx_exceptions(
    site: TestSite, client: httpx.AsyncClient, raw_server: Callable[[bytes], Awaitable[RawServer]]
) -> None:
    garbled = await raw_server(b"HTTP/1.1 abc\r\n\r\n")
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{_closed_port()}/")
    with pytest.raises(httpx.ReadError):
        await client.get(site.url("/hang-up/c"))
    assert site.hits("/hang-up/c") == 1
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(f"http://127.0.0.1:{garbled.port}/")
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.get("ftp://127.0.0.1/")


async def test_a_garbled_response_is_transient_and_a_non_http_url_is_not(
    fetcher: Fetcher, raw_server: Callable[[bytes], Awaitable[RawServer]]
) -> None:
    garbled = await raw_server(b"HTTP/1.1 abc\r\n\r\n")
    with pytest.raises(TransientError, match="RemoteProtocolError"):
        await fetcher.fetch(Request(f"http://127.0.0.1:{garbled.port}/"))
    with pytest.raises(FetchError, match="unsupported URL") as failed:
        await fetcher.fetch(Request("ftp://127.0.0.1/"))
    assert not isinstance(failed.value, TransientError)


async def test_a_proxy_with_credentials_gets_every_request(
    raw_server: Callable[[bytes], Awaitable[RawServer]],
) -> None:
    proxy = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy")
    transport = AiohttpTransport(
        max_connections=2, proxy=f"http://me:s3cret@127.0.0.1:{proxy.port}"
    )
    assert "s3cret" not in repr(transport)
    target = "http://127.0.0.9:1/page"  # never connected to: the proxy answers for it
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(target, headers={"X-Kept": "yes"})

    assert response.text == "via proxy"
    [head] = proxy.heads
    lines = head.split("\r\n")
    assert lines[0] == f"GET {target} HTTP/1.1"
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'me:s3cret').decode()}" in lines
    assert "X-Kept: yes" in lines


@pytest.fixture
async def untrusted_tls_port() -> AsyncIterator[int]:
    """A TLS server on loopback whose certificate no default trust store accepts."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0, ssl=server_context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_tls_certificates_are_verified(untrusted_tls_port: int, fetcher: Fetcher) -> None:
    with pytest.raises(TransientError, match="ConnectError"):
        await fetcher.fetch(Request(f"https://127.0.0.1:{untrusted_tls_port}/"))


@pytest.fixture
async def untrusted_tls_site() -> AsyncIterator[int]:
    """A TLS server on loopback with a certificate no trust store accepts, answering "ok"."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_tls_verify_off_accepts_any_certificate(
    untrusted_tls_site: int, transport: str
) -> None:
    url = f"https://127.0.0.1:{untrusted_tls_site}/"
    settings = {
        "http_transport": transport,
        "request_timeout": 5.0,
        "allow_private_addresses": True,
    }
    unverified = Fetcher(Settings(**settings, tls_verify=False))
    verified = Fetcher(Settings(**settings))
    try:
        response = await unverified.fetch(Request(url))
        assert isinstance(response, Response)
        assert (response.status, response.body) == (200, b"ok")
        with pytest.raises(TransientError, match="ConnectError"):
            await verified.fetch(Request(url))
    finally:
        await unverified.close()
        await verified.close()
