"""Admission: whether a new request may enter the crawl (recent URLs, callback, its own revisit
interval, scope, depth)."""

from __future__ import annotations

import logging
from typing import Any

from crawler.dedup import SEEN_URLS, SeenSet, url_key
from crawler.errors import SpiderError
from crawler.freshness import own_interval
from crawler.request import Request
from crawler.scope import Scope
from crawler.spider import Spider
from crawler.stats import Stats
from crawler.urls import standard_url

log = logging.getLogger("crawler.engine")


class Admission:
    """``admit(request, parent)`` gives the request to store, or None; refusals are counted.

    The request that comes out is a value: when its depth must change (a child yielded as a plain
    ``Request(...)`` one level below its parent), admission returns a new request rather than
    mutating the one the spider still holds.

    Most links of a page were admitted already: a compact set of the URLs admitted so far drops
    those first, before any canonicalising, fingerprinting or encoding, and before the frontier's
    database is asked. A URL enters that set only once admitted, so a URL first met too deep is
    still taken when a shallower page links to it later.
    """

    def __init__(
        self, spider: Spider, scope: Scope, stats: Stats, *, committed: SeenSet | None = None
    ) -> None:
        self.spider = spider
        self.scope = scope
        self.stats = stats
        # On a shared frontier an outcome may be refused after its links were admitted, so a URL
        # admitted here is no proof that it entered the crawl: there, the set is the frontier's
        # own, of the links its commits got accepted (``committed``), and admission only reads it.
        self.remember = committed is None
        self._recent = SeenSet(SEEN_URLS) if committed is None else committed

    def __repr__(self) -> str:
        return f"<Admission spider={self.spider.name!r} {self.scope!r} recent={self._recent!r}>"

    def admit(self, request: Request, parent: Request | None) -> Request | None:
        key = None
        if not request.dont_filter and not request.body:
            key = url_key(request.method, request.url)
            if key in self._recent:
                # Most links of a page: the counter directly, not through Stats.skipped.
                self.stats.duplicates_filtered += 1
                return None
        why = self._problem(request)
        if why is not None:
            self._reject(request, why)
            return None
        depth = request.depth
        if parent is not None and depth <= parent.depth:
            depth = parent.depth + 1
        # Scope first: most refused links are off-site, and they need no copy nor record.
        reason = self.scope.check_url(request.url) or self.scope.check_depth(depth)
        if reason is not None:
            self.stats.skipped(reason)
            return None
        request = _settled(request, depth)
        try:
            request.to_record()
        except SpiderError as error:
            self._reject(request, str(error))
            return None
        if key is not None and self.remember:
            self._recent.add(key)
        return request

    def _reject(self, request: Request, why: str) -> None:
        self.stats.callback_errors += 1
        log.error("request %s rejected: %s", request.url, why)

    def _problem(self, request: Request) -> str | None:
        for name in (request.callback or "parse", request.errback):
            if name is not None and not callable(getattr(self.spider, name, None)):
                return f"callback {name!r} is not a method of {self.spider!r}"
        if request.callback_owner not in (None, self.spider):
            return "its callback is a method of another object"
        if request.meta:
            try:
                own_interval(request.meta)
            except ValueError as error:
                return str(error)
        return None


def _settled(request: Request, depth: int) -> Request:
    """The request as it is stored: its URL spelled as it is sent, at its depth."""
    changes: dict[str, Any] = {}
    url = standard_url(request.url)
    if url != request.url:
        changes["url"] = url
    if depth != request.depth:
        changes["depth"] = depth
    return request.replace(**changes) if changes else request
