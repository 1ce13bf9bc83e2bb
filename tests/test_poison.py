"""No poison pills: whatever a page links to, a server redirects to or a connection does, it
fails one request at most; the crawl goes on, and a resumed run never meets it again."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from crawler import Request, Response, Spider
from crawler.engine import Engine
from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SqliteFrontier
from crawler.settings import Settings
from crawler.stats import Stats
from tests.crawling import crawl
from tests.site import TestSite

# The three known killers, and their kin.
KILLERS = [
    "http://user:secret@{host}/leaf/1",
    "http://[",
    "http://" + "a" * 64 + ".test/",
    "http://a..b.test/",
    "http://" + "a." * 130 + "test/",
    "http://{host}:99999/",
    "http://[::1",
    "https://%zz/",
    "//",
    "http://\u00ad/",
]


def _fuzz(seed: int, count: int) -> list[str]:
    """Malformed URLs, made the same way each run: pieces of URL syntax glued at random."""
    rng = random.Random(seed)
    pieces = ["http:", "https:", "//", "/", "[", "]", ":", "@", "%", "%2", "?", "#", "\\\\"]
    pieces += [
        "..",
        "a" * 70,
        "xn--",
        "\u00e9",
        "\u2028",
        "0x7f",
        "u:p@",
        ":0",
        ":65536",
        " ",
        "\t",
    ]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(count)]


def _spider(site: TestSite, hrefs: list[str], locations: list[str]) -> type[Spider]:
    host = site.host(0)
    hrefs = [h.format(host=host) for h in hrefs]
    locations = [loc.format(host=host) for loc in locations]

    class Poisoned(Spider):
        name = "poisoned"
        # Junk may spell real host names: keep every request on loopback (no DNS either).
        allowed_domains = ("127.0.0.1",)

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(site.url("/links?h=" + quote(json.dumps(hrefs))))
            for location in locations:
                yield Request(site.url("/redirect?to=" + quote(location)), self.parse_leaf)
            yield Request(site.url("/paged?page=1"), self.parse_leaf)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for node in response.css("a[href]"):
                yield Request(response.urljoin(node.attributes.get("href") or ""), self.parse_leaf)

        async def parse_leaf(self, response: Response) -> AsyncIterator[Any]:
            for node in response.css("span.name"):
                yield {"name": node.text()}

    return Poisoned


async def test_known_killers_in_links_and_redirects_fail_alone(
    site: TestSite, tmp_path: Path
) -> None:
    result = await crawl(
        _spider(site, KILLERS, KILLERS), tmp_path, obey_robots=False, retry_backoff=0.01
    )
    assert [item["name"] for item in result.items] == ["item-1-1", "item-1-2", "item-1-3"]
    assert site.hits("/leaf/1") == 0  # a link with userinfo is refused, not stripped
    assert result.stats.bad_urls >= len(KILLERS) - 2  # the others are not http(s) URLs at all
    assert result.stats.callback_errors == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_fuzzed_links_and_locations_never_stop_the_crawl(
    site: TestSite, tmp_path: Path, seed: int
) -> None:
    junk = _fuzz(seed, 60)
    # Location headers must be latin-1 for the test server to send them.
    locations = [
        j for j in junk if j.isprintable() and j.encode("latin-1", "ignore").decode("latin-1") == j
    ]
    result = await crawl(
        _spider(site, junk, locations), tmp_path, obey_robots=False, retry_backoff=0.01
    )
    assert len(result.items) == 3
    assert result.stats.callback_errors == 0


async def test_an_unexpected_error_fails_its_request_and_is_not_retried_on_resume(
    site: TestSite, tmp_path: Path
) -> None:
    """The lowest seam: a transport that raises what nothing expects, for one URL."""
    real = httpx.AsyncHTTPTransport()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/leaf/2":
            raise ValueError("a transport bug")
        return await real.handle_async_request(request)

    class Leaves(Spider):
        name = "leaves"
        start_urls = tuple(site.url(f"/leaf/{i}") for i in range(4))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"leaf": response.url}

    async def run_once() -> Stats:
        settings = Settings(obey_robots=False)
        frontier = SqliteFrontier(tmp_path / "state.db")
        await frontier.open("leaves")
        fetcher = Fetcher(settings, transport=httpx.MockTransport(handler))
        stats = Stats()
        try:
            engine = Engine(Leaves(), settings, frontier=frontier, fetcher=fetcher, stats=stats)
            await engine.run()
            counts = await frontier.counts()
        finally:
            await fetcher.close()
            await frontier.close()
        assert (counts.done, counts.failed) == (3, 1)
        return stats

    try:
        first = await run_once()
        again = await run_once()
    finally:
        await real.aclose()
    assert first.failure_reasons["ValueError"] == 1
    assert first.pages_crawled == 3
    assert again.pages_crawled == 0
    assert site.hits("/leaf/2") == 0
    # The second run is a recrawl of a finished crawl: the three pages done are revisited (and
    # found unchanged: no callback ran), the failed one is not retried.
    assert sum(site.hits(f"/leaf/{i}") for i in range(4)) == 6
    assert again.unchanged == 3
