"""One crawl of a hostile site that tries everything at once: poison links, links to internal
addresses, credential theft through redirects, a cookie flood, a link flood, formulas for the CSV
feed, robots.txt far too large. It finishes with the good pages' items, leaks nothing, and its
state resumes cleanly."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from crawler import Request, Response, Spider
from crawler.runner import CrawlJob, run
from tests.site import ITEMS_PER_PAGE, PAGED_PAGES, TestSite

SECRET = "Bearer do-not-leak"


def _hostile_spider(site: TestSite) -> type[Spider]:
    host = site.host(0)
    port = host.rpartition(":")[2]
    links = [
        site.url("/leaf/2", 2),  # internal addresses: another loopback host, and localhost
        f"http://localhost:{port}/leaf/3",
        f"http://user:pw@{host}/leaf/1",  # userinfo: a known poison pill
        "http://[",
        "http://" + "x" * 64 + ".test/",
        "/hostile/links?n=50000",  # a link flood
        "/set-cookies/0?k=100&size=200&pages=5",  # a cookie flood
        "/paged?page=1",
    ]

    class Hostile(Spider):
        name = "hostile"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(site.url("/links?h=" + quote(json.dumps(links))))
            yield Request(site.url("/leaf/5", 1))  # host 1 is a start host too: it may be reached
            thief = site.url("/redirect?to=" + quote(site.url("/echo", 1)))
            yield Request(thief, self.parse_echo, headers={"Authorization": SECRET})

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/cookie-echo"):
                yield {"kind": "cookie", "value": str(len(response.text))}
                return
            for node in response.css("span.name"):
                yield {"kind": "good", "value": node.text()}
            yield {"kind": "formula", "value": '=HYPERLINK("http://evil.test","x")'}
            for request in response.follow_all(css="a[href]"):
                yield request
            if "/set-cookies/4?" in response.url:  # the flood is over: what is sent now?
                yield Request(site.url("/cookie-echo"))

        async def parse_echo(self, response: Response) -> AsyncIterator[Any]:
            yield {"kind": "echo", "value": json.dumps(json.loads(response.body)["headers"])}

    return Hostile


@pytest.mark.slow
async def test_a_hostile_site_is_crawled_safely_and_resumes_cleanly(
    site: TestSite, tmp_path: Path
) -> None:
    filler = "# " + "x" * 70 + "\n"
    site.robots = "User-agent: *\nDisallow: /private/\n" + filler * 20_000  # 1.4 MB
    feed, state = tmp_path / "items.csv", tmp_path / "state.db"
    job = CrawlJob(
        _hostile_spider(site),
        overrides={"max_links_per_page": 100, "retry_backoff": 0.01},
        feed=feed,
        state=state,
        progress=False,
    )
    result = await run(job)
    with feed.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    by_kind: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)

    assert len({row["value"] for row in by_kind["good"]}) == PAGED_PAGES * ITEMS_PER_PAGE
    assert {row["value"] for row in by_kind["formula"]} == {'\'=HYPERLINK("http://evil.test","x")'}
    assert SECRET not in by_kind["echo"][0]["value"]
    assert site.hits("/leaf/1") == 0
    assert site.hits_total(2) == site.hits("/leaf/3") == 0
    assert result.stats.failure_reasons["AddressRefused"] == 2
    assert 0 < int(by_kind["cookie"][0]["value"]) <= 8192
    assert sum(site.hits(f"/m/{i}") for i in range(200)) == 100
    assert site.hits("/robots.txt", 0) == 1
    assert result.stats.callback_errors == 0

    site.reset()
    again = await run(job)
    # A finished crawl run again is a recrawl: the three start requests are revisited (one of
    # them redirects), the other pages are not due for a day, and robots.txt is kept.
    assert site.hits_total() == 4
    assert site.hits("/robots.txt") == 0
    assert again.stats.unchanged == 3
    with feed.open(newline="", encoding="utf-8") as file:
        assert list(csv.DictReader(file)) == rows
    assert (again.run.id, again.stats.items_scraped) == (2, 0)  # a new run, with nothing to do
    assert again.totals.items_scraped == result.stats.items_scraped
