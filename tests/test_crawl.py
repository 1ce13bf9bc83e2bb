"""End-to-end crawls of the loopback test site: dedup, bounds, retries, politeness, limits."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Request, Response, Spider
from tests.crawling import crawl
from tests.site import GRAPH_SIZE, TestSite


def graph_spider(site: TestSite, **attrs: Any) -> type[Spider]:
    class GraphSpider(Spider):
        name = "graph"
        start_urls = (site.url("/graph/0"),)
        allowed_domains = ("127.0.0.1",)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            node = response.css_first("h1.n")
            yield {"n": int(node.text()) if node else -1, "url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    for key, value in attrs.items():
        setattr(GraphSpider, key, value)
    return GraphSpider


async def test_graph_crawl_fetches_each_canonical_page_once(site: TestSite, tmp_path: Path) -> None:
    result = await crawl(graph_spider(site), tmp_path, obey_robots=False)

    numbers = sorted(item["n"] for item in result.items)
    assert numbers == sorted([*range(GRAPH_SIZE), 1])  # /graph/1?a=1&b=2 is a page of its own
    for n in range(GRAPH_SIZE):
        assert site.hits(f"/graph/{n}", 0) == 1
    query_variants = site.hits("/graph/1?a=1&b=2", 0) + site.hits("/graph/1?b=2&a=1", 0)
    assert query_variants == 1
    assert site.hits_total(1) == 0  # the cross-host link is off the allowed domain
    assert result.stats.offsite_filtered >= 1
    assert result.stats.duplicates_filtered > 0
    assert result.stats.pages_crawled == len(result.items)


async def test_max_depth_bounds_the_crawl(site: TestSite, tmp_path: Path) -> None:
    result = await crawl(graph_spider(site), tmp_path, obey_robots=False, max_depth=2)

    assert {item["n"] for item in result.items} == {0, 1, 2, 3, 4, 5, 6}
    assert result.stats.depth_filtered > 0
    assert site.hits("/graph/7", 0) == 0


async def test_max_pages_bounds_the_crawl(site: TestSite, tmp_path: Path) -> None:
    result = await crawl(graph_spider(site), tmp_path, obey_robots=False, max_pages=10)

    assert result.stats.responses_total == 10
    assert len(result.items) == 10
    assert site.hits_total(0) == 10


async def test_flaky_page_is_retried_until_it_succeeds(site: TestSite, tmp_path: Path) -> None:
    class Flaky(Spider):
        name = "flaky"
        start_urls = (site.url("/flaky/a?fail=2&status=503"), site.url("/flaky/b?fail=9"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"body": response.text}

    result = await crawl(Flaky, tmp_path, obey_robots=False, max_retries=3, retry_backoff=0.01)

    assert result.items == [{"body": "ok a"}]
    assert site.hits("/flaky/a?fail=2&status=503") == 3
    assert site.hits("/flaky/b?fail=9") == 4  # one try and three retries, then it fails
    assert result.stats.retries == 2 + 3
    assert result.stats.failures == 1


@pytest.mark.parametrize("as_date", [False, True])
async def test_retry_after_is_waited_out(site: TestSite, tmp_path: Path, as_date: bool) -> None:
    path = f"/retry-after/k?seconds=1&times=1&status=429{'&date=1' if as_date else ''}"

    class Limited(Spider):
        name = "limited"
        start_urls = (site.url(path),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"status": response.status}

    result = await crawl(Limited, tmp_path, obey_robots=False, retry_backoff=0.01)

    assert result.items == [{"status": 200}]
    first, second = [hit for hit in site.log if hit.path == path]
    # An HTTP date has one-second resolution, so it may name a moment up to 1 s sooner.
    assert second.started - first.ended >= (0.0 if as_date else 0.95)
    assert second.started - first.started >= 0.95 if not as_date else True
    assert result.stats.retries == 1


async def test_per_host_concurrency_is_never_exceeded(site: TestSite, tmp_path: Path) -> None:
    class Fan(Spider):
        name = "fan"
        start_urls = tuple(site.url("/slow-links?delay=0.05&n=24", i) for i in range(3))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(Fan, tmp_path, obey_robots=False, concurrency=32, per_host_concurrency=3)

    assert len(result.items) == 3 * 25
    for host in range(3):
        assert site.peak_concurrency(host) <= 3
    assert max(site.peak_concurrency(h) for h in range(3)) == 3  # and the limit is used


async def test_global_concurrency_is_never_exceeded(site: TestSite, tmp_path: Path) -> None:
    class Fan(Spider):
        name = "fan"
        start_urls = tuple(site.url("/slow-links?delay=0.05&n=12", i) for i in range(3))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for request in response.follow_all(css="a[href]"):
                yield request

    await crawl(Fan, tmp_path, obey_robots=False, concurrency=4, per_host_concurrency=4)

    events = sorted([(h.started, 1) for h in site.log] + [(h.ended, -1) for h in site.log])
    busy = peak = 0
    for _, change in events:
        busy += change
        peak = max(peak, busy)
    assert peak <= 4


async def test_slow_host_does_not_hold_up_the_others(site: TestSite, tmp_path: Path) -> None:
    class Mixed(Spider):
        name = "mixed"
        start_urls = (site.url("/slow-links?delay=0.5&n=6", 0), site.url("/fan/30", 1))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(Mixed, tmp_path, obey_robots=False, concurrency=8, per_host_concurrency=2)

    assert len(result.items) == 2 + 6 + 30
    slow = sorted(
        h.started for h in site.log if h.host == site.host(0) and h.path.startswith("/slow?")
    )
    fast_done = max(h.ended for h in site.log if h.host == site.host(1))
    # Six slow pages two at a time take three rounds; the fast host is done within the first.
    assert fast_done < slow[2]


async def test_robots_rules_and_crawl_delay_are_obeyed(site: TestSite, tmp_path: Path) -> None:
    site.robots = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.3\n"

    class Polite(Spider):
        name = "polite"
        start_urls = (site.url("/private/secret"), site.url("/paged?page=1"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for node in response.css("span.name"):
                yield {"name": node.text()}
            for request in response.follow_all(css="a.next"):
                yield request

    result = await crawl(Polite, tmp_path, per_host_concurrency=4)

    assert len(result.items) == 15
    assert site.hits("/private/secret") == 0
    assert site.hits("/robots.txt") == 1
    assert result.stats.robots_blocked == 1
    starts = sorted(hit.started for hit in site.log)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 6  # robots.txt and five pages
    assert min(gaps) >= 0.3 - 0.02


async def test_robots_4xx_allows_and_5xx_disallows(site: TestSite, tmp_path: Path) -> None:
    class One(Spider):
        name = "one"
        start_urls = (site.url("/paged?page=5"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    site.robots_status = 404
    allowed = await crawl(One, tmp_path / "a", max_retries=1, retry_backoff=0.01)
    assert len(allowed.items) == 1

    site.reset()
    site.robots_status = 503
    blocked = await crawl(
        One, tmp_path / "b", max_retries=2, retry_backoff=0.01, retry_backoff_max=0.05
    )
    assert blocked.items == []
    assert site.hits("/paged?page=5") == 0
    assert site.hits("/robots.txt") == 3  # asked again before each retry
    assert blocked.stats.failures == 1


async def test_oversized_and_gzip_bomb_pages_fail_cleanly(site: TestSite, tmp_path: Path) -> None:
    class Big(Spider):
        name = "big"
        start_urls = (
            site.url("/big?size=300000"),
            site.url("/gzip-bomb?size=50000000"),
            site.url("/nolength?size=300000"),
            site.url("/big?size=1000"),
        )

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"size": len(response.body)}

    result = await crawl(Big, tmp_path, obey_robots=False, max_response_bytes=100_000)

    assert result.items == [{"size": 1000}]
    assert result.stats.failures == 3
    assert result.stats.failure_reasons["ResponseTooLarge"] == 3


async def test_redirects_are_followed_and_checked_hop_by_hop(
    site: TestSite, tmp_path: Path
) -> None:
    offsite = site.url("/paged?page=1", 1)

    class Redirected(Spider):
        name = "redirected"
        start_urls = (
            site.url("/redirect-chain/3"),
            site.url(f"/redirect?to={offsite}"),
            site.url("/redirect-chain/20"),
        )
        allowed_domains = ("127.0.0.1",)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url, "text": response.text}

    result = await crawl(Redirected, tmp_path, obey_robots=False, max_redirects=5)

    assert [item["url"] for item in result.items] == [site.url("/redirect-chain/0")]
    assert site.hits_total(1) == 0
    assert result.stats.offsite_filtered == 1
    assert result.stats.failure_reasons["TooManyRedirects"] == 1


async def test_callback_errors_and_invalid_items_do_not_stop_the_crawl(
    site: TestSite, tmp_path: Path
) -> None:
    from pydantic import BaseModel

    class Named(BaseModel):
        name: str
        page: int

    class Careless(Spider):
        name = "careless"
        start_urls = (site.url("/paged?page=1"),)
        item_model = Named

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            page = int(response.url.rsplit("=", 1)[1])
            yield {"name": f"p{page}", "page": page}
            yield {"name": "bad", "page": "not a number"}
            for request in response.follow_all(css="a.next"):
                yield request
            yield Request(response.urljoin("/paged?page=5"), callback=lambda r: None)
            raise RuntimeError("boom")

    result = await crawl(Careless, tmp_path, obey_robots=False)

    assert sorted(item["page"] for item in result.items) == [1, 2, 3, 4, 5]
    assert result.stats.items_dropped == 5
    assert result.stats.callback_errors == 5


async def test_text_is_decoded_from_header_bom_and_meta(site: TestSite, tmp_path: Path) -> None:
    class Charsets(Spider):
        name = "charsets"
        start_urls = tuple(site.url(f"/charset/{k}") for k in ("header", "meta", "bom", "none"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"kind": response.url.rsplit("/", 1)[1], "cafe": "café" in response.text}

    result = await crawl(Charsets, tmp_path, obey_robots=False)

    assert {item["kind"]: item["cafe"] for item in result.items} == dict.fromkeys(
        ("header", "meta", "bom", "none"), True
    )


@pytest.mark.parametrize("links", [150, 300, 1500])
async def test_a_lone_page_of_many_links_is_followed(
    site: TestSite, tmp_path: Path, links: int
) -> None:
    # One request in flight whose links fill a whole commit batch: the dispatcher must not
    # call the crawl over while that batch is being committed.
    class Fan(Spider):
        name = "fan"
        start_urls = (site.url(f"/fan/{links}"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(Fan, tmp_path, obey_robots=False)

    assert len(result.items) == links + 1
    assert result.stats.queued == 0
