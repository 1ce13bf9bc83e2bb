"""The Response a callback receives: decoded text, JSON, CSS selection (selectolax, with
Scrapy's idioms from crawler.selectors) and links."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler import jsondata
from crawler.encoding import BOMS, decode, detect_encoding, lookup
from crawler.errors import SpiderError
from crawler.request import Callback, Request
from crawler.selectors import Selector, SelectorList, select, select_first
from crawler.sniffing import BodyKind, body_kind
from crawler.urls import is_http, join_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("crawler.response")

Node = LexborNode
Link = str | Selector | LexborNode

XPATH_UNSUPPORTED = (
    "xpath() is not supported: use css() (selectolax); ::text and ::attr(name) work as in Scrapy"
)

_BASE_TAG = re.compile(rb"<base", re.IGNORECASE)

# The conformance runner (shared/conformance) peeks at these three to tell a declared encoding
# from the fallback. Detection is crawler.encoding's: its prescan is what decides, not this regex.
_BOMS = BOMS
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE
)


def _known(label: str | None) -> str | None:
    found = lookup(label) if label else None
    return found.codec if found else None


def parse_html(html: str | bytes) -> LexborHTMLParser:
    """A parsed document; lexbor lets go of the GIL while it parses, so a thread may run this
    while the event loop goes on. Bytes are read as UTF-8."""
    return LexborHTMLParser(html)


class Response:
    """A fetched page.

    >>> response.css("h1::text").get()              # doctest: +SKIP
    >>> response.css("a::attr(href)").getall()      # doctest: +SKIP
    >>> yield response.follow(node, callback=self.parse_item)   # doctest: +SKIP

    Only markup is parsed (``response.kind``: HTML or XML). On an image, a PDF or plain text,
    ``css()`` is an empty SelectorList, ``css_first()`` is None and ``follow_all(css=...)``
    yields nothing; ``text``, ``body`` and ``follow(url)`` work as on any page.
    """

    link_limit: int | None = None
    """The most requests ``follow_all`` makes for this page (the crawl's max_links_per_page)."""

    def __init__(
        self,
        url: str,
        status: int,
        headers: httpx.Headers | Mapping[str, str],
        body: bytes,
        *,
        request: Request,
        elapsed: float = 0.0,
    ) -> None:
        # httpx comes with the fetcher, not with this module: a spider file's `from crawler
        # import Response` needs none of it (nor does `crawler list`). Loaded, it costs ~0.1 us.
        import httpx  # noqa: PLC0415 - as said above

        self.url = url
        self.status = status
        # A plain mapping is taken too, so that tests and tools need not import httpx.
        self.headers = headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)
        self.body = body
        self.request = request
        self.elapsed = elapsed
        self._links_followed = 0

    @property
    def meta(self) -> dict[str, Any]:
        return self.request.meta

    @cached_property
    def encoding(self) -> str:
        """The body's encoding as a Python codec name ("utf-8", "cp1252", "gbk"), found as
        browsers find it: a BOM, the Content-Type charset, ``<meta charset>``, then a UTF-8
        sniff (see crawler.encoding). Set it to decode ``text`` otherwise."""
        return detect_encoding(self.headers.get("content-type"), self.body)

    @cached_property
    def text(self) -> str:
        return decode(self.body, self.encoding)

    def json(self) -> Any:
        return jsondata.loads(self.body)

    @cached_property
    def kind(self) -> BodyKind:
        """HTML, XML, text or binary: from the Content-Type, sniffed when there is none."""
        return body_kind(self.headers.get("content-type"), self.body)

    @property
    def is_html(self) -> bool:
        return self.kind is BodyKind.HTML

    @cached_property
    def tree(self) -> LexborHTMLParser:
        """The parsed page (selectolax's lexbor parser); an empty document if it is not markup.

        A large page is parsed off the event loop before its callback runs, so reading this
        costs nothing there; a small one is parsed here, when first read.
        """
        return parse_html(self.text if self.kind.is_markup else "")

    def css(self, selector: str) -> SelectorList:
        """The matches of a CSS selector, with Scrapy's ``::text`` and ``::attr(name)``.

        Raises SelectorError (with the selector in its message) if it cannot be parsed.
        """
        if not self.kind.is_markup:
            return SelectorList()
        return select(self.tree, selector)

    def xpath(self, query: str) -> SelectorList:
        """Not supported: always raises SpiderError (a callback error, as any other) saying
        what to use instead."""
        raise SpiderError(XPATH_UNSUPPORTED)

    def css_first(self, selector: str) -> Selector | None:
        """The first match, or None; ``css(selector).get()`` is the Scrapy spelling."""
        return select_first(self.tree, selector) if self.kind.is_markup else None

    @cached_property
    def base_url(self) -> str:
        """The URL relative links resolve against: ``<base href>`` if the page has one.

        A ``<base href>`` the URL standard rejects is ignored, as browsers ignore it; so is
        one that is not http(s), since no link resolved against it could be fetched.
        """
        has_base = _BASE_TAG.search(self.body, 0, 65536) is not None
        base = self.tree.css_first("base[href]") if has_base else None
        href = base.attributes.get("href") if base is not None else None
        if not href:
            return self.url
        joined = join_url(self.url, href)
        return joined if is_http(joined) else self.url

    def urljoin(self, url: str) -> str:
        return join_url(self.base_url, url)

    def follow(self, url: Link, callback: Callback = None, **kwargs: Any) -> Request:
        """A request for a link of this page: a URL (relative or absolute), an ``<a>`` element
        (its href, else its src) or a selected string (``css("a::attr(href)")[0]``).

        The new request is one level deeper than this response's request.
        """
        if not isinstance(url, str):
            node = url.root if isinstance(url, Selector) else url
            if isinstance(node, str):
                url = node
            else:
                attrs = node.attrs
                href = attrs.get("href") or attrs.get("src")
                if href is None:
                    raise ValueError(f"<{node.tag}> has no href or src to follow")
                url = href
        kwargs.setdefault("depth", self.request.depth + 1)
        return Request(self.urljoin(url), callback or self.request.callback, **kwargs)

    def follow_all(
        self,
        urls: Iterable[Link] | None = None,
        callback: Callback = None,
        *,
        css: str | None = None,
        **kwargs: Any,
    ) -> Iterator[Request]:
        """Requests for many links: ``follow_all(css="li.next a")``,
        ``follow_all(css="a::attr(href)")`` or ``follow_all(urls=[...])``.

        Links that are not http(s) (mailto:, javascript:, ...) are skipped. A page yields at most
        ``link_limit`` requests over all its calls: each costs the event loop a few microseconds,
        and a page of half a million links would hold it for seconds.
        """
        if (urls is None) == (css is None):
            raise ValueError("follow_all takes exactly one of urls= and css=")
        targets: Iterable[Link] = urls if urls is not None else self.css(css or "")
        for target in targets:
            href = _href(target)
            if href and not href.lstrip().startswith("#"):
                request = self.follow(href, callback, **kwargs)
                if is_http(request.url):
                    if self.link_limit is not None and self._links_followed >= self.link_limit:
                        log.warning(
                            "%s: links past max_links_per_page=%d dropped",
                            self.url,
                            self.link_limit,
                        )
                        return
                    self._links_followed += 1
                    yield request

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


def _href(target: Link) -> str | None:
    node = target.root if isinstance(target, Selector) else target
    return node if isinstance(node, str) else node.attrs.get("href")
