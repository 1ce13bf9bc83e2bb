"""The cluster tests' site and its log: what it serves, and the figures read from what it saw."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.cluster_site import (
    HOSTS,
    ClusterSite,
    Hit,
    Throttle,
    fetches_per_url,
    links,
    min_start_gap,
    page_delay,
    peak_concurrency,
    robots_hits,
)


def test_every_page_is_reachable_from_the_start_urls_and_links_cross_hosts() -> None:
    pages = 2000
    seen, todo = set(range(HOSTS)), list(range(HOSTS))
    while todo:
        for child in links(todo.pop(), pages):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    assert seen == set(range(pages))
    assert {child % HOSTS for child in links(5, pages)} != {5 % HOSTS}
    delays = [page_delay(n) for n in range(pages)]
    assert 0.020 <= min(delays) < 0.025
    assert 0.095 < max(delays) <= 0.100


async def test_the_site_serves_pages_robots_and_one_429_and_logs_each_request() -> None:
    throttle = Throttle(host=3, path="/p/11", seconds=2)
    with ClusterSite(pages=40, crawl_delay=1, throttle=throttle) as site:
        reached = site.reached(3)
        assert not reached.is_set()
        async with httpx.AsyncClient(headers={"User-Agent": "w1"}) as client:
            home, *_ = await asyncio.gather(*(client.get(site.url(n)) for n in range(3)))
            refused = await client.get(site.url(11))
            retried = await client.get(site.url(11))
            robots = await client.get(f"http://{site.host(2)}/robots.txt")
            wrong_host = await client.get(f"http://{site.host(1)}/p/2")
        log = site.hits()
    assert reached.is_set()
    links_out = [int(n) for n in re.findall(r">(\d+)</a>", home.text)]
    assert links_out == links(0, 40)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "2")
    assert retried.status_code == 200
    assert "Crawl-delay: 1" in robots.text
    assert wrong_host.status_code == 404
    assert {hit.agent for hit in log} == {"w1"}
    assert peak_concurrency(log)[site.host(0)] == 1
    assert max(peak_concurrency(log).values()) == 1
    assert robots_hits(log) == {site.host(2): 1}
    assert fetches_per_url(log)[site.host(3), "/p/11"] == 2


def test_peaks_and_gaps_are_read_from_starts_and_ends() -> None:
    def hit(path: str, started: float, ended: float) -> Hit:
        return Hit("h:1", path, "w", 200, started, ended)

    log = [hit("/p/1", 0.0, 1.0), hit("/p/2", 0.5, 2.0), hit("/p/3", 1.0, 1.5)]
    assert peak_concurrency(log) == {"h:1": 2}  # /p/1 ended as /p/3 began
    assert min_start_gap(log) == {"h:1": 0.5}
    assert min_start_gap([hit("/robots.txt", 0.9, 1.0), *log]) == {"h:1": 0.5}
