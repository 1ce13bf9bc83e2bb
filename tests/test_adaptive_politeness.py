"""Autothrottle in real crawls, measured by the test server's clock: a host that answers 429 above
a rate is held just under it, a fast healthy host ramps up to the configured limits, and the
configured floors (download_delay, robots.txt Crawl-delay) and ceilings are never crossed."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crawler import Response, Spider
from tests.crawling import crawl
from tests.site import TestSite

SLACK = 0.02  # the server's clock reads a request a little after the client sent it


def _spider(*urls: str) -> type[Spider]:
    class Urls(Spider):
        name = "urls"
        start_urls = urls

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Urls


def _starts(site: TestSite, host: int = 0, prefix: str = "/") -> list[float]:
    return sorted(
        hit.started
        for hit in site.log
        if hit.host == site.host(host) and hit.path.startswith(prefix)
    )


async def test_a_rate_limited_host_is_held_just_under_its_rate(
    site: TestSite, tmp_path: Path
) -> None:
    rate = 25.0
    pages = 150
    urls = [site.url(f"/rate-limited/{i}?rate={rate}") for i in range(pages)]
    result = await crawl(
        _spider(*urls),
        tmp_path,
        obey_robots=False,
        autothrottle=True,
        autothrottle_start_delay=0.0,
        autothrottle_target_concurrency=4.0,
        per_host_concurrency=4,
        max_retries=20,
        retry_backoff=0.05,
        retry_backoff_max=0.5,
    )
    assert len(result.items) == pages
    arrivals = site.arrivals
    start, end = arrivals[0][0], arrivals[-1][0]
    late = [refused for at, refused in arrivals if at >= (start + end) / 2]
    span = end - (start + end) / 2
    served = late.count(False) / span
    seen = f"second half: {len(late)} arrivals, {late.count(True)} refused, {served:.1f}/s served"
    assert late.count(True) <= 0.1 * len(late), seen
    assert 0.6 * rate <= served <= rate * 1.05, seen


async def test_a_fast_healthy_host_ramps_up_to_the_configured_limits(
    site: TestSite, tmp_path: Path
) -> None:
    """50 ms pages, four at a time allowed: from a 0.2 s start delay, autothrottle comes down to
    latency / target concurrency and fills all four slots, never a fifth."""
    latency, limit, pages = 0.05, 4, 160
    urls = [site.url(f"/slow?delay={latency}&i={i}") for i in range(pages)]
    result = await crawl(
        _spider(*urls),
        tmp_path,
        obey_robots=False,
        autothrottle=True,
        autothrottle_start_delay=0.2,
        autothrottle_target_concurrency=float(limit),
        per_host_concurrency=limit,
    )
    assert len(result.items) == pages
    assert site.peak_concurrency(0) == limit
    starts = _starts(site)
    early = starts[1] - starts[0]
    late = (starts[-1] - starts[-41]) / 40
    assert early >= 0.2 - SLACK
    assert late <= 1.5 * latency / limit, f"{late:.4f}s between starts"  # ~75/s, from 5/s


async def test_retry_after_holds_the_host_back_even_when_the_page_is_not_retried(
    site: TestSite, tmp_path: Path
) -> None:
    urls = [site.url(f"/rate-limited/{i}?rate=5&retry_after=1") for i in range(5)]
    result = await crawl(
        _spider(*urls), tmp_path, obey_robots=False, autothrottle=True,
        autothrottle_start_delay=0.0, max_retries=0,
    )  # fmt: skip
    arrivals = site.arrivals
    refused = [i for i, (_, no) in enumerate(arrivals) if no]
    assert refused  # the second request came at once, and was refused
    assert len(result.items) == len(arrivals) - len(refused)
    for i in refused:
        if i + 1 < len(arrivals):
            assert arrivals[i + 1][0] - arrivals[i][0] >= 1.0 - SLACK


async def test_download_delay_stays_the_floor(site: TestSite, tmp_path: Path) -> None:
    urls = [site.url(f"/leaf/{i}") for i in range(8)]
    await crawl(
        _spider(*urls), tmp_path, obey_robots=False, autothrottle=True,
        autothrottle_start_delay=0.0, download_delay=0.1, per_host_concurrency=4,
    )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(_starts(site))]
    assert len(gaps) == 7
    assert min(gaps) >= 0.1 - SLACK


async def test_robots_crawl_delay_stays_the_floor(site: TestSite, tmp_path: Path) -> None:
    site.robots = "User-agent: *\nCrawl-delay: 0.1\n"
    urls = [site.url(f"/leaf/{i}") for i in range(8)]
    await crawl(
        _spider(*urls), tmp_path, autothrottle=True, autothrottle_start_delay=0.0,
        per_host_concurrency=4,
    )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(_starts(site))]
    assert len(gaps) == 8  # robots.txt and eight pages
    assert min(gaps) >= 0.1 - SLACK
    assert site.peak_concurrency(0) == 1


async def test_a_host_that_hangs_up_is_not_slowed_to_max_delay(
    site: TestSite, tmp_path: Path
) -> None:
    """Failures without a response halve concurrency but do not raise the delay: a dead host's
    retries would otherwise wait up to autothrottle_max_delay each."""
    urls = [site.url(f"/hang-up/{i}") for i in range(6)]
    result = await crawl(
        _spider(*urls), tmp_path, obey_robots=False, autothrottle=True,
        autothrottle_start_delay=0.0, per_host_concurrency=4, max_retries=2, retry_backoff=0.01,
    )  # fmt: skip
    assert result.items == []
    starts = _starts(site)
    assert len(starts) == 18  # every page tried three times
    assert starts[-1] - starts[0] < 2.0


async def test_one_request_at_a_time_keeps_a_slow_host_busy_at_target_concurrency_one(
    site: TestSite, tmp_path: Path
) -> None:
    """Autothrottle's delay tends to latency / target concurrency: at a target of 1 with one
    request allowed, the next request starts as the last answer comes in. Its delay is a pace
    between starts, not a rest after each answer (that is download_delay's, which is 0 here)."""
    latency = 0.2
    urls = [site.url(f"/slow?delay={latency}&i={i}") for i in range(5)]
    result = await crawl(
        _spider(*urls),
        tmp_path,
        obey_robots=False,
        autothrottle=True,
        autothrottle_start_delay=latency,
        per_host_concurrency=1,
    )
    assert len(result.items) == 5
    hits = sorted(site.log, key=lambda hit: hit.started)
    idle = [b.started - a.ended for a, b in itertools.pairwise(hits)]
    assert statistics.median(idle) < latency / 2, idle  # a rest after each answer: >= latency
