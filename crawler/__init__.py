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
from crawler.links import Link, LinkExtractor
from crawler.request import Request
from crawler.response import Response
from crawler.rules import CrawlSpider, Rule
from crawler.settings import Settings
from crawler.sitemap_spider import SitemapSpider
from crawler.spider import Spider

__all__ = [
    "ConfigError",
    "CrawlSpider",
    "CrawlerError",
    "DropItem",
    "FetchError",
    "ItemPipeline",
    "Link",
    "LinkExtractor",
    "Request",
    "Response",
    "Rule",
    "Settings",
    "SettingsError",
    "SitemapSpider",
    "SkipReason",
    "Spider",
    "SpiderError",
    "StateError",
]
