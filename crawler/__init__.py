"""crawler: an asynchronous web crawler framework. Subclass ``Spider``; run ``crawler run NAME``
or, from Python, ``crawler.crawl(MySpider)``."""

from typing import TYPE_CHECKING, Any

from crawler.errors import (
    ConfigError,
    CrawlerError,
    DropItem,
    FetchError,
    SettingsError,
    SkipReason,
    SpiderError,
    StateError,
)
from crawler.failure import Failure, HttpError
from crawler.links import Link, LinkExtractor
from crawler.request import Request
from crawler.response import Response
from crawler.rules import CrawlSpider, Rule
from crawler.selectors import Selector, SelectorList
from crawler.settings import Settings
from crawler.sitemap_spider import SitemapSpider
from crawler.spider import ItemPipeline, Spider

if TYPE_CHECKING:
    from crawler.runner import CrawlResult, crawl, crawl_async

__all__ = [
    "ConfigError",
    "CrawlResult",
    "CrawlSpider",
    "CrawlerError",
    "DropItem",
    "Failure",
    "FetchError",
    "HttpError",
    "ItemPipeline",
    "Link",
    "LinkExtractor",
    "Request",
    "Response",
    "Rule",
    "Selector",
    "SelectorList",
    "Settings",
    "SettingsError",
    "SitemapSpider",
    "SkipReason",
    "Spider",
    "SpiderError",
    "StateError",
    "crawl",
    "crawl_async",
]

_RUNNER_NAMES = frozenset({"CrawlResult", "crawl", "crawl_async"})


def __getattr__(name: str) -> Any:
    # The runner pulls in the engine, the fetcher and their libraries: loaded on first use, so
    # that a spider module's `from crawler import Spider` stays light.
    if name in _RUNNER_NAMES:
        from crawler import runner  # noqa: PLC0415 - on first use, as said above

        return getattr(runner, name)
    raise AttributeError(f"module 'crawler' has no attribute {name!r}")
