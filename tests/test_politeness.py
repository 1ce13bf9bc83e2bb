"""Delays are measured between real requests to one host, as the server sees them: robots.txt,
the first page after it, and every redirect hop, to whichever host it goes; and a host rests a
full delay after each answer, however long it took."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crawler import Response, Spider
from tests.crawling import crawl
from tests.site import TestSite

DELAY = 0.3
SLACK = 0.02  # the server's clock reads a request a little after the client sent it


def _gaps(site: TestSite, host: int) -> list[float]:
    starts = sorted(hit.started for hit in site.log if hit.host == site.host(host))
    return [b - a for a, b in itertools.pairwise(starts)]


def _spider(*urls: str) -> type[Spider]:
    class Urls(Spider):
        name = "urls"
        start_urls = urls

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Urls


async def test_the_first_page_after_robots_txt_waits_for_crawl_delay(
    site: TestSite, tmp_path: Path
) -> None:
    site.robots = f"User-agent: *\nCrawl-delay: {DELAY}\n"
    result = await crawl(_spider(site.url("/leaf/1")), tmp_path)
    assert len(result.items) == 1
    assert [hit.path for hit in site.log] == ["/robots.txt", "/leaf/1"]
    assert _gaps(site, 0)[0] >= DELAY - SLACK


async def test_a_slow_host_rests_a_full_delay_after_each_answer(
    site: TestSite, tmp_path: Path
) -> None:
    urls = [site.url(f"/slow?delay={DELAY * 1.5}&i={i}") for i in range(3)]
    result = await crawl(_spider(*urls), tmp_path, obey_robots=False, download_delay=DELAY)
    assert len(result.items) == 3
    hits = sorted(
        (hit for hit in site.log if hit.path.startswith("/slow")), key=lambda h: h.started
    )
    # the server reads a request's end before the client has it, and its next start after the
    # client sent it: no slack
    rests = [b.started - a.ended for a, b in itertools.pairwise(hits)]
    assert len(rests) == 2
    assert min(rests) >= DELAY, rests


async def test_every_redirect_hop_waits_for_the_delay(site: TestSite, tmp_path: Path) -> None:
    spider = _spider(site.url("/redirect-chain/3"))
    result = await crawl(spider, tmp_path, obey_robots=False, download_delay=DELAY)
    assert len(result.items) == 1
    gaps = _gaps(site, 0)
    assert len(gaps) == 3  # four requests: three hops and the end of the chain
    assert min(gaps) >= DELAY - SLACK


async def test_a_hop_to_another_host_waits_for_that_hosts_delay(
    site: TestSite, tmp_path: Path
) -> None:
    """Host 1 is crawled page by page with a delay; a redirect from host 0 lands on host 1 in
    the middle of it, and still keeps host 1's delay."""
    site.robots = f"User-agent: *\nCrawl-delay: {DELAY}\n"
    hop_to = site.url("/leaf/9", 1)

    class Hops(Spider):
        name = "hops"
        start_urls = (
            *(site.url(f"/leaf/{i}", 1) for i in range(4)),
            site.url(f"/redirect?to={hop_to}", 0),
        )

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Hops, tmp_path)
    assert len(result.items) == 5
    assert site.hits("/leaf/9", 1) == 1
    on_host_1 = [hit.path for hit in site.log if hit.host == site.host(1)]
    assert len(on_host_1) == 6  # robots.txt, four pages and the hop
    assert min(_gaps(site, 1)) >= DELAY - SLACK


async def test_redirects_into_a_delayed_site_whose_robots_txt_redirects_do_not_deadlock(
    site: TestSite, tmp_path: Path
) -> None:
    """A request waiting for its host's turn lends its global slot; requests of other hosts that
    redirect into that site wait on its robots.txt lock while holding theirs. The crawl must
    still end: the waiting request takes its slot back when its turn comes."""
    site.robots_redirect = "/redirect-chain/2"  # host 0's robots.txt: "end", three hops away
    hops = [site.url("/redirect?to=" + site.url(f"/leaf/{i}", 0), 1 + i % 2) for i in range(4)]
    spider = _spider(site.url("/leaf/9", 0), *hops)
    result = await crawl(spider, tmp_path, concurrency=2, download_delay=DELAY)
    assert len(result.items) == 5
    assert min(_gaps(site, 0)) >= DELAY - SLACK


async def test_a_site_asking_for_a_huge_crawl_delay_is_skipped_not_waited_for(
    site: TestSite, tmp_path: Path
) -> None:
    site.robots = "User-agent: *\nCrawl-delay: 1000000000\n"
    spider = _spider(site.url("/leaf/1", 0), site.url("/leaf/2", 0), site.url("/leaf/3", 1))
    result = await crawl(spider, tmp_path, max_crawl_delay=30)
    assert result.items == []
    assert result.stats.crawl_delay_skipped == 3
    assert [hit.path for hit in site.log] == ["/robots.txt", "/robots.txt"]


async def test_a_hop_from_another_host_waits_for_the_delayed_hosts_answer(
    site: TestSite, tmp_path: Path
) -> None:
    """Host 1 (a delay, so one request at a time) is answering a slow page when a redirect
    from host 0 lands on it: the hop must wait for that answer, then rest the delay."""
    hop_to = site.url("/leaf/9", 1)
    spider = _spider(site.url(f"/slow?delay={DELAY * 3}", 1), site.url(f"/redirect?to={hop_to}"))
    result = await crawl(spider, tmp_path, obey_robots=False, download_delay=DELAY)
    assert len(result.items) == 2
    hits = sorted((hit for hit in site.log if hit.host == site.host(1)), key=lambda h: h.started)
    assert [hit.path for hit in hits] == [f"/slow?delay={DELAY * 3}", "/leaf/9"]
    assert site.peak_concurrency(1) == 1
    assert hits[1].started - hits[0].ended >= DELAY


async def test_redirects_crossing_between_two_delayed_hosts_do_not_deadlock(
    site: TestSite, tmp_path: Path
) -> None:
    """Pages of host 0 redirect to host 1 and pages of host 1 to host 0, both hosts one request
    at a time: each hop gives its own slot back before it waits for the other's."""
    urls = [
        site.url(f"/redirect?to={site.url(f'/leaf/{i}', 1 - host)}", host)
        for i in range(4)
        for host in (0, 1)
    ]
    async with asyncio.timeout(60):
        result = await crawl(_spider(*urls), tmp_path, obey_robots=False, download_delay=0.05)
    assert len(result.items) == len(urls)
    assert site.peak_concurrency(0) == site.peak_concurrency(1) == 1


async def test_a_retry_after_from_a_redirects_target_pauses_that_host(
    site: TestSite, tmp_path: Path
) -> None:
    """A page of host 0 redirects to host 1, which answers 429 with Retry-After 1: host 1's own
    pages wait the second out (the pause is the host's that asked, not the page's first)."""
    target = site.url("/retry-after/k?seconds=1&times=1&status=429", 1)
    others = [site.url(f"/slow?delay=0.2&i={i}", 1) for i in range(6)]
    spider = _spider(site.url(f"/redirect?to={quote(target, safe='')}", 0), *others)
    result = await crawl(spider, tmp_path, obey_robots=False, per_host_concurrency=1)
    assert len(result.items) == 7
    refused = min(
        (hit for hit in site.log if hit.path.startswith("/retry-after")), key=lambda h: h.started
    )
    during = [
        hit.path
        for hit in site.log
        if hit.host == site.host(1) and refused.ended < hit.started < refused.ended + 1 - SLACK
    ]
    assert during == []
