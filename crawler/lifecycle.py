"""The crawl's lifecycle hooks: pipelines' ``open_spider`` and ``close_spider``, the spider's
``closed(reason)``, and the reasons a crawl closes (Scrapy's words)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from crawler.spider import ClosesSpider, OpensSpider, Spider
from crawler.stats import Stats

log = logging.getLogger("crawler.lifecycle")

FINISHED = "finished"
SHUTDOWN = "shutdown"  # a graceful stop: a first SIGINT/SIGTERM, or Engine.stop()
PAGECOUNT = "closespider_pagecount"  # max_pages requests were dispatched
CANCELLED = "cancelled"  # stopped at once: a second Ctrl-C, or the crawl's task cancelled


def crash_reason(error: BaseException) -> str:
    """The reason given to the close hooks when ``error`` ended the crawl."""
    if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt)):
        return CANCELLED
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def open_spider(spider: Spider, stats: Stats) -> None:
    """Each pipeline's ``open_spider``, in order."""
    for pipeline in spider.pipelines:
        if isinstance(pipeline, OpensSpider):
            name = f"{type(pipeline).__name__}.open_spider"
            await _call(name, pipeline.open_spider, spider, stats)


async def close_spider(spider: Spider, reason: str, stats: Stats) -> None:
    """Each pipeline's ``close_spider``, in order, then ``spider.closed(reason)``; each runs
    whatever the ones before it did."""
    for pipeline in spider.pipelines:
        if isinstance(pipeline, ClosesSpider):
            name = f"{type(pipeline).__name__}.close_spider"
            await _call(name, pipeline.close_spider, spider, stats)
    await _call(f"{type(spider).__name__}.closed", spider.closed, reason, stats)


async def _call(name: str, hook: Callable[[Any], Any], argument: Any, stats: Stats) -> None:
    """Run one hook, sync or async. An error in it is one log line and a count: it never hides
    how the crawl itself went."""
    try:
        result = hook(argument)
        if inspect.isawaitable(result):
            await result
    except Exception as error:
        stats.hook_errors += 1
        log.error("%s raised %s: %s", name, type(error).__name__, error)
        log.debug("%s traceback", name, exc_info=True)
