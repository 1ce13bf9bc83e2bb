"""SitemapSpider crawls: the sandbox through robots.txt, its index and a gzipped child; the
50,000-URL cap, nested indexes, broken sitemaps and rules against the loopback test site."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, SitemapSpider
from crawler.errors import SpiderError
from crawler.sandbox import CATALOGUE, SandboxServer, book_lastmod, expected_items
from crawler.sitemaps import SitemapEntry
from spiders.books_sitemap import BooksSitemapSpider
from tests.crawling import crawl
from tests.site import TestSite


async def test_the_books_sitemap_spider_scrapes_the_sandbox_exactly(tmp_path: Path) -> None:
    with SandboxServer() as server:

        class Local(BooksSitemapSpider):
            sitemap_urls = (f"{server.base_url}/robots.txt",)

        result = await crawl(Local, tmp_path)
    lastmods = {b.path: f"{book_lastmod(b)}T00:00:00+00:00" for b in CATALOGUE}
    expected = [
        {**item, "lastmod": lastmods[str(item["url"]).removeprefix(server.base_url)]}
        for item in expected_items(server.base_url)
    ]
    assert sorted(result.items, key=str) == sorted(expected, key=str)
    # robots.txt (once for the rules, once as a sitemap_urls entry), the index, two children
    assert result.stats.requests_total == len(CATALOGUE) + 5


async def test_sitemap_filter_sees_lastmod_so_unchanged_pages_are_skipped(tmp_path: Path) -> None:
    with SandboxServer() as server:

        class Local(BooksSitemapSpider):
            sitemap_urls = (f"{server.base_url}/sitemap.xml",)
            since = "2025-06-01"  # as -a since=2025-06-01 sets it

        result = await crawl(Local, tmp_path)
    changed = {b.path for b in CATALOGUE if book_lastmod(b) >= "2025-06-01"}
    assert 0 < len(changed) < len(CATALOGUE)
    assert {item["url"].removeprefix(server.base_url) for item in result.items} == changed


class Leaves(SitemapSpider):
    """Scrapes /leaf/N pages: the ones a test names, reached through the sitemaps it names."""

    name = "leaves"
    sitemap_rules = ((r"/leaf/(0|49999|50000|50004)$", "parse_leaf"),)

    async def parse_leaf(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {"leaf": int(response.url.rsplit("/", 1)[1]), "sitemap": response.meta["sitemap"]}


async def test_urls_past_50000_in_one_sitemap_are_dropped(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = site.url("/sitemap/big?n=50005")

    class Big(Leaves):
        sitemap_urls = (big,)

    result = await crawl(Big, tmp_path)
    assert sorted(item["leaf"] for item in result.items) == [0, 49999]
    assert result.items[0]["sitemap"] == {
        "loc": result.items[0]["sitemap"]["loc"],
        "lastmod": None,
        "changefreq": None,
        "priority": None,
        "sitemap": big,
    }
    assert "entries past 50000 dropped" in caplog.text
    assert site.hits("/leaf/50000") == site.hits("/leaf/50004") == 0


async def test_nested_indexes_are_read_down_to_sitemap_max_depth(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Deep(SitemapSpider):
        name = "deep"
        sitemap_urls = (site.url("/sitemap/deep/0"),)
        sitemap_max_depth = 3

        async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
            yield {"url": response.url}

    result = await crawl(Deep, tmp_path)
    # deep/0..2 are read, each with a gzipped urlset of one leaf; deep/3 is one index too deep.
    assert sorted(item["url"] for item in result.items) == [
        site.url(f"/leaf/{k}") for k in range(3)
    ]
    assert site.hits("/sitemap/deep/3") == 1
    assert site.hits("/sitemap/deep/4") == 0
    assert "indexes nested past 3" in caplog.text


async def test_sitemap_follow_picks_child_sitemaps(site: TestSite, tmp_path: Path) -> None:
    class Picky(SitemapSpider):
        name = "picky"
        sitemap_urls = (site.url("/sitemap/deep/0"),)
        sitemap_follow = (r"/leaves/",)

        async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
            yield {"url": response.url}

    result = await crawl(Picky, tmp_path)
    assert [item["url"] for item in result.items] == [site.url("/leaf/0")]
    assert site.hits("/sitemap/deep/1") == 0


async def test_a_broken_sitemap_keeps_the_urls_before_the_break(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(SitemapSpider):
        name = "broken"
        sitemap_urls = (site.url("/sitemap/broken"),)

        async def parse_leaf(self, response: Response) -> AsyncIterator[dict[str, Any]]:
            yield {"url": response.url}

        # A rule's callback may be the method itself: it is kept by name.
        sitemap_rules = ((r"/leaf/", parse_leaf),)

    with caplog.at_level(logging.WARNING):
        result = await crawl(Broken, tmp_path)
    assert sorted(item["url"] for item in result.items) == [
        site.url("/leaf/1"),
        site.url("/leaf/2"),
    ]
    assert "2 entries before it kept" in caplog.text
    assert result.stats.callback_errors == 0


async def test_alternate_links_are_followed_when_asked(site: TestSite, tmp_path: Path) -> None:
    class Alternates(SitemapSpider):
        name = "alternates"
        sitemap_urls = (site.url("/sitemap/big?n=1"),)
        sitemap_alternate_links = True

        def sitemap_filter(self, entries: Iterable[SitemapEntry]) -> Iterable[SitemapEntry]:
            for entry in entries:
                yield {**entry, "alternate": ["/leaf/7", "mailto:x@example.com"]}

        async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
            yield {"url": response.url}

    result = await crawl(Alternates, tmp_path)
    assert sorted(item["url"] for item in result.items) == [
        site.url("/leaf/0"),
        site.url("/leaf/7"),
    ]


def test_a_rule_callback_must_be_a_spider_method() -> None:
    class Wrong(SitemapSpider):
        name = "wrong"
        sitemap_rules = ((r"/", "parse_missing"),)

    with pytest.raises(SpiderError, match="parse_missing"):
        Wrong()


async def test_a_stopped_sitemap_crawl_resumes_with_callbacks_and_meta(tmp_path: Path) -> None:
    """Page requests are stored with their callback's name and their sitemap entry in meta."""
    state = tmp_path / "state.db"
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    first_run.mkdir()
    second_run.mkdir()
    with SandboxServer() as server:

        class Local(BooksSitemapSpider):
            sitemap_urls = (f"{server.base_url}/sitemap.xml",)

        first = await crawl(Local, first_run, state=state, max_pages=20)
        second = await crawl(Local, second_run, state=state)
    assert 0 < len(first.items) < len(CATALOGUE)
    # The second run's new feed gets the items committed from then on: with the first run's
    # feed, every book once.
    assert sorted(item["url"] for item in first.items + second.items) == sorted(
        server.base_url + book.path for book in CATALOGUE
    )
    assert all(item["lastmod"].startswith("2025-") for item in second.items)
