"""Which discovered requests belong in the crawl: allowed domains and depth."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from crawler.errors import SkipReason
from crawler.request import Request
from crawler.urls import domain, fetchable, hostname

log = logging.getLogger("crawler.scope")


class Scope:
    """``Scope(["example.com"], max_depth=3).check(request)`` -> None or a SkipReason.

    A domain allows itself and its subdomains; no domains means every host is allowed. A URL
    the crawler may not request at all (see ``urls.fetchable``: userinfo, bad host names) is a
    bad URL wherever it comes from: a start URL, a link or a redirect. An entry with a scheme,
    port or path (``"127.0.0.1:8765"``, ``"http://a.test/"``) stands for its host, with a warning.
    """

    def __init__(self, allowed_domains: Sequence[str], max_depth: int | None) -> None:
        hosts = {entry: host_name(entry) for entry in allowed_domains}
        for entry, host in hosts.items():
            if host != entry:
                log.warning(
                    "allowed_domains accepts only host names: %r is read as %r", entry, host
                )
        self.domains = tuple(domain(host.strip(".")) for host in hosts.values())
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"<Scope domains={self.domains} max_depth={self.max_depth}>"

    def allows_url(self, url: str) -> bool:
        return self.check_url(url) is None

    def check_url(self, url: str) -> SkipReason | None:
        if not fetchable(url):
            return SkipReason.BAD_URL
        if not self.domains:
            return None
        host = hostname(url)
        if any(host == d or host.endswith("." + d) for d in self.domains):
            return None
        return SkipReason.OFFSITE

    def check_depth(self, depth: int) -> SkipReason | None:
        too_deep = self.max_depth is not None and depth > self.max_depth
        return SkipReason.TOO_DEEP if too_deep else None

    def check(self, request: Request) -> SkipReason | None:
        return self.check_url(request.url) or self.check_depth(request.depth)


def host_name(entry: str) -> str:
    """The host an ``allowed_domains`` entry names: ``entry`` itself unless it holds a scheme,
    a port or a path, which are dropped.

    >>> host_name("http://127.0.0.1:8765/books")
    '127.0.0.1'
    """
    if not any(mark in entry for mark in ":/?#"):
        return entry
    without_scheme = entry.split("://", 1)[-1]
    # hostname() reads what the URL standard accepts; a bad port still leaves the host before it.
    return hostname(f"http://{without_scheme}") or re.split(r"[:/?#]", without_scheme)[0]
