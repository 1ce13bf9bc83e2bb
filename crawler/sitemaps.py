"""Sitemaps read safely: urlsets and indexes, plain or gzipped, parsed incrementally under caps.

The XML goes through defusedxml (stdlib expat, entity declarations refused), so a billion-laughs
or external-entity sitemap fails with ``SitemapError`` instead of eating memory or the network.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal, TypedDict
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from crawler.errors import SitemapError
from crawler.urls import join_url

log = logging.getLogger("crawler.sitemaps")

# The sitemaps.org protocol's limits for one file.
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # uncompressed
MAX_SITEMAP_URLS = 50_000
GZIP_MAGIC = b"\x1f\x8b"
_READ_BYTES = 64 * 1024
_YEAR_MONTH = re.compile(r"(\d{4})(?:-(\d{2}))?")
_ROBOTS_SITEMAP = re.compile(r"^\s*sitemap\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)

SitemapType = Literal["urlset", "sitemapindex"]
_TYPES: dict[str, SitemapType] = {"urlset": "urlset", "sitemapindex": "sitemapindex"}


class SitemapEntry(TypedDict):
    """One ``<url>`` of a urlset or ``<sitemap>`` of an index; absent fields are None (or empty).

    ``alternate`` lists the hrefs of ``<xhtml:link rel="alternate">`` as Scrapy does;
    ``hreflang`` maps each of their languages to its href.
    """

    loc: str
    lastmod: datetime | str | None
    changefreq: str | None
    priority: float | None
    alternate: list[str]
    hreflang: dict[str, str]


def parse_lastmod(value: str) -> datetime | str:
    """A W3C datetime as an aware datetime (UTC when it names no zone); the text if it is not one.

    >>> parse_lastmod("2024-05-01")
    datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_lastmod("yesterday")
    'yesterday'
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # fromisoformat takes every W3C form but the two shortest: YYYY and YYYY-MM.
        short = _YEAR_MONTH.fullmatch(value)
        if short is None or not 1 <= int(short[2] or 1) <= 12:
            return value
        parsed = datetime(int(short[1]), int(short[2] or 1), 1)
    # Naive and aware datetimes do not compare: make them all aware, so filters can compare.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def sitemap_urls_from_robots(text: str, base_url: str) -> list[str]:
    """The ``Sitemap:`` URLs a robots.txt lists, made absolute against its own URL."""
    return [join_url(base_url, url) for url in _ROBOTS_SITEMAP.findall(text)]


class _Body:
    """The body as the XML parser reads it: gunzipped when it is gzip, never past ``max_bytes``.

    A ``.xml.gz`` file arrives as gzip bytes (the fetcher undoes Content-Encoding only), and a
    few kilobytes of it may inflate to gigabytes: it is inflated a read at a time.
    """

    def __init__(self, body: bytes, max_bytes: int) -> None:
        self._body = memoryview(body)
        self._at = 0
        self._read = 0
        self._max_bytes = max_bytes
        self._inflater = zlib.decompressobj(wbits=31) if body[:2] == GZIP_MAGIC else None

    def read(self, size: int = -1) -> bytes:
        size = _READ_BYTES if size < 0 else size
        chunk = self._take(size) if self._inflater is None else self._inflate(size)
        allowed = self._max_bytes - self._read
        if len(chunk) > allowed:
            # What fits is still parsed: the entries in it come out before the error.
            if allowed <= 0:
                raise SitemapError(f"over {self._max_bytes} bytes uncompressed")
            chunk = chunk[:allowed]
        self._read += len(chunk)
        return chunk

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._body[self._at : self._at + size])
        self._at += len(chunk)
        return chunk

    def _inflate(self, size: int) -> bytes:
        assert self._inflater is not None
        inflater = self._inflater
        while not inflater.eof:
            data = inflater.unconsumed_tail or self._take(_READ_BYTES)
            if not data:
                raise SitemapError("gzip data ends early")
            try:
                out = inflater.decompress(data, size)
            except zlib.error as exc:
                raise SitemapError(f"bad gzip data ({exc})") from None
            if out:
                return out
        return b""


def _local(tag: str) -> str:
    """A tag without its namespace: sitemaps in the wild use the wrong one, or none."""
    return tag.rpartition("}")[2]


class Sitemap:
    """One sitemap document, read as it is iterated; like Scrapy's ``Sitemap``.

    >>> sitemap = Sitemap(body, url=response.url)              # doctest: +SKIP
    >>> for entry in sitemap: print(sitemap.type, entry["loc"], entry["lastmod"])  # doctest: +SKIP

    ``type`` is ``"urlset"`` or ``"sitemapindex"`` once iteration has started. Entries past
    ``max_urls`` are dropped with a warning; malformed XML, entity declarations (billion laughs,
    external entities), bad gzip or a body over ``max_bytes`` raise ``SitemapError`` at the point
    they are met, after the entries before it.
    """

    def __init__(
        self,
        body: bytes,
        *,
        url: str = "",
        max_bytes: int = MAX_SITEMAP_BYTES,
        max_urls: int = MAX_SITEMAP_URLS,
    ) -> None:
        self.url = url
        self.type: SitemapType | None = None
        self.max_urls = max_urls
        self.count = 0
        self._body = _Body(body, max_bytes)

    def __repr__(self) -> str:
        return f"<Sitemap {self.url or '(body)'} type={self.type} entries={self.count}>"

    def __iter__(self) -> Iterator[SitemapEntry]:
        try:
            yield from self._entries()
        except (ParseError, DefusedXmlException, SitemapError) as exc:
            raise SitemapError(f"sitemap {self.url or '(body)'}: {exc}") from None

    def _entries(self) -> Iterator[SitemapEntry]:
        root: Element | None = None
        depth = 0
        events = iterparse(self._body, ("start", "end"), forbid_entities=True, forbid_external=True)
        for event, element in events:
            if event == "start":
                depth += 1
                if root is None:
                    root = element
                    self.type = self._root_type(element)
                continue
            depth -= 1
            if depth != 1 or root is None:
                continue
            entry = _entry(element)
            # Parsed children are let go of, so memory stays flat however long the file is.
            root.clear()
            if entry is None:
                continue
            if self.count >= self.max_urls:
                log.warning("sitemap %s: entries past %d dropped", self.url, self.max_urls)
                return
            self.count += 1
            yield entry

    def _root_type(self, root: Element) -> SitemapType:
        name = _local(root.tag)
        if (kind := _TYPES.get(name)) is not None:
            return kind
        raise SitemapError(f"<{name}> is not a sitemap's root (urlset or sitemapindex)")


def _entry(element: Element) -> SitemapEntry | None:
    fields: dict[str, str] = {}
    alternate: list[str] = []
    hreflang: dict[str, str] = {}
    for child in element:
        name = _local(child.tag)
        if name == "link":
            href = (child.get("href") or "").strip()
            if child.get("rel") == "alternate" and href:
                alternate.append(href)
                if lang := child.get("hreflang"):
                    hreflang[lang] = href
        elif name in ("loc", "lastmod", "changefreq", "priority"):
            fields[name] = (child.text or "").strip()
    if not (loc := fields.get("loc")):
        return None
    lastmod = fields.get("lastmod")
    return SitemapEntry(
        loc=loc,
        lastmod=parse_lastmod(lastmod) if lastmod else None,
        changefreq=fields.get("changefreq") or None,
        priority=_priority(fields.get("priority")),
        alternate=alternate,
        hreflang=hreflang,
    )


def _priority(value: str | None) -> float | None:
    try:
        priority = float(value) if value else None
    except ValueError:
        return None
    return priority if priority is not None and 0.0 <= priority <= 1.0 else None
