"""crawler: an asynchronous web crawler framework. Subclass ``Spider``; run ``crawler run NAME``."""

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
from crawler.items import ItemPipeline
from crawler.request import Request
from crawler.response import Response
from crawler.selectors import Selector, SelectorList
from crawler.settings import Settings
from crawler.spider import Spider

__all__ = [
    "ConfigError",
    "CrawlerError",
    "DropItem",
    "FetchError",
    "ItemPipeline",
    "Request",
    "Response",
    "Selector",
    "SelectorList",
    "Settings",
    "SettingsError",
    "SkipReason",
    "Spider",
    "SpiderError",
    "StateError",
]
