"""Scrapy's selector idioms over lexbor (crawler.selectors): ``::text``, ``::attr()``, get/getall,
re/re_first, attrib, chaining; selectolax's node API kept; bad selectors as callback errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Response, Selector, SelectorList, Spider, SpiderError
from crawler.request import Request
from crawler.selectors import SelectorError
from tests.crawling import crawl
from tests.site import QUOTES_PAGES, TestSite

PAGE = b"""<!doctype html><html><head><title>Quotes</title></head><body>
<h1 class="t">Quotes <b>to</b> scrape</h1>
<div class="quote" data-n="1"><span class="text">One &amp; two</span>
  <small class="author">Ann</small><a href="/author/ann" TITLE="About">about</a></div>
<div class="quote" data-n="2"><span class="text">Three</span>
  <small class="author">Bob</small><a href="/author/bob">about</a></div>
<p id="p">t<i>n</i>tail</p>
<p class="price">Price: 12.50 EUR, was 15.00 EUR</p>
<a name="anchor-without-href">x</a>
</body></html>"""


def response(body: bytes = PAGE, content_type: str = "text/html") -> Response:
    url = "http://example.test/quotes/1"
    headers = httpx.Headers({"content-type": content_type})
    return Response(url, 200, headers, body, request=Request(url))


def test_text_is_the_text_nodes_directly_inside_each_element() -> None:
    page = response()
    assert page.css("h1::text").getall() == ["Quotes ", " scrape"]
    assert page.css("h1::text").get() == "Quotes "
    assert page.css("p#p::text").getall() == ["t", "tail"]


def test_descendant_text_spellings() -> None:
    page = response()
    assert page.css("p#p *::text").getall() == ["n"]
    assert page.css("p#p ::text").getall() == ["n"]  # a bare combinator means "*"
    assert page.css("h1 > ::text").getall() == ["to"]
    # Every element's own text, in document order even though the matches nest.
    assert page.css("p#p::text, p#p i::text").getall() == ["t", "n", "tail"]
    assert page.css("p#p").css("*::text").getall() == ["t", "n", "tail"]
    assert page.css("h1 *::text, h1::text").getall() == ["Quotes ", "to", " scrape"]


def test_a_selector_includes_itself_as_in_scrapy() -> None:
    quote = response().css("div.quote")[0]
    assert quote.css("div.quote").get() == quote.get()
    texts = [text for text in quote.css("*::text").getall() if text.strip()]
    assert texts == ["One & two", "Ann", "about"]
    assert quote.css("::text").getall() == ["\n  "]  # the quote's own text: whitespace only


def test_attr_values_and_attrib() -> None:
    page = response()
    assert page.css("a::attr(href)").getall() == ["/author/ann", "/author/bob"]
    assert page.css("a::attr(title)").getall() == ["About"]  # names are case-insensitive
    assert page.css("a::attr( HREF )").get() == "/author/ann"
    assert page.css("div.quote").attrib == {"class": "quote", "data-n": "1"}
    assert page.css("div.quote")[1].attrib["data-n"] == "2"
    assert page.css("div.missing").attrib == {}
    assert page.css("h1::text")[0].attrib == {}


def test_get_of_elements_is_outer_html_and_defaults() -> None:
    page = response()
    assert page.css("small.author").get() == '<small class="author">Ann</small>'
    assert page.css("small.author").getall() == [
        '<small class="author">Ann</small>',
        '<small class="author">Bob</small>',
    ]
    assert page.css("h2::text").get() is None
    assert page.css("h2::text").get(default="none") == "none"
    assert page.css("h2::text").getall() == []
    assert page.css("small::text").extract_first() == "Ann"
    assert page.css("small::text").extract() == ["Ann", "Bob"]


def test_chaining_in_a_loop_and_on_lists() -> None:
    page = response()
    got = [
        {"text": q.css("span.text::text").get(), "author": q.css("small.author::text").get()}
        for q in page.css("div.quote")
    ]
    assert got == [{"text": "One & two", "author": "Ann"}, {"text": "Three", "author": "Bob"}]
    assert page.css("div.quote").css("small::text").getall() == ["Ann", "Bob"]
    assert page.css("div.quote")[1].css("a::attr(href)").get() == "/author/bob"
    assert page.css("h1::text")[0].css("b") == []  # a selected string has no elements


def test_lists_index_slice_and_iterate_as_selectors() -> None:
    found = response().css("div.quote")
    assert isinstance(found, SelectorList)
    assert len(found) == 2
    assert isinstance(found[0], Selector)
    assert isinstance(found[-1:], SelectorList)
    assert found[-1:].css("small::text").getall() == ["Bob"]
    assert [q.attrib["data-n"] for q in found] == ["1", "2"]
    assert repr(found[0].css("small::text")[0]) == "<Selector data='Ann'>"


def test_re_and_re_first() -> None:
    page = response()
    price = page.css("p.price::text")
    assert price.re(r"\d+\.\d+") == ["12.50", "15.00"]
    assert price.re(r"(\d+)\.(\d+)") == ["12", "50", "15", "00"]  # groups, flattened
    assert price.re(r"was (?P<extract>[\d.]+)") == ["15.00"]
    assert price.re(re.compile(r"price", re.IGNORECASE)) == ["Price"]
    assert price.re_first(r"\d+\.\d+") == "12.50"
    assert price.re_first(r"GBP") is None
    assert price.re_first(r"GBP", default="-") == "-"
    assert page.css("p.missing").re_first(r".", default="-") == "-"
    assert page.css("div.quote")[0].re_first(r"data-n=\"(\d)\"") == "1"


def test_re_unescapes_entities_but_lt_and_amp_as_scrapy_does() -> None:
    page = response(b"<p>a &amp; b &eacute; &#38; &lt;c&gt;</p>")
    assert page.css("p").re(r"<p>(.*)</p>") == ["a &amp; b \xe9 &amp; &lt;c>"]
    assert page.css("p").re(r"<p>(.*)</p>", replace_entities=False) == [
        "a &amp; b \xe9 &amp; &lt;c&gt;"
    ]


def test_selectolax_node_api_still_works() -> None:
    page = response()
    title = page.css_first("h1.t")
    assert title is not None
    assert title.text() == "Quotes to scrape"
    assert title.text(deep=False, strip=True) == "Quotesscrape"
    assert title.html == '<h1 class="t">Quotes <b>to</b> scrape</h1>'
    assert title.tag == "h1"
    assert title.css_first("b") is not None
    assert title.css_first("i") is None
    assert title.parent is not None  # the rest of lexbor's node API, passed through
    assert title.parent.tag == "body"
    assert [a.attributes.get("href") for a in page.css("div.quote a")] == [
        "/author/ann",
        "/author/bob",
    ]
    assert page.css_first("h1::text") == Selector("Quotes ")
    assert page.css_first("h9") is None


def test_following_elements_and_selected_strings() -> None:
    page = response()
    by_node = page.follow(page.css("div.quote a")[0])
    by_string = page.follow(page.css("div.quote a::attr(href)")[0])
    assert by_node.url == by_string.url == "http://example.test/author/ann"
    hrefs = page.css("a::attr(href)")
    assert [r.url for r in page.follow_all(hrefs)] == [
        "http://example.test/author/ann",
        "http://example.test/author/bob",
    ]
    assert [r.url for r in page.follow_all(css="a::attr(href)")] == [
        "http://example.test/author/ann",
        "http://example.test/author/bob",
    ]
    with pytest.raises(ValueError, match="<a> has no href"):
        page.follow(page.css("a[name]")[0])


def test_pages_that_are_not_markup_select_nothing() -> None:
    page = response(b"<p>plain</p>", "text/plain")
    assert page.css("p::text").getall() == []
    assert page.css("p::text").get(default="-") == "-"
    assert page.css_first("p::text") is None


@pytest.mark.parametrize(
    "selector",
    ["a[", "div >", "p:contains(x)", "a::foo", "a::text, b", "a::attr()", "a::text::text"],
)
def test_a_bad_selector_is_a_clear_error(selector: str) -> None:
    with pytest.raises(SelectorError) as raised:
        response().css(selector)
    assert repr(selector) in str(raised.value)
    assert isinstance(raised.value, SpiderError)
    assert isinstance(raised.value, ValueError)


def test_a_bad_selector_in_chains_and_css_first_too() -> None:
    page = response()
    with pytest.raises(SelectorError, match=re.escape("'a['")):
        page.css_first("a[")
    with pytest.raises(SelectorError):
        page.css("div.quote")[0].css_first("a[")
    with pytest.raises(SelectorError):
        page.css("div.quote").css("a::nope")


def test_is_and_where_match_what_they_name() -> None:
    page = response()
    assert page.css(":is(small, span.text)::text").getall() == ["One & two", "Ann", "Three", "Bob"]
    assert page.css("div:where(.quote) > small::text").getall() == ["Ann", "Bob"]
    assert page.css("div.quote:has(a[title])::attr(data-n)").getall() == ["1"]


class QuotesSpider(Spider):
    name = "quotes"

    async def parse(self, response: Response) -> Any:
        for quote in response.css("div.quote"):
            yield {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("a.tag::text").getall(),
                "n": quote.attrib["data-n"],
            }
        for request in response.follow_all(css="li.next a::attr(href)"):
            yield request


async def test_a_crawl_written_with_scrapy_idioms(site: TestSite, tmp_path: Path) -> None:
    QuotesSpider.start_urls = [site.url("/quotes/1")]
    crawled = await crawl(QuotesSpider, tmp_path)
    assert crawled.stats.callback_errors == 0
    assert sorted(item["n"] for item in crawled.items) == [
        f"{k}-{i}" for k in range(1, QUOTES_PAGES + 1) for i in (1, 2)
    ]
    first = next(item for item in crawled.items if item["n"] == "1-1")
    assert first == {"text": "Quote 1.1 & more", "author": "Author 1", "tags": ["t1", "common"]} | {
        "n": "1-1"
    }


class BadSelectorSpider(Spider):
    name = "bad_selector"

    async def parse(self, response: Response) -> Any:
        yield {"url": response.url}
        for request in response.follow_all(css="li.next a::attr(href)"):
            yield request
        yield {"never": response.css("div.quote::text(").get()}


async def test_a_bad_selector_is_counted_as_a_callback_error(
    site: TestSite, tmp_path: Path
) -> None:
    BadSelectorSpider.start_urls = [site.url("/quotes/1")]
    crawled = await crawl(BadSelectorSpider, tmp_path)
    assert crawled.stats.callback_errors == QUOTES_PAGES  # each page's callback, and no more
    assert len(crawled.items) == QUOTES_PAGES  # what came before the error is kept
    assert crawled.stats.pages_crawled == QUOTES_PAGES
