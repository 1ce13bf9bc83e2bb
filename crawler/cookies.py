"""A crawl's cookie jar: the standard library's cookie rules, with the bounds a browser keeps.

What a site can make the crawler remember and send is capped (RFC 6265 section 6.1 gives the
figures): cookies per domain, bytes per cookie, domains, cookies in all, and the bytes of the
Cookie header built for one request. Cookies live as long as the crawl's fetcher, never on disk.
"""

from __future__ import annotations

import itertools
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.client import HTTPResponse
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import cast

MAX_COOKIE_BYTES = 4096
"""Bytes of name and value (RFC 6265: at least 4096); a larger cookie is ignored, as browsers do."""
MAX_COOKIE_DOMAINS = 1000
"""Domains that hold cookies; past this the domain least recently given a cookie loses them all."""
MAX_COOKIES = 3000
"""Cookies in the whole jar (RFC 6265: at least 3000), so that many domains cannot add up."""
MAX_COOKIE_JARS = 1000
"""Sessions (``meta["cookiejar"]`` keys) kept at once; past this the least recently used goes."""

_Key = tuple[str, str, str]  # (cookie.domain, path, name): how CookieJar files a cookie
_PORT = re.compile(r":\d+$")


class _Policy(DefaultCookiePolicy):
    """The default rules; ``at(now)`` sets the clock that CookieJar sets itself before it asks
    ``return_ok`` (a cookie past its expiry is not sent)."""

    def at(self, now: int) -> _Policy:
        self._now = now
        return self


class _SetCookies:
    """A response as CookieJar reads one: ``info().get_all(name, default)``, nothing more."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = list(values)

    def info(self) -> _SetCookies:
        return self

    def get_all(self, name: str, default: list[str]) -> list[str]:
        return self.values if name.lower() == "set-cookie" else default


class BoundedCookieJar(CookieJar):
    """An ``http.cookiejar.CookieJar`` that cannot grow without bound.

    >>> jar = BoundedCookieJar(max_cookies_per_domain=50, max_cookie_header_bytes=8192)
    >>> jar.store("http://example.com/login", ["session=abc; Path=/"])
    >>> jar.cookie_header("http://example.com/account")
    'session=abc'

    A domain keeps its ``max_cookies_per_domain`` most recently set cookies (``.example.com``
    and ``example.com`` count as one domain). A cookie whose name and value pass
    ``max_cookie_bytes`` is ignored. Past ``max_domains`` domains, the domain least recently
    given a cookie loses them all; past ``max_cookies`` cookies, it loses its oldest. The Cookie
    header for a request holds the most recently set of its cookies that fit in
    ``max_cookie_header_bytes``; the others are left out of that request, not dropped.
    """

    def __init__(
        self,
        *,
        max_cookies_per_domain: int,
        max_cookie_header_bytes: int,
        max_cookie_bytes: int = MAX_COOKIE_BYTES,
        max_domains: int = MAX_COOKIE_DOMAINS,
        max_cookies: int = MAX_COOKIES,
    ) -> None:
        # RFC 6265, as browsers do: a cookie set without a Domain attribute goes back to its own
        # host only, not to that host's subdomains as well.
        self._rules = _Policy(strict_ns_domain=DefaultCookiePolicy.DomainStrictNonDomain)
        super().__init__(self._rules)
        self.max_cookies_per_domain = max_cookies_per_domain
        self.max_cookie_header_bytes = max_cookie_header_bytes
        self.max_cookie_bytes = max_cookie_bytes
        self.max_domains = max_domains
        self.max_cookies = max_cookies
        # Domain -> its cookies, each with a number saying when it was set. Both levels are in
        # order of setting (a cookie set again moves to the end), so the oldest is first.
        self._domains: dict[str, dict[_Key, tuple[int, Cookie]]] = {}
        self._count = 0
        self._order = itertools.count()
        # Cookies per (domain, path) and per domain as CookieJar files them, to know when one
        # of its tables is left empty.
        self._tables: Counter[tuple[str, str | None]] = Counter()

    def __repr__(self) -> str:
        return (
            f"<BoundedCookieJar cookies={self._count} domains={len(self._domains)}"
            f" max_per_domain={self.max_cookies_per_domain}"
            f" max_header_bytes={self.max_cookie_header_bytes}>"
        )

    def store(self, url: str, set_cookies: Sequence[str]) -> None:
        """Keep what the ``Set-Cookie`` values of a response to ``url`` may set."""
        if set_cookies:
            response = cast(HTTPResponse, _SetCookies(set_cookies))
            self.extract_cookies(response, urllib.request.Request(url))

    def cookie_header(self, url: str) -> str | None:
        """The Cookie header for a request to ``url``, or None when no cookie is due."""
        if not self._count:
            return None
        request = urllib.request.Request(url)
        rules = self._rules.at(int(time.time()))
        due = [
            (order, cookie)
            for domain in _domains_of(_host(url))
            for order, cookie in self._domains.get(domain, {}).values()
            if rules.domain_return_ok(cookie.domain, request)
            and rules.path_return_ok(cookie.path, request)
            and rules.return_ok(cookie, request)
        ]
        return _header(due, self.max_cookie_header_bytes)

    def set_cookie(self, cookie: Cookie) -> None:
        if _size(cookie) > self.max_cookie_bytes:
            return
        super().set_cookie(cookie)
        domain = cookie.domain.lstrip(".")
        cookies = self._domains.pop(domain, {})
        self._domains[domain] = cookies  # now the domain most recently given a cookie
        key = (cookie.domain, cookie.path, cookie.name)
        if cookies.pop(key, None) is None:
            self._count += 1
            self._tables[key[:2]] += 1
            self._tables[cookie.domain, None] += 1
        cookies[key] = (next(self._order), cookie)
        while len(cookies) > self.max_cookies_per_domain:
            self.clear(*next(iter(cookies)))
        while len(self._domains) > self.max_domains:
            for oldest in list(next(iter(self._domains.values()))):
                self.clear(*oldest)
        while self._count > self.max_cookies:
            self.clear(*next(iter(next(iter(self._domains.values())))))

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        super().clear(domain, path, name)
        if domain is None:
            self._domains.clear()
            self._tables.clear()
            self._count = 0
        else:
            self._unlist(domain, path, name)

    def _unlist(self, cookie_domain: str, path: str | None, name: str | None) -> None:
        """Forget the cookies CookieJar has just cleared, and drop the tables it leaves empty:
        its ``clear`` of one cookie keeps the path's table, and of a path the domain's."""
        domain = cookie_domain.lstrip(".")
        cookies = self._domains.get(domain, {})
        if name is not None and path is not None:
            gone = [key] if (key := (cookie_domain, path, name)) in cookies else []
        else:
            gone = [key for key in cookies if key[0] == cookie_domain and path in (None, key[1])]
        for key in gone:
            del cookies[key]
            self._count -= 1
            if self._emptied((cookie_domain, key[1])) and name is not None:
                super().clear(cookie_domain, key[1])
            if self._emptied((cookie_domain, None)) and path is not None:
                super().clear(cookie_domain)
        if not cookies:
            self._domains.pop(domain, None)

    def _emptied(self, table: tuple[str, str | None]) -> bool:
        self._tables[table] -= 1
        if self._tables[table]:
            return False
        del self._tables[table]
        return True


class CookieJars:
    """One BoundedCookieJar per session, as Scrapy's ``meta["cookiejar"]`` keys them.

    >>> jars = CookieJars(lambda: BoundedCookieJar(max_cookies_per_domain=50,
    ...                                            max_cookie_header_bytes=8192))
    >>> jars.get("alice") is jars.get("alice") is not jars.get(None)
    True

    ``None`` is the crawl's default session, always kept. Past ``max_jars`` other sessions,
    the least recently used one is let go with its cookies (a later request in it starts
    afresh), so a spider that opens a session per page cannot grow memory without bound.
    """

    def __init__(
        self, new_jar: Callable[[], BoundedCookieJar], max_jars: int = MAX_COOKIE_JARS
    ) -> None:
        self.new_jar = new_jar
        self.max_jars = max_jars
        self.default = new_jar()
        self._sessions: dict[str, BoundedCookieJar] = {}

    def __repr__(self) -> str:
        return f"<CookieJars sessions={len(self._sessions)} max_jars={self.max_jars}>"

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session: str | None) -> BoundedCookieJar:
        if session is None:
            return self.default
        jar = self._sessions.pop(session, None)
        if jar is None:
            jar = self.new_jar()
            if len(self._sessions) >= self.max_jars:
                del self._sessions[next(iter(self._sessions))]
        self._sessions[session] = jar  # now the most recently used
        return jar


def with_cookies(header: str | None, own: Mapping[str, str]) -> str | None:
    """A Cookie header with a request's own cookies first; a jar cookie of the same name is
    left out, so the request's value is the one the server reads."""
    if not own:
        return header
    jar_parts = [
        part for part in (header or "").split("; ") if part and part.partition("=")[0] not in own
    ]
    return "; ".join([*(f"{name}={value}" for name, value in own.items()), *jar_parts])


class NoCookieJar(CookieJar):
    """Keeps nothing. Given to httpx as its client's own jar, which would otherwise keep every
    cookie, unbounded, and copy them all into each request it builds."""

    def extract_cookies(self, response: HTTPResponse, request: urllib.request.Request) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None


def _header(due: list[tuple[int, Cookie]], limit: int) -> str | None:
    """``name=value; ...`` of the most recently set of ``due`` that fit in ``limit`` bytes,
    longer paths first, then the earlier set first (RFC 6265 section 5.4)."""
    kept: list[tuple[int, int, str]] = []
    used = 0
    for order, cookie in sorted(due, key=lambda pair: pair[0], reverse=True):
        text = cookie.name if cookie.value is None else f"{cookie.name}={cookie.value}"
        cost = len(text.encode()) + (2 if kept else 0)  # and "; " before it
        if used + cost <= limit:
            kept.append((-len(cookie.path), order, text))
            used += cost
    return "; ".join(text for _, _, text in sorted(kept)) or None


def _size(cookie: Cookie) -> int:
    return len(cookie.name.encode()) + len((cookie.value or "").encode())


def _host(url: str) -> str:
    """The host as CookieJar names it: the URL's authority without its port, in lower case."""
    return _PORT.sub("", urllib.parse.urlsplit(url).netloc, 1).lower()


def _domains_of(host: str) -> Iterator[str]:
    """Every domain whose cookies may go to ``host``: the host and its parents. CookieJar files
    the cookies of a dotless host (``localhost``) under ``localhost.local``."""
    names = [host] if "." in host else [host, host + ".local"]
    for name in names:
        labels = name.split(".")
        for start in range(len(labels)):
            yield ".".join(labels[start:])
