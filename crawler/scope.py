"""Which discovered requests belong in the crawl: allowed domains and depth."""

from __future__ import annotations

from collections.abc import Sequence

from crawler.errors import SkipReason
from crawler.request import Request
from crawler.urls import domain, hostname, is_http


class Scope:
    """``Scope(["example.com"], max_depth=3).check(request)`` -> None or a SkipReason.

    A domain allows itself and its subdomains; no domains means every host is allowed.
    """

    def __init__(self, allowed_domains: Sequence[str], max_depth: int | None) -> None:
        self.domains = tuple(domain(d.strip(".")) for d in allowed_domains)
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"<Scope domains={self.domains} max_depth={self.max_depth}>"

    def allows_url(self, url: str) -> bool:
        if not is_http(url):
            return False
        if not self.domains:
            return True
        host = hostname(url)
        return any(host == d or host.endswith("." + d) for d in self.domains)

    def check(self, request: Request) -> SkipReason | None:
        if not is_http(request.url):
            return SkipReason.BAD_URL
        if not self.allows_url(request.url):
            return SkipReason.OFFSITE
        if self.max_depth is not None and request.depth > self.max_depth:
            return SkipReason.TOO_DEEP
        return None
