"""SitemapSpider: crawls the pages a site's sitemaps (or its robots.txt) list, Scrapy style."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from crawler.errors import SitemapError, SpiderError
from crawler.request import Callback, Request
from crawler.sitemaps import Sitemap, SitemapEntry, sitemap_urls_from_robots
from crawler.spider import Spider
from crawler.urls import is_http, join_url

if TYPE_CHECKING:
    from crawler.response import Response

log = logging.getLogger("crawler.sitemaps")


class SitemapSpider(Spider):
    """Crawl the pages a site's sitemaps list; ported from Scrapy by changing the import.

    >>> class Books(SitemapSpider):
    ...     name = "books"
    ...     sitemap_urls = ["http://127.0.0.1:8765/robots.txt"]   # or a sitemap's own URL
    ...     sitemap_rules = [(r"_\\d+/index\\.html$", "parse_book")]
    ...
    ...     async def parse_book(self, response):
    ...         yield {"title": response.css_first("h1").text(), "url": response.url}

    A ``sitemap_urls`` entry ending in ``/robots.txt`` is read for its ``Sitemap:`` lines. Each
    page URL goes to the callback of the first rule whose regex it matches (``re.search``), and
    none if no rule matches; a rule's callback is a method name or the method itself. Only
    child sitemaps of an index that match a ``sitemap_follow`` regex are read, at most
    ``sitemap_max_depth`` indexes deep. The entry a page came from (``loc``, ``lastmod`` as
    ISO text, ``changefreq``, ``priority``, and the ``sitemap`` that listed it) is in
    ``response.meta["sitemap"]``; ``sitemap_filter`` sees every entry first, with ``lastmod``
    parsed to a datetime, to drop unchanged pages or rewrite entries.
    """

    sitemap_urls: ClassVar[Sequence[str]] = ()
    sitemap_rules: ClassVar[Sequence[tuple[str | re.Pattern[str], Callback]]] = (("", "parse"),)
    sitemap_follow: ClassVar[Sequence[str | re.Pattern[str]]] = ("",)
    sitemap_alternate_links: ClassVar[bool] = False
    sitemap_max_depth: ClassVar[int] = 3
    """Indexes nested deeper than this are not read (the protocol allows one level)."""

    def __init__(self, **arguments: str) -> None:
        super().__init__(**arguments)
        self._cbs = [(re.compile(regex), self._method(cb)) for regex, cb in self.sitemap_rules]
        self._follow = [re.compile(regex) for regex in self.sitemap_follow]

    def _method(self, callback: Callback) -> str:
        """The name a rule's callback is stored under; requests persist, so it must be a method."""
        name = callback if isinstance(callback, str) else getattr(callback, "__name__", None)
        if not name or not callable(getattr(self, name, None)):
            raise SpiderError(
                f"sitemap_rules callback {callback!r} is not a method of {type(self).__name__}"
            )
        return name

    async def start_requests(self) -> AsyncIterator[Request]:
        for url in self.sitemap_urls:
            yield Request(url, self._parse_sitemap)

    def sitemap_filter(self, entries: Iterable[SitemapEntry]) -> Iterable[SitemapEntry]:
        """Override to drop or change entries (of urlsets and indexes); by default all pass.

        >>> def sitemap_filter(self, entries):
        ...     for entry in entries:
        ...         if entry["lastmod"] is None or entry["lastmod"] >= self.since:
        ...             yield entry
        """
        return entries

    def _get_sitemap_body(self, response: Response) -> bytes | None:
        """The sitemap in a response, gzipped or not; None if it holds none (as in Scrapy)."""
        return response.body if response.body else None

    async def _parse_sitemap(self, response: Response) -> AsyncIterator[Request]:
        depth = response.request.depth + 1
        if response.url.split("?")[0].endswith("/robots.txt"):
            for url in sitemap_urls_from_robots(response.text, response.url):
                yield Request(url, self._parse_sitemap, depth=depth)
            return
        body = self._get_sitemap_body(response)
        if body is None:
            log.warning("sitemap %s: empty, or not a sitemap", response.url)
            return
        # Up to 50 MB of XML: parsed on a thread, so other pages go on while it is read.
        sitemap, entries = await asyncio.to_thread(_read, body, response.url)
        nesting = int(response.meta.get("sitemap_nesting", 0))
        if sitemap.type == "sitemapindex" and nesting >= self.sitemap_max_depth:
            log.warning("sitemap %s: indexes nested past %d", response.url, self.sitemap_max_depth)
            return
        for entry in self.sitemap_filter(entries):
            for url in self._urls(entry, response.url):
                if sitemap.type == "sitemapindex":
                    if any(regex.search(url) for regex in self._follow):
                        child = {"sitemap_nesting": nesting + 1}
                        yield Request(url, self._parse_sitemap, meta=child, depth=depth)
                elif callback := self._callback(url):
                    page = {"sitemap": _as_meta(entry, response.url)}
                    yield Request(url, callback, meta=page, depth=depth)

    def _urls(self, entry: SitemapEntry, sitemap_url: str) -> Iterable[str]:
        urls = [entry["loc"], *(entry["alternate"] if self.sitemap_alternate_links else ())]
        return (u for u in (join_url(sitemap_url, url) for url in urls) if is_http(u))

    def _callback(self, url: str) -> str | None:
        return next((name for regex, name in self._cbs if regex.search(url)), None)


def _read(body: bytes, url: str) -> tuple[Sitemap, list[SitemapEntry]]:
    """Every entry of a sitemap; one that breaks off keeps the entries before the break."""
    sitemap = Sitemap(body, url=url)
    entries: list[SitemapEntry] = []
    try:
        for entry in sitemap:
            entries.append(entry)
    except SitemapError as exc:
        log.warning("%s; %d entries before it kept", exc, len(entries))
    return sitemap, entries


def _as_meta(entry: SitemapEntry, sitemap_url: str) -> dict[str, Any]:
    """The entry as JSON data (meta persists with the request)."""
    lastmod = entry["lastmod"]
    return {
        "loc": entry["loc"],
        "lastmod": lastmod.isoformat() if isinstance(lastmod, datetime) else lastmod,
        "changefreq": entry["changefreq"],
        "priority": entry["priority"],
        "sitemap": sitemap_url,
    }
