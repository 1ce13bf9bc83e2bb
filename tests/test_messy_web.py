"""One crawl of a site that mixes the messy web's troubles: a mislabelled charset, links spelled
many ways (and some broken), binary files, hostile HTML, a server that closes every connection,
robots.txt groups meant for others, redirects. It finishes with every good page's items."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, Spider
from tests.crawling import crawl
from tests.site import ITEMS_PER_PAGE, PAGED_PAGES, SPELLINGS, TestSite

ROBOTS = """\
User-agent: Mozilla
Allow: /

User-agent: crawler-news
Allow: /

User-agent: Crawler
Disallow: /private/

User-agent: *
Disallow: /
"""


@pytest.mark.slow
async def test_a_messy_site_is_crawled_to_every_good_item(site: TestSite, tmp_path: Path) -> None:
    site.robots = ROBOTS

    class Messy(Spider):
        name = "messy"
        start_urls = (site.url("/messy"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            title = response.css_first("h1") or response.css_first("title")
            yield {"url": response.url, "title": title.text() if title else None}
            for node in response.css("span.name"):
                yield {"name": node.text()}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(Messy, tmp_path, max_parse_s=2.0, max_links_per_page=50, max_depth=6)
    stats = result.stats
    titles = {item["url"]: item["title"] for item in result.items if "url" in item}
    names = {item["name"] for item in result.items if "name" in item}

    # Windows-1252 bytes under a latin-1 label read as a browser reads them.
    assert titles[site.url("/charset/windows-1252")] == "Café “deals”"
    # Every spelling of a page is one request.
    assert [site.hits(f"/spellings/{name}") for name in SPELLINGS] == [1] * len(SPELLINGS)
    # Binary files give no links; hostile HTML fails alone or is capped.
    assert site.hits("/binary-link/1") == site.hits("/binary-link/2") == 0
    assert stats.failure_reasons["ParseBudgetExceeded"] == 1
    assert sum(site.hits(f"/m/{i}") for i in range(60)) == 50
    # A server that closes every connection still serves each page once.
    assert all(site.hits(f"/closing/{i}?n=5") == 1 for i in range(5))
    # The crawler's own group, matched by its product token: /private/ is out, the rest is in.
    assert site.hits("/private/secret") == 0
    assert stats.robots_blocked == 1
    assert site.hits("/robots.txt", 0) == site.hits("/robots.txt", 1) == 1
    # Redirects end on their page; the other host is crawled through, page by page.
    assert titles[site.url("/redirect-chain/0")] is None
    assert len(names) == PAGED_PAGES * ITEMS_PER_PAGE
    # Broken links ("http://[", a bad port, javascript:) are passed over without an error.
    assert stats.callback_errors == 0
