"""LinkExtractor: the links of a page that pass a set of filters, Scrapy's spelling and meaning."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crawler.urls import canonicalize as canonical_url
from crawler.urls import domain, hostname, is_http

if TYPE_CHECKING:
    from crawler.response import Node, Response

Patterns = str | re.Pattern[str] | Iterable[str | re.Pattern[str]]

# Scrapy's IGNORED_EXTENSIONS, plus "gz": links to files a spider cannot parse.
IGNORED_EXTENSIONS: tuple[str, ...] = (
    # archives
    *("7z", "7zip", "bz2", "gz", "rar", "tar", "tar.gz", "xz", "zip"),
    # images
    *("mng", "pct", "bmp", "gif", "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff", "ai"),
    *("drw", "dxf", "eps", "ps", "svg", "cdr", "ico", "webp"),
    # audio
    *("mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff"),
    # video
    *("3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4a", "m4v"),
    *("flv", "webm"),
    # office suites
    *("xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx", "ppt", "pptm", "pptx", "pps"),
    *("doc", "docb", "docm", "docx", "dotm", "dotx", "odt", "ods", "odg", "odp"),
    # other
    *("css", "pdf", "exe", "bin", "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js", "hqx"),
)


@dataclass(frozen=True, slots=True)
class Link:
    """One link of a page: its absolute URL (without the fragment, which no server sees), the
    anchor text with whitespace collapsed, the fragment, and whether ``rel`` says nofollow."""

    url: str
    text: str = ""
    fragment: str = ""
    nofollow: bool = False


def _compile(patterns: Patterns) -> tuple[re.Pattern[str], ...]:
    if isinstance(patterns, (str, re.Pattern)):
        patterns = (patterns,)
    return tuple(re.compile(p) for p in patterns)


def _names(values: str | Iterable[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


def _in_domains(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


class LinkExtractor:
    """Finds the links of a page that pass every filter given.

    >>> extractor = LinkExtractor(allow=r"/catalogue/", deny_domains="ads.example")
    >>> [link.url for link in extractor.extract_links(response)]   # doctest: +SKIP

    ``allow``/``deny`` and ``restrict_text`` are regular expressions searched in the absolute
    URL and in the link text; a link must match one ``allow`` (if any) and no ``deny``.
    Domains match themselves and their subdomains. ``restrict_css`` keeps the links inside the
    matching parts of the page. Links to files with a ``deny_extensions`` extension (by default
    ``IGNORED_EXTENSIONS``; ``()`` keeps them all), and links that are not http(s), are dropped.
    ``unique`` drops links whose canonical URL came before; ``canonicalize`` also returns that
    canonical URL. ``process_value`` may rewrite or drop (return None) each attribute value.
    The first four arguments may be given by position, as in Scrapy (where the fifth is
    ``restrict_xpaths``, which has no counterpart here).
    """

    def __init__(
        self,
        allow: Patterns = (),
        deny: Patterns = (),
        allow_domains: str | Iterable[str] = (),
        deny_domains: str | Iterable[str] = (),
        *,
        restrict_css: str | Iterable[str] = (),
        tags: str | Iterable[str] = ("a", "area"),
        attrs: str | Iterable[str] = ("href",),
        canonicalize: bool = False,
        unique: bool = True,
        process_value: Callable[[str], str | None] | None = None,
        deny_extensions: str | Iterable[str] | None = None,
        restrict_text: Patterns = (),
        strip: bool = True,
    ) -> None:
        self.allow_res = _compile(allow)
        self.deny_res = _compile(deny)
        # Spelled as URLs spell hosts (lower case, IDNA ASCII), which is what they are matched to.
        self.allow_domains = tuple(domain(d.strip(".")) for d in _names(allow_domains))
        self.deny_domains = tuple(domain(d.strip(".")) for d in _names(deny_domains))
        self.restrict_css = _names(restrict_css)
        self.tags = tuple(t.lower() for t in _names(tags))
        self.attrs = tuple(a.lower() for a in _names(attrs))
        self.canonicalize = canonicalize
        self.unique = unique
        self.process_value = process_value
        extensions = IGNORED_EXTENSIONS if deny_extensions is None else _names(deny_extensions)
        self.deny_extensions = tuple("." + e.lower().lstrip(".") for e in extensions)
        self.restrict_text = _compile(restrict_text)
        self.strip = strip
        self._selector = ", ".join(self.tags)

    def extract_links(self, response: Response) -> list[Link]:
        """The page's links that pass the filters, in document order."""
        seen: set[str] = set()
        links = []
        for link in self._links(response):
            if not self.matches(link.url):
                continue
            if self.restrict_text and not any(r.search(link.text) for r in self.restrict_text):
                continue
            if self.unique:
                # Right after the URL was parsed for is_http, so crawler.urls' cache has it.
                key = link.url if self.canonicalize else canonical_url(link.url)
                if key in seen:
                    continue
                seen.add(key)
            links.append(link)
        return links

    def matches(self, url: str) -> bool:
        """Whether an absolute URL passes the pattern, domain and extension filters."""
        if self.allow_res and not any(r.search(url) for r in self.allow_res):
            return False
        if any(r.search(url) for r in self.deny_res):
            return False
        if self.allow_domains or self.deny_domains:
            host = hostname(url)
            if self.allow_domains and not _in_domains(host, self.allow_domains):
                return False
            if _in_domains(host, self.deny_domains):
                return False
        if not self.deny_extensions:
            return True
        path = url.partition("://")[2].partition("?")[0].partition("/")[2].lower()
        return not path.endswith(self.deny_extensions)

    def _nodes(self, response: Response) -> Iterator[Node]:
        # Only response.tree: it is the empty document for a page that is not markup.
        if not self.restrict_css:
            yield from response.tree.css(self._selector)
            return
        for region in response.tree.css(", ".join(self.restrict_css)):
            if region.tag in self.tags:
                yield region
            yield from region.css(self._selector)

    def _links(self, response: Response) -> Iterator[Link]:
        for node in self._nodes(response):
            attributes = node.attributes
            for attr in self.attrs:
                value = attributes.get(attr)
                if value is None:
                    continue
                if self.strip:
                    value = value.strip()
                if self.process_value is not None and (value := self.process_value(value)) is None:
                    continue
                if (link := self._link(response, node, value)) is not None:
                    yield link

    def _link(self, response: Response, node: Node, value: str) -> Link | None:
        # A bare "#section" names a place on this very page: not a link to crawl.
        if not value or value.startswith("#"):
            return None
        url, _, fragment = response.urljoin(value).partition("#")
        if not is_http(url):
            return None
        if self.canonicalize:
            url = canonical_url(url)
        rel = (node.attributes.get("rel") or "").lower().split()
        text = " ".join((node.text(deep=True) or "").split())
        return Link(url, text, fragment, "nofollow" in rel)

    def __repr__(self) -> str:
        allow = [r.pattern for r in self.allow_res]
        return f"<LinkExtractor allow={allow} tags={list(self.tags)} attrs={list(self.attrs)}>"
