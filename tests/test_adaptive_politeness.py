"""Autothrottle in real crawls, measured by the test server's clock: a host that answers 429 above
a rate is held just under it, a fast healthy host ramps up to the configured limits, and the
configured floors (download_delay, robots.txt Crawl-delay) and ceilings are never crossed."""

from __future__ import annotations

import itertools
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
    print(f"{len(arrivals)} arrivals, {sum(r for _, r in arrivals)} refused in {end - start:.2f}s;"
          f" second half: {len(late)} arrivals, {late.count(True)} refused, {served:.1f}/s served")
    assert late.count(True) <= 0.1 * len(late)
    assert 0.6 * rate <= served <= rate * 1.05
