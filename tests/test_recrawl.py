"""Recrawls against the loopback site: a finished crawl run again revalidates its pages with
the validators it kept, runs callbacks only on the pages that changed, and adapts its intervals."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler import Request, Response, Spider
from tests.crawling import Crawled, crawl
from tests.site import TestSite

PAGES = 20
DUE_NOW = {"revisit_after_s": 0, "revisit_min_s": 0}  # every known page is due at once
QUICK = {"obey_robots": False, "max_retries": 1, "retry_backoff": 0.0}


def fresh_spider(site: TestSite, kind: str, pages: int = PAGES, **meta: Any) -> type[Spider]:
    class Fresh(Spider):
        name = "fresh"
        start_urls: ClassVar = [site.url(f"/fresh/{kind}/?n={pages}")]

        async def parse(self, response: Response) -> AsyncIterator[Request]:
            for request in response.follow_all(css="a", callback=self.parse_page, meta=meta):
                yield request

        async def parse_page(self, response: Response) -> AsyncIterator[dict[str, int]]:
            number, version = response.css("h1.n::text").get(), response.css("p.v::text").get()
            assert number is not None and version is not None
            yield {"n": int(number), "v": int(version)}

    return Fresh


async def run(spider: type[Spider], tmp_path: Path, name: str, **settings: Any) -> Crawled:
    """One run on the shared state, with a feed of its own."""
    folder = tmp_path / name
    folder.mkdir()
    return await crawl(spider, folder, state=tmp_path / "state.db", **{**QUICK, **settings})


def page_hits(site: TestSite, kind: str, *, index: bool = True) -> list[dict[str, str]]:
    """The headers of the requests for /fresh/<kind>/ pages (and its index page)."""
    prefix = f"/fresh/{kind}/"
    return [
        hit.headers
        for hit in site.log
        if hit.path.startswith(prefix) and (index or not hit.path.startswith(prefix + "?"))
    ]


async def test_nothing_changed_revalidates_every_page_for_a_tenth_of_the_bytes(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "strong")
    first = await run(spider, tmp_path, "one")
    first_bytes = site.body_bytes
    pages_before = first.stats.pages_crawled
    site.reset()

    second = await run(spider, tmp_path, "two", **DUE_NOW)

    hits = page_hits(site, "strong")
    assert len(hits) == PAGES + 1  # the start page and every page it led to, once each
    assert all("if-none-match" in headers for headers in hits)
    assert all("if-modified-since" in headers for headers in page_hits(site, "strong", index=False))
    assert second.items == []
    assert second.stats.pages_crawled == pages_before  # no callback ran
    assert second.stats.not_modified == PAGES + 1
    assert site.body_bytes <= first_bytes / 10
    assert len(first.items) == PAGES


async def test_reemit_gives_the_first_runs_items_again(site: TestSite, tmp_path: Path) -> None:
    spider = fresh_spider(site, "strong")
    first = await run(spider, tmp_path, "one")
    second = await run(spider, tmp_path, "two", on_unchanged="reemit", **DUE_NOW)
    third = await run(spider, tmp_path, "three", on_unchanged="reemit", **DUE_NOW)

    assert len(first.items) == PAGES
    assert sorted(second.items, key=str) == sorted(first.items, key=str)
    assert sorted(third.items, key=str) == sorted(first.items, key=str)  # not twice
    assert second.stats.items_reemitted == PAGES
    assert second.stats.pages_crawled == first.stats.pages_crawled


@pytest.mark.parametrize("kind", ["strong", "weak", "dates", "volatile", "ignore"])
async def test_after_five_pages_change_the_next_run_emits_exactly_those(
    site: TestSite, tmp_path: Path, kind: str
) -> None:
    spider = fresh_spider(site, kind)
    await run(spider, tmp_path, "one")
    changed = [2, 3, 5, 8, 13]
    site.mutate(*changed)

    second = await run(spider, tmp_path, "two", **DUE_NOW)
    third = await run(spider, tmp_path, "three", **DUE_NOW)

    assert sorted(item["n"] for item in second.items) == changed
    assert {item["v"] for item in second.items} == {1}
    assert second.stats.changed == 5
    assert second.stats.not_modified + second.stats.unchanged == PAGES + 1 - 5
    assert third.items == []


async def test_a_weak_etag_goes_back_weak(site: TestSite, tmp_path: Path) -> None:
    spider = fresh_spider(site, "weak")
    await run(spider, tmp_path, "one")
    site.reset()
    await run(spider, tmp_path, "two", **DUE_NOW)
    sent = {headers["if-none-match"] for headers in page_hits(site, "weak", index=False)}
    assert sent == {f'W/"p{i}-v0"' for i in range(PAGES)}


async def test_a_content_signature_hook_ignores_what_changes_on_every_fetch(
    site: TestSite, tmp_path: Path
) -> None:
    class Stamped(fresh_spider(site, "stamped")):  # type: ignore[misc]
        def content_signature(self, response: Response) -> bytes | str:
            return "".join(response.css("h1.n, p.v, div.text").getall()) or response.body

    await run(Stamped, tmp_path, "one")
    site.mutate(7)
    second = await run(Stamped, tmp_path, "two", **DUE_NOW)

    assert [item["n"] for item in second.items] == [7]
    assert second.stats.unchanged == PAGES  # the index and the 19 other pages


async def test_without_the_hook_a_volatile_part_makes_every_page_new(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "stamped")
    await run(spider, tmp_path, "one")
    second = await run(spider, tmp_path, "two", **DUE_NOW)
    assert len(second.items) == PAGES
