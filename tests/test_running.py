"""Running a crawl from Python: ``crawler.crawl`` in a script, ``await crawler.crawl_async`` in a
notebook or any running loop, with the items back when there is no feed file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import crawler
from crawler import Request, Response, Spider
from crawler.testing import serve

PAGES = {
    "/": '<h1>home</h1><a href="/a">a</a> <a href="/b">b</a>',
    "/a": "<h1>a</h1>",
    "/b": "<h1>b</h1>",
}
SETTINGS = {"obey_robots": False, "allow_private_addresses": True}


class Headings(Spider):
    """Yields each page's heading; the start URL comes from ``arguments={"start": ...}``."""

    name = "headings"
    start = ""

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(self.start)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        heading = response.css_first("h1")
        yield {"h1": heading.text() if heading is not None else None}
        for request in response.follow_all(css="a"):
            yield request


async def test_crawl_async_returns_the_stats_and_the_items() -> None:
    with serve(PAGES) as site:
        result = await crawler.crawl_async(
            Headings, settings=SETTINGS, arguments={"start": site.url("/")}
        )
    assert result.items is not None
    assert sorted(item["h1"] for item in result.items) == ["a", "b", "home"]
    assert result.stats.pages_crawled == 3
    assert result.stopped is False
    assert site.hits == {"/": 1, "/a": 1, "/b": 1}


async def test_crawl_async_with_a_feed_leaves_the_items_there(tmp_path: Path) -> None:
    feed = tmp_path / "items.jsonl"
    with serve(PAGES) as site:
        result = await crawler.crawl_async(
            Headings,
            settings={**SETTINGS, "max_pages": 1},
            arguments={"start": site.url("/")},
            feed=feed,
            stats=tmp_path / "stats.json",
        )
    assert result.items is None
    assert [json.loads(line) for line in feed.read_text().splitlines()] == [{"h1": "home"}]
    assert json.loads((tmp_path / "stats.json").read_text())["pages_crawled"] == 1


async def test_a_crawl_kept_in_a_state_resumes_and_returns_every_item(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with serve(PAGES) as site:
        start = {"start": site.url("/")}
        first = await crawler.crawl_async(
            Headings, settings={**SETTINGS, "max_pages": 1}, arguments=start, state=state
        )
        second = await crawler.crawl_async(
            Headings, settings=SETTINGS, arguments=start, state=state
        )
    assert first.items == [{"h1": "home"}]
    assert second.items is not None
    assert sorted(item["h1"] for item in second.items) == ["a", "b", "home"]
    assert site.hits == {"/": 1, "/a": 1, "/b": 1}


def test_crawl_runs_its_own_loop_in_a_script() -> None:
    with serve(PAGES) as site:
        result = crawler.crawl(Headings, settings=SETTINGS, arguments={"start": site.url("/")})
    assert result.items is not None
    assert len(result.items) == 3


async def test_crawl_inside_a_running_loop_says_to_await_crawl_async() -> None:
    with pytest.raises(RuntimeError, match=r"await crawler\.crawl_async"):
        crawler.crawl(Headings, settings=SETTINGS, arguments={"start": "http://127.0.0.1:1/"})


async def test_a_bad_setting_is_a_settings_error() -> None:
    with pytest.raises(crawler.SettingsError):
        await crawler.crawl_async(Headings, settings={"no_such_setting": 1})
