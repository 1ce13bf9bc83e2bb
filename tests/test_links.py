"""LinkExtractor on pages built in memory: each filter, URL resolution and the Link fields."""

from __future__ import annotations

import re

import httpx
import pytest

from crawler import Link, LinkExtractor, Request, Response

PAGE = "http://shop.test/dir/page.html"


def response(body: str, url: str = PAGE, content_type: str = "text/html") -> Response:
    headers = httpx.Headers({"content-type": content_type})
    return Response(url, 200, headers, body.encode(), request=Request(url))


def urls(extractor: LinkExtractor, body: str, url: str = PAGE) -> list[str]:
    return [link.url for link in extractor.extract_links(response(body, url))]


SHOP = """
<nav class="pager"><a href="page-2.html">next</a></nav>
<div class="items">
  <a href="/item/1">one</a><a href="/item/2">two</a>
  <map><area href="/item/3" alt="three"></map>
</div>
<footer>
  <a href="/private/1">staff</a>
  <a href="http://ads.shop.test/x">ad</a>
  <a href="https://other.test/y">elsewhere</a>
  <a href="HTTP://SHOP.TEST/Item/4">four</a>
</footer>
"""


def test_links_resolve_against_the_page_in_document_order() -> None:
    assert urls(LinkExtractor(), SHOP) == [
        "http://shop.test/dir/page-2.html",
        "http://shop.test/item/1",
        "http://shop.test/item/2",
        "http://shop.test/item/3",
        "http://shop.test/private/1",
        "http://ads.shop.test/x",
        "https://other.test/y",
        "http://shop.test/Item/4",
    ]


def test_allow_and_deny_are_searched_in_the_absolute_url() -> None:
    # "^http://shop" matches a relative href: patterns see the URL after resolution.
    extractor = LinkExtractor(allow=[r"^http://shop\.test/item/", re.compile("/private/")])
    assert urls(extractor, SHOP) == [
        "http://shop.test/item/1",
        "http://shop.test/item/2",
        "http://shop.test/item/3",
        "http://shop.test/private/1",
    ]
    assert urls(LinkExtractor(allow="/item/", deny=r"/item/[23]$"), SHOP) == [
        "http://shop.test/item/1"
    ]
    assert urls(LinkExtractor(deny=("shop",)), SHOP) == ["https://other.test/y"]


def test_domains_match_themselves_and_their_subdomains() -> None:
    assert urls(LinkExtractor(allow_domains="other.test"), SHOP) == ["https://other.test/y"]
    kept = urls(LinkExtractor(allow_domains=["Shop.Test"], deny_domains="ads.shop.test"), SHOP)
    assert "http://ads.shop.test/x" not in kept
    assert "https://other.test/y" not in kept
    assert len(kept) == 6
    assert urls(LinkExtractor(deny_domains="shop.test"), SHOP) == ["https://other.test/y"]
    idn = '<a href="http://www.Bücher.test/a">a</a><a href="http://bucher.test/b">b</a>'
    assert urls(LinkExtractor(allow_domains="bücher.TEST"), idn) == [
        "http://www.xn--bcher-kva.test/a"
    ]


def test_restrict_css_keeps_links_inside_the_regions() -> None:
    assert urls(LinkExtractor(restrict_css="div.items"), SHOP) == [
        "http://shop.test/item/1",
        "http://shop.test/item/2",
        "http://shop.test/item/3",
    ]
    # A region that is itself a link, and several selectors.
    assert urls(LinkExtractor(restrict_css=["nav a", "footer a[href*=other]"]), SHOP) == [
        "http://shop.test/dir/page-2.html",
        "https://other.test/y",
    ]
    assert urls(LinkExtractor(restrict_css="table"), SHOP) == []


def test_files_with_ignored_extensions_are_dropped() -> None:
    body = """
    <a href="a.pdf">a</a><a href="b.JPG">b</a><a href="c.tar.gz">c</a>
    <a href="d.zip?x=1">d</a><a href="e.html">e</a><a href="/gz/">f</a><a href="g.eps">g</a>
    <a href="h.html?file=x.pdf">h</a>
    """
    assert urls(LinkExtractor(), body) == [
        "http://shop.test/dir/e.html",
        "http://shop.test/gz/",
        "http://shop.test/dir/h.html?file=x.pdf",
    ]
    assert len(urls(LinkExtractor(deny_extensions=()), body)) == 8
    assert urls(LinkExtractor(deny_extensions=["html", ".PDF"]), body) == [
        "http://shop.test/dir/b.JPG",
        "http://shop.test/dir/c.tar.gz",
        "http://shop.test/dir/d.zip?x=1",
        "http://shop.test/gz/",
        "http://shop.test/dir/g.eps",
    ]


def test_links_that_cannot_be_fetched_are_dropped() -> None:
    body = """
    <a href="mailto:a@shop.test">m</a><a href="javascript:void(0)">j</a><a href="#top">t</a>
    <a href="http://[::1">bad</a><a href="ftp://shop.test/f">ftp</a><a>no href</a>
    <a href="">empty</a><a href="  /ok  ">ok</a>
    """
    assert urls(LinkExtractor(), body) == ["http://shop.test/ok"]


def test_base_href_is_honoured() -> None:
    body = '<head><base href="http://cdn.shop.test/base/"></head><a href="x">x</a>'
    assert urls(LinkExtractor(), body) == ["http://cdn.shop.test/base/x"]


def test_link_fields_text_fragment_and_nofollow() -> None:
    body = """<a href="/a#reviews" rel="External NoFollow">  Read
      <b>the</b>   reviews </a><a href="/b">b</a>"""
    assert LinkExtractor().extract_links(response(body)) == [
        Link("http://shop.test/a", "Read the reviews", "reviews", nofollow=True),
        Link("http://shop.test/b", "b", "", nofollow=False),
    ]


def test_unique_compares_canonical_urls_and_keeps_the_first() -> None:
    body = """
    <a href="/p?b=2&a=1">first</a><a href="/p?a=1&b=2#x">second</a><a href="/p?a=1&b=2">third</a>
    <a href="/q">q</a>
    """
    links = LinkExtractor().extract_links(response(body))
    assert [(link.url, link.text) for link in links] == [
        ("http://shop.test/p?b=2&a=1", "first"),
        ("http://shop.test/q", "q"),
    ]
    assert len(LinkExtractor(unique=False).extract_links(response(body))) == 4
    assert urls(LinkExtractor(canonicalize=True), body) == [
        "http://shop.test/p?a=1&b=2",
        "http://shop.test/q",
    ]


def test_tags_attrs_strip_and_process_value() -> None:
    body = """
    <img src=" /i.html "><a href="/a" data-url="/d">a</a>
    <a href="javascript:go('/js/1')">js</a>
    """
    assert urls(LinkExtractor(tags="img", attrs="src"), body) == ["http://shop.test/i.html"]
    assert urls(LinkExtractor(tags=["img", "a"], attrs=["src", "data-url"]), body) == [
        "http://shop.test/i.html",
        "http://shop.test/d",
    ]
    # strip=False keeps the spaces; the URL standard then trims them, as browsers do.
    assert urls(LinkExtractor(tags="img", attrs="src", strip=False), body) == [
        "http://shop.test/i.html"
    ]

    def unwrap(value: str) -> str | None:
        found = re.search(r"go\('(.+?)'\)", value)
        return found.group(1) if found else None

    assert urls(LinkExtractor(process_value=unwrap), body) == ["http://shop.test/js/1"]


def test_restrict_text_searches_the_link_text() -> None:
    assert urls(LinkExtractor(restrict_text=[r"^t", "four"]), SHOP) == [
        "http://shop.test/item/2",
        "http://shop.test/Item/4",
    ]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/pdf", b"%PDF-1.7 <a href='/x'>"), ("text/plain", b"<a href='/x'>x</a>")],
)
def test_a_page_that_is_not_markup_has_no_links(content_type: str, body: bytes) -> None:
    page = Response(
        PAGE, 200, httpx.Headers({"content-type": content_type}), body, request=Request(PAGE)
    )
    assert LinkExtractor().extract_links(page) == []


def test_matches_takes_a_url_as_in_scrapy() -> None:
    extractor = LinkExtractor(allow="/item/", deny_domains="ads.shop.test")
    assert extractor.matches("http://shop.test/item/1")
    assert not extractor.matches("http://ads.shop.test/item/1")
    assert not extractor.matches("http://shop.test/item/1.pdf")
    assert not extractor.matches("http://shop.test/list/1")
