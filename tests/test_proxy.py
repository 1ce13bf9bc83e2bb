"""The egress proxy: every request of a crawl goes through it, on both transports, with its
credentials; they never show in logs, errors or reprs; the guard still refuses IP-literal
targets the proxy would reach for us."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from crawler import Request, Response, Spider
from crawler.errors import SettingsError
from crawler.fetcher import Fetcher
from crawler.settings import Settings, load_settings
from tests.crawling import crawl
from tests.site import TestSite

TRANSPORTS = ("aiohttp", "httpcore")
SECRET = "s3cr3t-Pa55"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te"}


class _Forward(BaseHTTPRequestHandler):
    """Relays an absolute-form GET to its target and answers with the target's response."""

    protocol_version = "HTTP/1.1"
    server: RecordingProxy

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("GET", path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RecordingProxy(ThreadingHTTPServer):
    """A forward HTTP proxy on 127.0.0.1 that remembers each request's target and
    Proxy-Authorization header."""

    daemon_threads = False
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.seen: list[tuple[str, str | None]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    server = RecordingProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def two_host_spider(site: TestSite) -> type[Spider]:
    """Starts on host 0 at a page that links to host 0 and to host 1."""
    hrefs = json.dumps(["/leaf/1", site.url("/leaf/2", 1)])

    class TwoHosts(Spider):
        name = "two-hosts"
        start_urls = (site.url("/links?h=" + quote(hrefs)),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    return TwoHosts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_request_goes_through_the_proxy_with_its_credentials(
    site: TestSite, proxy: RecordingProxy, tmp_path: Path, transport: str
) -> None:
    result = await crawl(
        two_host_spider(site),
        tmp_path,
        http_transport=transport,
        proxy=f"http://crawler:{SECRET}@127.0.0.1:{proxy.port}",
        allow_private_addresses=False,
    )

    expected = "Basic " + base64.b64encode(f"crawler:{SECRET}".encode()).decode()
    assert {auth for _, auth in proxy.seen} == {expected}
    origin = site.base(0)
    assert sorted(target.partition("?")[0] for target, _ in proxy.seen) == [
        f"{origin}/leaf/1",
        f"{origin}/links",
        f"{origin}/robots.txt",
    ]
    assert site.hits_total(0) == 3  # what the proxy relayed
    assert site.hits_total(1) == 0  # 127.0.0.2: refused, though the proxy would have gone
    assert result.stats.failure_reasons == {"AddressRefused": 1}
    assert len(result.items) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_proxy_named_by_a_private_name_is_reached(
    site: TestSite, proxy: RecordingProxy, tmp_path: Path, transport: str
) -> None:
    """The proxy's own host and port are exempt, also when its name resolves to loopback."""
    result = await crawl(
        two_host_spider(site),
        tmp_path,
        http_transport=transport,
        proxy=f"http://localhost:{proxy.port}",
        obey_robots=False,
        allow_private_addresses=True,
    )

    assert len(proxy.seen) == 3
    assert site.hits("/leaf/2", 1) == 1
    assert result.stats.failures == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_proxy_credentials_never_show_in_logs_errors_or_reprs(
    site: TestSite, tmp_path: Path, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://crawler:{SECRET}@127.0.0.1:{_closed_port()}"
    with caplog.at_level(logging.DEBUG):
        result = await crawl(
            two_host_spider(site),
            tmp_path,
            http_transport=transport,
            proxy=url,
            max_retries=0,
            obey_robots=False,
        )
    settings = Settings(proxy=url, http_transport=transport)
    fetcher = Fetcher(settings)
    await fetcher.close()

    assert result.stats.failures == 1  # the proxy is down: the start page failed
    assert caplog.records
    assert SECRET not in caplog.text
    assert all(
        SECRET not in repr(thing) for thing in (settings, fetcher, fetcher.client._transport)
    )
    assert settings.proxy == url


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"socks5://crawler:{SECRET}@127.0.0.1:1080", "a proxy is an http://host:port URL"),
        (f"http://crawler:{SECRET}@127.0.0.1:99999", "port is not a number from 1 to 65535"),
        (f"http://crawler:{SECRET}@127.0.0.1:0", "port is not a number from 1 to 65535"),
        (f"http://crawler:{SECRET}@127.0.0.1:x", "port is not a number from 1 to 65535"),
        (f"http://crawler:{SECRET}@127.0.0.1:3128/path", "no path, query or fragment"),
        (f"http://crawler:{SECRET}@:3128", "a proxy is an http://host:port URL"),
    ],
)
def test_a_bad_proxy_is_a_settings_error_that_does_not_quote_it(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings(overrides={"proxy": value})
    assert SECRET not in str(caught.value)


def test_the_proxy_comes_from_crawler_proxy_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_PROXY", "http://egress.internal:3128")
    assert load_settings().proxy == "http://egress.internal:3128"


def _proxied(site: TestSite, proxies: dict[str, str | None]) -> type[Spider]:
    """Requests /leaf/<name> for each name, with that name's ``meta["proxy"]`` (None: none)."""

    class Proxied(Spider):
        name = "proxied"

        async def start_requests(self) -> AsyncIterator[Request]:
            for name, proxy in proxies.items():
                meta = {} if proxy is None else {"proxy": proxy}
                yield Request(site.url(f"/leaf/{name}"), meta=meta)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Proxied


async def test_a_request_s_own_proxy_carries_it_alone(
    site: TestSite, proxy: RecordingProxy, tmp_path: Path
) -> None:
    """meta["proxy"], as in Scrapy: that request goes through it, with its credentials, and
    the guard lets the crawl reach it as it does the configured proxy (here a name that
    resolves to loopback, with private addresses refused)."""
    own = f"http://crawler:{SECRET}@localhost:{proxy.port}"
    spider = _proxied(site, {"1": own, "2": None})
    result = await crawl(spider, tmp_path, obey_robots=False, allow_private_addresses=False)

    expected = "Basic " + base64.b64encode(f"crawler:{SECRET}".encode()).decode()
    assert proxy.seen == [(site.url("/leaf/1"), expected)]
    assert site.hits("/leaf/1") == site.hits("/leaf/2") == 1
    assert result.stats.failures == 0
    assert len(result.items) == 2


async def test_a_request_s_own_proxy_wins_over_the_configured_one(
    site: TestSite, proxy: RecordingProxy, tmp_path: Path
) -> None:
    spider = _proxied(site, {"1": f"http://127.0.0.1:{proxy.port}", "2": None})
    result = await crawl(
        spider,
        tmp_path,
        obey_robots=False,
        proxy=f"http://127.0.0.1:{_closed_port()}",
        max_retries=0,
    )
    assert [target for target, _ in proxy.seen] == [site.url("/leaf/1")]
    assert result.stats.failures == 1  # /leaf/2 went to the configured proxy, which is down


async def test_a_bad_or_unsupported_own_proxy_fails_its_request_only(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spider = _proxied(site, {"1": f"socks5://crawler:{SECRET}@127.0.0.1:1080", "2": None})
    result = await crawl(spider, tmp_path, obey_robots=False)
    assert result.stats.failure_reasons == {"FetchError": 1}
    assert len(result.items) == 1
    spider = _proxied(site, {"3": "http://127.0.0.1:3128"})
    (tmp_path / "httpcore").mkdir()
    result = await crawl(
        spider, tmp_path / "httpcore", obey_robots=False, http_transport="httpcore"
    )
    assert result.stats.failure_reasons == {"FetchError": 1}
    assert 'meta["proxy"] needs http_transport = "aiohttp"' in caplog.text
    assert "a proxy is an http://host:port URL" in caplog.text
    assert SECRET not in caplog.text
