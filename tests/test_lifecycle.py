"""Lifecycle hooks: pipelines' open_spider/close_spider and process_item, sync or async or
absent, and the spider's closed(reason), for each way a crawl can end."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import crawler
from crawler import ItemPipeline, Request, Response, Spider, StateError
from crawler.runner import CrawlJob, run
from crawler.stats import Stats
from crawler.summary import lines
from tests.crawling import crawl
from tests.site import TestSite


class SyncHooks:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def open_spider(self, spider: Spider) -> None:
        self.events.append("sync open")

    def process_item(self, item: Any, spider: Spider) -> Any:
        self.events.append("sync item")
        return {**item, "sync": True}

    def close_spider(self, spider: Spider) -> None:
        self.events.append("sync close")


class AsyncHooks:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def open_spider(self, spider: Spider) -> None:
        await asyncio.sleep(0)
        self.events.append("async open")

    async def process_item(self, item: Any, spider: Spider) -> Any:
        await asyncio.sleep(0)
        self.events.append("async item")
        return {**item, "async": True}

    async def close_spider(self, spider: Spider) -> None:
        await asyncio.sleep(0)
        self.events.append("async close")


class ItemsOnly:
    """No open_spider, no close_spider."""

    def process_item(self, item: Any, spider: Spider) -> Any:
        return {**item, "plain": True}


def fan_spider(
    start: str,
    pipelines: list[ItemPipeline],
    events: list[str],
    *,
    async_closed: bool = False,
    on_leaf: Any = None,
) -> type[Spider]:
    """Crawls a /fan/N page and its leaves, one item per leaf; ``closed`` records its reason."""

    class Fan(Spider):
        name = "fan"
        start_urls: ClassVar = [start]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for request in response.follow_all(css="a", callback=self.parse_leaf):
                yield request

        def parse_leaf(self, response: Response) -> Iterator[Any]:
            if on_leaf is not None:
                on_leaf(self, response)
            yield {"leaf": int(response.url.rsplit("/", 1)[1])}

        def closed(self, reason: str) -> Any:
            if not async_closed:
                events.append(f"closed {reason}")
                return None

            async def later() -> None:
                await asyncio.sleep(0)
                events.append(f"async closed {reason}")

            return later()

    Fan.pipelines = pipelines
    return Fan


@pytest.mark.parametrize("async_closed", [False, True])
async def test_hooks_of_every_shape_run_once_in_order(
    site: TestSite, tmp_path: Path, async_closed: bool
) -> None:
    events: list[str] = []
    pipelines = [SyncHooks(events), ItemsOnly(), AsyncHooks(events)]
    spider = fan_spider(site.url("/fan/5"), pipelines, events, async_closed=async_closed)
    result = await crawl(spider, tmp_path, obey_robots=False)

    assert sorted(item["leaf"] for item in result.items) == list(range(5))
    assert all(item["sync"] and item["plain"] and item["async"] for item in result.items)
    closed = "async closed finished" if async_closed else "closed finished"
    assert events[:2] == ["sync open", "async open"]
    assert events[-3:] == ["sync close", "async close", closed]
    assert sorted(events[2:-3]) == ["async item"] * 5 + ["sync item"] * 5
    assert result.stats.hook_errors == 0


class Broken:
    """Every hook raises; process_item keeps the item."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def open_spider(self, spider: Spider) -> None:
        raise RuntimeError("cannot open")

    async def process_item(self, item: Any, spider: Spider) -> Any:
        return item

    async def close_spider(self, spider: Spider) -> None:
        raise RuntimeError("cannot close")


async def test_a_hook_that_raises_is_one_logged_line_and_counted(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    def failing_leaf(spider: Spider, response: Response) -> None:
        if response.url.endswith("/0"):
            raise ValueError("callback broke")

    class Closing(fan_spider(site.url("/fan/4"), [], events, on_leaf=failing_leaf)):
        pipelines: ClassVar = [Broken(events), SyncHooks(events)]

        def closed(self, reason: str) -> None:
            events.append(f"closed {reason}")
            raise RuntimeError("closed broke")

    with caplog.at_level(logging.ERROR, "crawler.lifecycle"):
        result = await crawl(Closing, tmp_path, obey_robots=False)

    assert sorted(item["leaf"] for item in result.items) == [1, 2, 3]
    assert result.stats.callback_errors == 1
    assert result.stats.hook_errors == 3
    # The hooks after a broken one still ran, and closed() heard how the crawl ended.
    assert events[0] == "sync open"
    assert events[-2:] == ["sync close", "closed finished"]
    hook_records = [r for r in caplog.records if r.name == "crawler.lifecycle"]
    assert [r.getMessage().split(" raised ")[0] for r in hook_records] == [
        "Broken.open_spider",
        "Broken.close_spider",
        "Closing.closed",
    ]
    assert all(r.exc_info is None for r in hook_records)


def test_the_summary_names_hook_errors_only_when_there_are_some() -> None:
    assert lines(Stats(hook_errors=2), stopped=False)[-1] == (
        "2 errors in open_spider, close_spider or closed hooks (see the log)"
    )
    assert not any("hooks" in line for line in lines(Stats(), stopped=False))


async def test_max_pages_closes_with_closespider_pagecount(site: TestSite, tmp_path: Path) -> None:
    events: list[str] = []
    spider = fan_spider(site.url("/fan/20"), [SyncHooks(events)], events)
    result = await crawl(spider, tmp_path, obey_robots=False, max_pages=3)

    assert len(result.items) == 2
    assert events[-2:] == ["sync close", "closed closespider_pagecount"]


async def test_a_graceful_stop_closes_with_shutdown_and_saves_the_state_after_the_hooks(
    site: TestSite, tmp_path: Path
) -> None:
    """SIGINT (as Ctrl-C): requests in flight finish, the hooks run with "shutdown", and what
    close_spider left in spider.state is what the resumed crawl's open_spider reads."""
    events: list[str] = []

    class Closings:
        def open_spider(self, spider: Spider) -> None:
            events.append(f"open after {spider.state.get('closings', 0)} closings")

        def process_item(self, item: Any, spider: Spider) -> Any:
            return item

        def close_spider(self, spider: Spider) -> None:
            spider.state["closings"] = spider.state.get("closings", 0) + 1

    def interrupt(spider: Spider, response: Response) -> None:
        if "interrupted" in events:
            return
        events.append("interrupted")
        os.kill(os.getpid(), signal.SIGINT)  # the crawl's own handler takes it

    spider = fan_spider(site.url("/fan/30"), [Closings()], events, on_leaf=interrupt)
    state = tmp_path / "state.db"
    overrides = {"obey_robots": False, "allow_private_addresses": True, "concurrency": 1}
    job = CrawlJob(spider=spider, overrides=overrides, state=state, progress=False, signals=True)
    stopped = await run(job)
    resumed = await crawler.crawl_async(spider, settings=overrides, state=state)

    assert stopped.stopped
    assert events[:3] == ["open after 0 closings", "interrupted", "closed shutdown"]
    assert events[3:] == ["open after 1 closings", "closed finished"]
    assert 0 < stopped.stats.items_scraped < 30
    assert resumed.items is not None  # the items of both runs, each once
    assert sorted(item["leaf"] for item in resumed.items) == list(range(30))


async def test_a_cancelled_crawl_closes_with_cancelled(site: TestSite) -> None:
    events: list[str] = []
    first_leaf = asyncio.Event()
    spider = fan_spider(
        site.url("/fan/30"), [SyncHooks(events)], events, on_leaf=lambda *_: first_leaf.set()
    )
    settings = {"obey_robots": False, "allow_private_addresses": True, "concurrency": 1}
    task = asyncio.create_task(crawler.crawl_async(spider, settings=settings))
    await first_leaf.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert events[-2:] == ["sync close", "closed cancelled"]


async def test_a_crash_closes_with_the_error_and_raises_it(site: TestSite, tmp_path: Path) -> None:
    events: list[str] = []

    def keep_a_set(spider: Spider, response: Response) -> None:
        spider.state["seen"] = {response.url}  # not JSON data: the first commit fails

    spider = fan_spider(site.url("/fan/3"), [SyncHooks(events)], events, on_leaf=keep_a_set)
    with pytest.raises(StateError, match=r"spider\.state\['seen'\] is not JSON data"):
        await crawl(spider, tmp_path, obey_robots=False)

    assert events[-2] == "sync close"
    assert events[-1].startswith("closed StateError: spider.state['seen'] is not JSON data")


async def test_spiders_and_pipelines_without_hooks_crawl_as_before(
    site: TestSite, tmp_path: Path
) -> None:
    class Plain(Spider):
        name = "plain"
        start_urls: ClassVar = [site.url("/fan/3")]
        pipelines: ClassVar = [ItemsOnly()]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Plain, tmp_path, obey_robots=False)
    assert result.items == [{"url": site.url("/fan/3"), "plain": True}]
    assert result.stats.hook_errors == 0


def test_a_sync_start_requests_generator_seeds_the_crawl(site: TestSite, tmp_path: Path) -> None:
    class Scrapyish(Spider):
        name = "scrapyish"

        def start_requests(self) -> Iterator[Request]:
            for n in (1, 2):
                yield Request(site.url(f"/leaf/{n}"), meta={"n": n})

        def parse(self, response: Response) -> Iterator[Any]:
            yield {"n": response.meta["n"]}

    settings = {"obey_robots": False, "allow_private_addresses": True}
    result = crawler.crawl(Scrapyish, settings=settings)
    assert result.items is not None
    assert sorted(item["n"] for item in result.items) == [1, 2]


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_start_requests_extend_the_default_either_way(
    site: TestSite, tmp_path: Path, style: str
) -> None:
    class Extended(Spider):
        name = "extended"
        start_urls = (site.url("/leaf/0"),)

        async def start_requests(self) -> AsyncIterator[Request]:
            defaults = super().start_requests()
            if style == "async":
                async for request in defaults:  # type: ignore[union-attr]
                    yield request
            else:
                for request in defaults:  # type: ignore[union-attr]
                    yield request
            yield Request(site.url("/leaf/1"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Extended, tmp_path, obey_robots=False)
    assert sorted(item["url"] for item in result.items) == [
        site.url("/leaf/0"),
        site.url("/leaf/1"),
    ]
