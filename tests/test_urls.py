"""Unit tests of crawler.urls: joining links, canonical spellings, politeness keys and request
fingerprints; and a crawl of a page that links its pages in many spellings."""

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ada_url
import httpx
import pytest

from crawler import Spider, urls
from crawler.request import Request
from crawler.response import Response
from crawler.scope import Scope
from crawler.urls import canonicalize, fingerprint, host_of, hostname, is_http, join_url
from tests.crawling import crawl
from tests.site import SPELLINGS, TestSite


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://EXAMPLE.com/a", "http://example.com/a"),
        ("https://Example.COM/Path/To", "https://example.com/Path/To"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com/a#top", "http://example.com/a"),
        ("http://example.com/a?#top", "http://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com?b=1", "http://example.com/?b=1"),
        ("http://example.com/?b=2&a=1&c=0", "http://example.com/?a=1&b=2&c=0"),
        ("http://example.com/?a=1&&b=2&", "http://example.com/?a=1&b=2"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%7eb%41%2D%5F%2e", "http://example.com/a~bA-_."),
        ("http://example.com/%25", "http://example.com/%25"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/%zz", "http://example.com/%25zz"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://example.com/?q=a%2bb&r=%7e", "http://example.com/?q=a%2Bb&r=~"),
        ("http://example.com/?q=a%26b", "http://example.com/?q=a%26b"),
        ("  http://example.com/a  ", "http://example.com/a"),
        ("http://User:Pw@Example.com:80/", "http://User:Pw@example.com/"),
    ],
)
def test_canonicalize(url: str, expected: str) -> None:
    assert canonicalize(url) == expected


def test_canonicalize_keeps_path_case() -> None:
    assert canonicalize("http://example.com/A") != canonicalize("http://example.com/a")


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://Example.com:80/a%7eb/?b=2&a=1#top",
        "http://example.com/a%2f/?z=%41&y=",
        "https://example.com:8443/caf\u00e9?q=a b",
    ],
)
def test_canonicalize_is_idempotent(url: str) -> None:
    once = canonicalize(url)
    assert canonicalize(once) == once


def test_canonicalize_sorts_query_after_normalising_escapes() -> None:
    assert canonicalize("http://example.com/?a=%62&a=a") == canonicalize(
        "http://example.com/?a=b&a=a"
    )


def test_canonicalize_keeps_ipv6_brackets() -> None:
    assert host_of("http://[::1]:8080/a") == "[::1]:8080"
    assert canonicalize("http://[::1]:8080/a") == "http://[::1]:8080/a"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://127.0.0.1:8765/x", "127.0.0.1:8765"),
        ("http://user:pw@Example.com:8080/", "example.com:8080"),
    ],
)
def test_host_of(url: str, expected: str) -> None:
    assert host_of(url) == expected


def test_fingerprint_is_equal_for_canonically_equal_urls() -> None:
    a = fingerprint("GET", "HTTP://Example.com:80/a%7e?b=2&a=1#frag")
    b = fingerprint("get", "http://example.com/a~?a=1&b=2")
    assert a == b
    assert -(2**63) <= a < 2**63


def test_fingerprint_differs_by_url_method_and_body() -> None:
    url = "http://example.com/a"
    prints = {
        fingerprint("GET", url),
        fingerprint("GET", "http://example.com/A"),
        fingerprint("POST", url),
        fingerprint("POST", url, b"x=1"),
        fingerprint("POST", url, b"x=2"),
    }
    assert len(prints) == 5
    assert fingerprint("POST", url, b"x=1") == fingerprint("POST", url, b"x=1")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/", True),
        ("HTTPS://example.com", True),
        ("ftp://example.com/", False),
        ("mailto:a@example.com", False),
        ("javascript:void(0)", False),
        ("/relative/path", False),
        ("http://", False),
        ("http://:80/", False),
        ("", False),
    ],
)
def test_is_http(url: str, expected: bool) -> None:
    assert is_http(url) is expected


@pytest.mark.parametrize("url", ["http://example.com:abc/", "http://example.com:99999/"])
def test_is_http_refuses_a_url_with_a_bad_port(url: str) -> None:
    assert is_http(url) is False


# The URL Standard's reading of links, class by class (join_url).
PAGE = "http://shop.test/books/list.html?page=2#top"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        # tab, CR and LF are dropped anywhere; C0 controls and spaces only at the ends
        ("bo\tok\n-1.ht\rml", "http://shop.test/books/book-1.html"),
        ("\x00\x1f book-1.html \x0b", "http://shop.test/books/book-1.html"),
        ("http://sh\top.test/\na", "http://shop.test/a"),
        ("book 1.html", "http://shop.test/books/book%201.html"),
        ("\u00a0book", "http://shop.test/books/%C2%A0book"),  # not C0: kept, escaped
        # a backslash is a slash in an http(s) URL
        ("\\cart\\view", "http://shop.test/cart/view"),
        ("..\\cart", "http://shop.test/cart"),
        ("\\\\cdn.test\\img", "http://cdn.test/img"),
        ("https:\\\\pay.test\\go", "https://pay.test/go"),
        # dot segments, escaped ones too; never above the root
        ("./a/./b/../c", "http://shop.test/books/a/c"),
        ("../../../../x", "http://shop.test/x"),
        ("a/..", "http://shop.test/books/"),
        ("%2e%2E/x", "http://shop.test/x"),
        ("a/.%2E/b", "http://shop.test/books/b"),
        ("http://shop.test/a/b/%2E./c", "http://shop.test/a/c"),
        # query or fragment only, and empty
        ("?page=3", "http://shop.test/books/list.html?page=3"),
        ("#bottom", "http://shop.test/books/list.html?page=2#bottom"),
        ("", "http://shop.test/books/list.html?page=2"),
        # other hosts: lower case, default port dropped, zero-padded port read as a number
        ("//Other.TEST:80/x", "http://other.test/x"),
        ("HTTPS://other.test:443", "https://other.test/"),
        ("http://other.test:0081/x", "http://other.test:81/x"),
        ("http:///other.test/x", "http://other.test/x"),
        # IDNA hosts to "xn--" (with compatibility mapping), non-ASCII paths escaped
        ("http://Bücher.test/ä", "http://xn--bcher-kva.test/%C3%A4"),
        ("http://\uff33\uff28\uff2f\uff30.test/", "http://shop.test/"),
        # IPv4 in any number form, IPv6 compressed
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://0177.0.0.01/", "http://127.0.0.1/"),
        ("http://[0:0::1]:8080/", "http://[::1]:8080/"),
        # characters a URL cannot hold as they are
        ('a"b<c>d`e{f}', "http://shop.test/books/a%22b%3Cc%3Ed%60e%7Bf%7D"),
        ("?q=it's", "http://shop.test/books/list.html?q=it%27s"),
        ("#a b", "http://shop.test/books/list.html?page=2#a%20b"),
        # userinfo is kept as it is today
        ("http://u:p@host.test/", "http://u:p@host.test/"),
    ],
)
def test_join_url_reads_links_as_the_url_standard_does(href: str, expected: str) -> None:
    assert join_url(PAGE, href) == expected


def test_join_url_on_a_page_with_a_slash_in_its_query_and_no_path() -> None:
    assert join_url("http://a.test?p=/x", "y") == "http://a.test/y"
    assert join_url("http://a.test?p=/x/", "../z?q#f") == "http://a.test/z?q#f"
    assert join_url("http://a.test?p=/x", "?q") == "http://a.test/?q"


@pytest.mark.parametrize(
    "href",
    [
        "http://[",
        "http://[::1",
        "http://sh op.test/",
        "http://shop.test:99999/",
        "http://shop.test:-1/",
        "http://1.2.3.256/",
        "http://0x100000000/",
        "http://sh%00op.test/",
        "http://shop.test\uff03.x/",  # a full-width "#" maps to a character hosts cannot hold
        "http://\u00a0shop.test/",
        "http://",
        "https://user@",
        "\ud800x",
    ],
)
def test_join_url_gives_no_http_url_for_input_the_standard_rejects(href: str) -> None:
    joined = join_url(PAGE, href)
    assert joined == href
    assert not is_http(joined)
    assert canonicalize(joined) == joined
    assert host_of(joined) == ""


HOSTILE = [
    "http://[",
    "http://[v1.x]/",
    "http://" + "a" * 64 + ".test/",
    "http://" + "a." * 200 + "test/",
    "http://u:p@host/",
    "http://u:p@:80/",
    "http://%zz/",
    "http://a.test/" + "%" * 300,
    "http://a.test/\ud800",
    "\x00" * 5,
    "//",
    "\\\\",
    ":",
    "http:",
    "https://xn--/",
    "http://xn--ls8h.test/",
    "http://a.test/?" + "&=" * 200,
    "javascript:alert(1)",
    "data:text/html,<b>",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_nothing_raises_on_hostile_input(url: str) -> None:
    for base in (PAGE, "http://a.test", "not a url", url):
        joined = join_url(base, url)
        assert joined == url or is_http(joined)
    canonicalize(url)
    fingerprint("GET", url)
    host_of(url)
    hostname(url)
    is_http(url)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://shop.test/a?x=1&y=2", "http://shop.test/a?y=2&x=1"),
        ("http://shop.test/a?", "http://shop.test/a"),
        ("http://shop.test/a?&&", "http://shop.test/a#x"),
        ("http://shop.test/%7Euser/", "http://shop.test/~user/"),
        ("http://shop.test/caf%c3%a9", "http://shop.test/café"),
        ("http://shop.test/a%2fb", "http://shop.test/a%2Fb"),
        ("http://shop.test/s?q=red+shoes", "http://shop.test/s?q=red%20shoes"),
        ("http://shop.test/s?q=red shoes", "http://shop.test/s?q=red+shoes"),
        ("http://shop.test/s?flag", "http://shop.test/s?flag="),
        ("http://shop.test/s?tags=a,b", "http://shop.test/s?tags=a%2Cb"),
        ("http://shop.test/s?n=%41&m=(1)", "http://shop.test/s?m=%281%29&n=A"),
        ("http://shop.test/s?a=b=c", "http://shop.test/s?a=b%3Dc"),
        ("http://SHOP.test:80/", "http://shop.test"),
        ("https://shop.test:0443/a", "https://shop.test/a"),
        ("http://shop.test/a/./b/../c", "http://shop.test/a/c"),
        ("http://shop.test/a/%2E%2e/c", "http://shop.test/c"),
        ("http://shop.test\\a\\b", "http://shop.test/a/b"),
        ("http://sh\top.test/a\nb", "http://shop.test/ab"),
        ("http://Bücher.test/", "http://xn--bcher-kva.test/"),
        ("http://0x7f.1:8080/", "http://127.0.0.1:8080/"),
        ("http://[0::1]/", "http://[::1]/"),
        ("http://shop.test/[x]|y^", "http://shop.test/%5Bx%5D%7Cy%5E"),
        ("http://shop.test/100%", "http://shop.test/100%25"),
        ("http://u%3b:p@shop.test/", "http://u;:p@shop.test/"),
        (" http://shop.test/\x00", "http://shop.test/"),
    ],
)
def test_canonicalize_merges_spellings_of_one_url(a: str, b: str) -> None:
    assert canonicalize(a) == canonicalize(b)
    assert fingerprint("GET", a) == fingerprint("GET", b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://shop.test/a%2Fb", "http://shop.test/a/b"),
        ("http://shop.test/a%3Fb", "http://shop.test/a?b"),
        ("http://shop.test/a%3Bb", "http://shop.test/a;b"),
        ("http://shop.test/a%40b", "http://shop.test/a@b"),
        ("http://shop.test/A", "http://shop.test/a"),
        ("http://shop.test/a/", "http://shop.test/a"),
        ("http://shop.test/s?q=a%26b", "http://shop.test/s?q=a&b"),
        ("http://shop.test/s?q=a%2Bb", "http://shop.test/s?q=a+b"),
        ("http://shop.test/s?a%3Db=1", "http://shop.test/s?a=b=1"),
        ("http://shop.test/s?q=%E9", "http://shop.test/s?q=%C3%A9"),
        ("http://shop.test/s?q=1&q=1", "http://shop.test/s?q=1"),
        ("http://shop.test/", "https://shop.test/"),
        ("http://shop.test:8080/", "http://shop.test/"),
        ("http://shop.test./", "http://shop.test/"),
        ("http://u@shop.test/", "http://shop.test/"),
    ],
)
def test_canonicalize_keeps_different_urls_apart(a: str, b: str) -> None:
    assert canonicalize(a) != canonicalize(b)


@pytest.mark.parametrize(
    "url",
    [
        "http://Shop.test:80/a/../b c/%7e%2f?z=%41+1&y=it's&x#f",
        "http://u%3b:p;@Bücher.test/[x]|^",
        "https://0x7f.1:0443/\\a\\./b?&&",
        "http://shop.test/100%/%zz?q=%zz%",
    ],
)
def test_canonical_urls_are_fixed_points_in_the_standards_form(url: str) -> None:
    once = canonicalize(url)
    assert canonicalize(once) == once
    assert ada_url.normalize_url(once) == once


def test_host_of_gives_one_politeness_key_per_host_however_spelled() -> None:
    idn = {"http://Bücher.test/", "http://xn--bcher-kva.test:80/a", "http://BÜCHER.test"}
    assert {host_of(url) for url in idn} == {"xn--bcher-kva.test"}
    ipv4 = {"http://127.0.0.1:81/", "http://0x7f.1:81/x", "http://2130706433:081/"}
    assert {host_of(url) for url in ipv4} == {"127.0.0.1:81"}
    assert hostname("http://0x7f.1:81/") == "127.0.0.1"
    assert hostname("http://[::1]:81/") == "[::1]"


def test_scope_matches_a_domain_in_either_spelling() -> None:
    scope = Scope(["Bücher.test", "xn--caf-dma.test"], max_depth=None)
    assert scope.allows_url("http://www.xn--bcher-kva.test/")
    assert scope.allows_url("http://WWW.bücher.test/")
    assert scope.allows_url("http://café.test/")
    assert not scope.allows_url("http://bucher.test/")


# The fast paths, proved against ada-url (the WHATWG parser) on many generated URLs.
SIMPLE_BASES = [
    "http://127.0.0.1:18081/p/4.html",
    "https://shop.test/a/b/",
    "http://shop.test/",
    "http://u:p@shop.test:8080/a/b.html?x=1#f",
    "http://xn--bcher-kva.test/x/y",
    "http://shop.test/caf%C3%A9/x?q=%20",
    "http://[::1]:81/a",
]
SEGMENTS = ["a", "b.html", "5.html", ".", "..", "", "p", "~x", "a-b_c", "@", "!$&'()*+,;=", "x:y"]
TAILS = ["", "", "?", "?q=1&r=/s", "?it's", "#", "#f", "#f?g/h", "?q#f", "?%41", "#%2e"]


def _links(rng: random.Random, count: int) -> list[str]:
    links = []
    for _ in range(count):
        path = "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 5)))
        path = rng.choice(["", "", "/", "./", "../", "../../"]) + path
        links.append(path + rng.choice(TAILS))
    return links


def _absolute(rng: random.Random, count: int) -> list[str]:
    schemes = ["http", "https", "HTTP"]
    hosts = [
        "127.0.0.1",
        "shop.test",
        "a-b.c-d",
        "1.2.3",
        "0x7f.0.0.1",
        "1.2.3.4.",
        "xn--bcher-kva.test",
    ]
    hosts += ["a.b1", "a.0x1", "a.09", "256.1.1.1", "Shop.test", "s.test."]
    ports = ["", ":80", ":443", ":8080", ":0", ":080", ":65535", ":65536"]
    urls = []
    for link in _links(rng, count):
        path = "/" + link.lstrip("./") if rng.random() < 0.9 else ""
        host = f"{rng.choice(hosts)}{rng.choice(ports)}"
        urls.append(f"{rng.choice(schemes)}://{host}{path}")
    return urls


def _ada_join(base: str, href: str) -> str | None:
    try:
        return ada_url.join_url(base, href)
    except ValueError:
        return None


def test_fast_join_gives_adas_answer_on_many_simple_links() -> None:
    rng = random.Random(7)
    hrefs = _links(rng, 3000) + _absolute(rng, 2000)
    fast = 0
    for base in SIMPLE_BASES:
        for href in hrefs:
            want = _ada_join(base, href)
            quick = urls._fast_join(base, href)
            if quick is not None:
                fast += 1
                assert quick == want, (base, href)
            assert join_url(base, href) == (href if want is None else want), (base, href)
    assert fast > 0.4 * len(SIMPLE_BASES) * len(hrefs)  # the fast path was tried in earnest


def test_reading_a_url_by_string_operations_agrees_with_ada() -> None:
    rng = random.Random(8)
    standard = 0
    for url in _absolute(rng, 5000):
        quick = urls._read_standard(url)
        if quick is not None:
            standard += 1
            assert quick == urls._read_parsed(url), url
            assert ada_url.normalize_url(url) == url
    assert standard > 250


def test_base_href_is_read_as_the_url_standard_reads_it() -> None:
    def base_of(href: str) -> str:
        body = f'<html><head><base href="{href}"></head><body></body></html>'.encode()
        url = "http://shop.test/books/list.html"
        return Response(url, 200, httpx.Headers(), body, request=Request(url)).base_url

    assert base_of("\t\\Sub\\./dir/\n") == "http://shop.test/Sub/dir/"
    assert base_of("//Mirror.TEST:80/b/") == "http://mirror.test/b/"
    assert base_of("http://[") == "http://shop.test/books/list.html"
    assert base_of("javascript:void(0)") == "http://shop.test/books/list.html"


async def test_a_crawl_fetches_each_page_once_however_its_links_spell_it(
    site: TestSite, tmp_path: Path
) -> None:
    class Spellings(Spider):
        name = "spellings"
        start_urls = (site.url("/spellings/"),)
        allowed_domains = ("127.0.0.1",)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    result = await crawl(Spellings, tmp_path, obey_robots=False)

    for name in ("page-1", "page-2", "page-3", "page-5"):
        assert site.hits(f"/spellings/{name}", 0) == 1, name
    tilde = [site.hits(f"/spellings/page-{spelling}4", 0) for spelling in ("~", "%7E", "%7e")]
    assert sum(tilde) == 1
    assert site.hits_total(0) == 1 + len(SPELLINGS)  # nothing else: no broken spelling sent
    assert len(result.items) == 1 + len(SPELLINGS)
    assert result.stats.failures == 0
    assert result.stats.duplicates_filtered == sum(map(len, SPELLINGS.values())) - len(SPELLINGS)


async def test_a_redirect_location_is_read_as_the_url_standard_does(
    site: TestSite, tmp_path: Path
) -> None:
    class Redirected(Spider):
        name = "redirected"
        start_urls = (site.url("/redirect?to=%20%5Cspellings%5C.%2Fx%2F..%5Cpage-2%09"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Redirected, tmp_path, obey_robots=False)

    assert [item["url"] for item in result.items] == [site.url("/spellings/page-2")]
    assert site.hits("/spellings/page-2", 0) == 1
