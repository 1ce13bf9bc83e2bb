"""crawler: an asynchronous web crawler framework. Subclass ``Spider``; run ``crawler run NAME``
or, from Python, ``crawler.crawl(MySpider)``.

Every public name is loaded on first use (PEP 562): ``from crawler import Spider`` imports the
spider's modules only, so a spider file, ``crawler list`` and ``crawler --help`` stay quick.
"""

from importlib import import_module

# typing's flag, without importing typing: the console script imports this package before
# crawler.__main__ can take a Ctrl-C quietly, so it does as little as it can.
TYPE_CHECKING = False
if TYPE_CHECKING:
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
    from crawler.runner import CrawlResult, crawl, crawl_async
    from crawler.selectors import Selector, SelectorList
    from crawler.settings import Settings
    from crawler.sitemap_spider import SitemapSpider
    from crawler.spider import ItemPipeline, Spider

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

# Where each public name lives: the imports under TYPE_CHECKING above, for the loader.
_HOMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "ConfigError",
            "CrawlerError",
            "DropItem",
            "FetchError",
            "SettingsError",
            "SkipReason",
            "SpiderError",
            "StateError",
        ),
        "crawler.errors",
    ),
    **dict.fromkeys(("Failure", "HttpError"), "crawler.failure"),
    **dict.fromkeys(("Link", "LinkExtractor"), "crawler.links"),
    "Request": "crawler.request",
    "Response": "crawler.response",
    **dict.fromkeys(("CrawlSpider", "Rule"), "crawler.rules"),
    **dict.fromkeys(("CrawlResult", "crawl", "crawl_async"), "crawler.runner"),
    **dict.fromkeys(("Selector", "SelectorList"), "crawler.selectors"),
    "Settings": "crawler.settings",
    "SitemapSpider": "crawler.sitemap_spider",
    **dict.fromkeys(("ItemPipeline", "Spider"), "crawler.spider"),
}


# Out of type checkers' sight: they read the names above, and a misspelt one stays an error
# (a module __getattr__ would make every unknown name Any to them).
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'crawler' has no attribute {name!r}")
        value = getattr(import_module(home), name)
        globals()[name] = value  # the next lookup is a plain one
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
