"""Credentials stay with their origin: Authorization, Cookie and Proxy-Authorization (and any
header named in ``sensitive_headers``) are not sent on once a redirect leaves the request's
scheme, host and port, an https-to-http downgrade included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from crawler import Request, Response, Spider
from crawler.fetcher import Fetcher
from crawler.settings import Settings
from tests.crawling import crawl
from tests.site import TestSite

SECRETS = {"Authorization": "Bearer s3cret", "Cookie": "session=s3cret", "X-Trace": "keep"}


def _spider(site: TestSite, targets: dict[str, str]) -> type[Spider]:
    class Echoes(Spider):
        name = "echoes"

        async def start_requests(self) -> AsyncIterator[Request]:
            for label, target in targets.items():
                url = site.url("/redirect?to=" + quote(target))
                yield Request(url, headers=SECRETS, cb_kwargs={"label": label})

        async def parse(self, response: Response, label: str) -> AsyncIterator[Any]:
            yield {"label": label, "headers": json.loads(response.body)["headers"]}

    return Echoes


async def test_a_redirect_to_another_host_or_port_drops_credentials(
    site: TestSite, tmp_path: Path
) -> None:
    targets = {
        "same origin": site.url("/echo"),
        "other host": site.url("/echo", 1),
        "there and back": site.url("/redirect?to=" + quote(site.url("/echo")), 1),
    }
    result = await crawl(_spider(site, targets), tmp_path, obey_robots=False)
    seen = {item["label"]: {k.lower() for k in item["headers"]} for item in result.items}
    assert {"authorization", "cookie", "x-trace"} <= seen["same origin"]
    for label in ("other host", "there and back"):
        assert "authorization" not in seen[label]
        assert "cookie" not in seen[label]
        assert "x-trace" in seen[label]


async def test_the_list_of_sensitive_headers_is_a_setting(site: TestSite, tmp_path: Path) -> None:
    spider = _spider(site, {"other host": site.url("/echo", 1)})
    result = await crawl(spider, tmp_path, obey_robots=False, sensitive_headers=["X-Trace"])
    headers = {k.lower() for k in result.items[0]["headers"]}
    assert "x-trace" not in headers
    assert "authorization" in headers


async def test_an_https_to_http_downgrade_on_the_same_host_drops_credentials() -> None:
    """The lowest seam: a transport that plays an https site redirecting to its http twin."""
    seen: list[tuple[str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), dict(request.headers)))
        if request.url.scheme == "https":
            return httpx.Response(
                301, headers={"Location": "http://a.test/next"}, stream=httpx.ByteStream(b"")
            )
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))

    fetcher = Fetcher(Settings(), transport=httpx.MockTransport(handler))
    try:
        response = await fetcher.fetch(Request("https://a.test/start", headers=SECRETS))
    finally:
        await fetcher.close()
    assert isinstance(response, Response)
    assert [url for url, _ in seen] == ["https://a.test/start", "http://a.test/next"]
    assert "authorization" in seen[0][1]
    assert "authorization" not in seen[1][1]
    assert "cookie" not in seen[1][1]
