"""Unit tests of crawler.response: encodings, text, JSON, CSS selection, and following links."""

import codecs
from typing import Any

import orjson
import pytest

from crawler.request import Request
from crawler.response import Response, detect_encoding, parse_html
from crawler.sniffing import BodyKind
from crawler.spider import Spider
from crawler.testing import make_response

PAGE = b"""<html><head><title>Books</title></head><body>
<h1 class="t">All books</h1>
<ul>
  <li class="book"><a href="/book/1">One</a></li>
  <li class="book"><a href="book/2?x=1#frag">Two</a></li>
  <li class="book"><a href="https://other.example/book/3">Three</a></li>
  <li><a href="mailto:shop@example.com">mail</a></li>
  <li><a href=" JavaScript:void(0)">js</a></li>
  <li><a href="tel:+123">call</a></li>
  <li><a href="#top">top</a></li>
  <li><a>no href</a></li>
  <li><img src="/cover.png"></li>
</ul>
</body></html>"""


class Books(Spider):
    name = "books"

    async def parse_book(self, response: Response) -> Any:
        return None

    async def parse_list(self, response: Response) -> Any:
        return None


def _response(
    body: bytes = PAGE,
    url: str = "http://example.com/shelf/index.html",
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    return make_response(url, body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html; charset=ISO-8859-2", b"<meta charset=utf-8>", "iso8859-2"),
        ('text/html; charset="utf-8"', b"\xe9", "utf-8"),
        ("text/html;charset=Shift_JIS", b"", "cp932"),
        ("text/html; charset=no-such-codec", b"abc", "cp1252"),
        ("text/html; charset=no-such-codec", b"caf\xe9", "cp1252"),
        (None, codecs.BOM_UTF8 + b"<meta charset=latin-1>", "utf-8"),
        (None, codecs.BOM_UTF16_LE + "hi".encode("utf-16-le"), "utf-16-le"),
        ("text/html", b'<meta charset="windows-1251"><p>\xcf', "cp1251"),
        (None, b"<META HTTP-EQUIV=Content-Type CONTENT='text/html; charset=koi8-r'>", "koi8-r"),
        (None, b"<meta charset=bogus>caf\xc3\xa9", "utf-8"),
        (None, "caf\u00e9 \u2603".encode(), "utf-8"),
        (None, b"caf\xe9 \x80", "cp1252"),
        (None, b"", "cp1252"),
    ],
)
def test_detect_encoding(content_type: str | None, body: bytes, expected: str) -> None:
    assert detect_encoding(content_type, body) == expected


def test_meta_charset_is_looked_for_in_the_head_and_the_first_kilobyte() -> None:
    assert detect_encoding(None, b" " * 5000 + b"<meta charset=koi8-r>\xe9") == "koi8-r"
    body = b"<body>" + b" " * 5000 + b"<meta charset=koi8-r>\xe9"
    assert detect_encoding(None, body) == "cp1252"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"content-type": "text/html; charset=iso-8859-1"}, b"caf\xe9", "caf\u00e9"),
        ({}, "caf\u00e9 \u2603".encode(), "caf\u00e9 \u2603"),
        ({}, b"\x93quoted\x94", "\u201cquoted\u201d"),
        ({}, codecs.BOM_UTF8 + b"caf\xc3\xa9", "caf\u00e9"),
        ({}, codecs.BOM_UTF16_LE + "hi".encode("utf-16-le"), "hi"),
        ({"content-type": "text/html; charset=utf-8"}, b"bad \xff byte", "bad \ufffd byte"),
    ],
)
def test_text(headers: dict[str, str], body: bytes, expected: str) -> None:
    assert _response(body, headers=headers).text == expected


def test_text_utf16_big_endian() -> None:
    assert _response(codecs.BOM_UTF16_BE + "hi".encode("utf-16-be")).text == "hi"


def test_json() -> None:
    data = {"a": [1, 2], "b": "caf\u00e9"}
    response = _response(orjson.dumps(data), headers={"content-type": "application/json"})
    assert response.json() == data
    with pytest.raises(ValueError, match="unexpected character"):
        _response(b"<html>").json()


def test_css() -> None:
    response = _response()
    assert [node.text() for node in response.css("li.book a")] == ["One", "Two", "Three"]
    assert response.css("p.missing") == []
    first = response.css_first("h1.t")
    assert first is not None
    assert first.text() == "All books"
    assert response.css_first("p.missing") is None


def test_meta_is_the_request_meta() -> None:
    request = Request("http://example.com/", meta={"page": 2})
    response = _response(request=request)
    assert response.meta is request.meta
    assert repr(response) == "<Response 200 http://example.com/shelf/index.html>"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("page2.html", "http://example.com/shelf/page2.html"),
        ("/root", "http://example.com/root"),
        ("  ../up  ", "http://example.com/up"),
        ("?q=1", "http://example.com/shelf/index.html?q=1"),
        ("//cdn.example/x", "http://cdn.example/x"),
        ("https://other.example/a", "https://other.example/a"),
    ],
)
def test_urljoin(link: str, expected: str) -> None:
    assert _response().urljoin(link) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'<base href="http://mirror.example/books/">', "http://mirror.example/books/x"),
        (b'<BASE HREF="/other/">', "http://example.com/other/x"),
        (b'<base href="  sub/ ">', "http://example.com/shelf/sub/x"),
        (b'<base target="_blank">', "http://example.com/shelf/x"),
        (b'<base href="">', "http://example.com/shelf/x"),
    ],
)
def test_urljoin_honours_base_href(head: bytes, expected: str) -> None:
    body = b"<html><head>" + head + b"</head><body><a href=x>x</a></body></html>"
    response = _response(body)
    assert response.urljoin("x") == expected
    assert [r.url for r in response.follow_all(css="a")] == [expected]


def test_follow_a_string() -> None:
    spider = Books()
    parent = Request("http://example.com/shelf/index.html", spider.parse_list, depth=3)
    response = _response(request=parent)

    inherited = response.follow("book/9")
    assert inherited.url == "http://example.com/shelf/book/9"
    assert inherited.depth == 4
    assert inherited.callback == "parse_list"

    explicit = response.follow("/b", callback=spider.parse_book, priority=5, meta={"k": 1})
    assert explicit.callback == "parse_book"
    assert explicit.callback_owner is spider
    assert (explicit.priority, explicit.meta, explicit.depth) == (5, {"k": 1}, 4)

    assert response.follow("/b", depth=0).depth == 0


def test_follow_default_callback_is_none() -> None:
    request = _response().follow("/b")
    assert request.callback is None
    assert request.depth == 1


def test_follow_a_node() -> None:
    response = _response()
    link = response.css_first("li.book:nth-child(2) a")
    assert link is not None
    assert response.follow(link).url == "http://example.com/shelf/book/2?x=1#frag"
    image = response.css_first("img")
    assert image is not None
    assert response.follow(image).url == "http://example.com/cover.png"


def test_follow_a_node_without_href() -> None:
    response = _response()
    nodes = [node for node in response.css("li a") if "href" not in node.attributes]
    assert len(nodes) == 1
    with pytest.raises(ValueError, match="<a> has no href or src to follow"):
        response.follow(nodes[0])


def test_follow_all_css_skips_links_that_are_not_pages() -> None:
    spider = Books()
    response = _response(request=Request("http://example.com/", spider.parse_list, depth=1))
    requests = list(response.follow_all(css="a", callback=spider.parse_book, priority=2))
    assert [r.url for r in requests] == [
        "http://example.com/book/1",
        "http://example.com/shelf/book/2?x=1#frag",
        "https://other.example/book/3",
    ]
    assert {(r.callback, r.depth, r.priority) for r in requests} == {("parse_book", 2, 2)}


def test_follow_all_urls() -> None:
    response = _response()
    nodes = response.css("li.book a")[:1]
    requests = list(
        response.follow_all(urls=["/a", "mailto:x@example.com", "", "b", *nodes, "data:,x"])
    )
    assert [r.url for r in requests] == [
        "http://example.com/a",
        "http://example.com/shelf/b",
        "http://example.com/book/1",
    ]
    assert list(response.follow_all(urls=[])) == []


def test_follow_all_skips_every_scheme_that_is_not_http() -> None:
    response = _response()
    assert list(response.follow_all(urls=["ftp://example.com/f", "file:///etc/passwd"])) == []


@pytest.mark.parametrize("kwargs", [{}, {"urls": ["/a"], "css": "a"}], ids=["neither", "both"])
def test_follow_all_needs_exactly_one_of_urls_and_css(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="follow_all takes exactly one of urls= and css="):
        list(_response().follow_all(**kwargs))


LINKS_IN_BYTES = b'<a href="/hidden/1">one</a><a href="/hidden/2">two</a>'


@pytest.mark.parametrize(
    ("content_type", "body", "kind"),
    [
        ("text/html; charset=utf-8", b"<p>hi", BodyKind.HTML),
        ("TEXT/HTML", b"no tags at all", BodyKind.HTML),
        ("application/xhtml+xml", b"<?xml version='1.0'?><html/>", BodyKind.HTML),
        ("text/html", b"<p>a\x00b</p>", BodyKind.HTML),  # NUL bytes in real HTML: still HTML
        ("text/xml", b"<urlset/>", BodyKind.XML),
        ("application/rss+xml; charset=utf-8", b"<rss/>", BodyKind.XML),
        ("image/svg+xml", b"<svg/>", BodyKind.XML),
        ("text/plain", b"<a href=/x>x</a>", BodyKind.TEXT),
        ("application/json", b'{"a": "<a href=/x>"}', BodyKind.TEXT),
        ("application/ld+json", b"{}", BodyKind.TEXT),
        ("text/css", b"a{}", BodyKind.TEXT),
        ("application/pdf", LINKS_IN_BYTES, BodyKind.BINARY),
        ("image/png", LINKS_IN_BYTES, BodyKind.BINARY),
        ("application/octet-stream", b"<html>", BodyKind.BINARY),
        ("font/woff2", b"wOF2", BodyKind.BINARY),
        # A declared type the bytes contradict: the file's signature wins.
        ("text/html", b"%PDF-1.4\n" + LINKS_IN_BYTES, BodyKind.BINARY),
        ("text/html", b"\x89PNG\r\n\x1a\n" + LINKS_IN_BYTES, BodyKind.BINARY),
        # No type, or one that says nothing: sniffed.
        (None, b"<!DOCTYPE html><p>x", BodyKind.HTML),
        (None, b"\n\t  <html><body>", BodyKind.HTML),
        (None, b"<p>x", BodyKind.HTML),
        (None, codecs.BOM_UTF8 + b"<html>", BodyKind.HTML),
        (None, codecs.BOM_UTF16_LE + "<html>".encode("utf-16-le"), BodyKind.HTML),
        (None, b"<?xml version='1.0'?><urlset/>", BodyKind.XML),
        ("unknown/unknown", b"<p>x", BodyKind.HTML),
        ("", b"<p>x", BodyKind.HTML),
        (None, b"%PDF-1.7\n" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"\x89PNG\r\n\x1a\n" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"GIF89a" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"\xff\xd8\xff\xe0" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"PK\x03\x04" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"\x1f\x8b\x08\x00" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"\x00\x00\x01\x00 an icon", BodyKind.BINARY),
        (None, b"data " + b"\x00" + LINKS_IN_BYTES, BodyKind.BINARY),
        (None, b"x" * 600 + b"\x00" + LINKS_IN_BYTES, BodyKind.TEXT),  # past the 512 sniffed
        (None, b"plain words, tabs\tand\r\nlines", BodyKind.TEXT),
        (None, b"", BodyKind.TEXT),
    ],
)
def test_kind_comes_from_the_content_type_or_a_sniff(
    content_type: str | None, body: bytes, kind: BodyKind
) -> None:
    headers = {"content-type": content_type} if content_type is not None else {}
    response = _response(body, headers=headers)
    assert response.kind is kind
    assert response.is_html == (kind is BodyKind.HTML)
    assert kind.is_markup == (kind in (BodyKind.HTML, BodyKind.XML))


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/pdf", b"%PDF-1.7\n" + LINKS_IN_BYTES),
        (None, b"\x89PNG\r\n\x1a\n" + LINKS_IN_BYTES),
        ("text/plain", LINKS_IN_BYTES),
    ],
    ids=["pdf", "sniffed-png", "plain-text"],
)
def test_a_body_that_is_not_markup_gives_no_nodes_and_no_links(
    content_type: str | None, body: bytes
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = _response(body, headers=headers)

    assert response.css("a") == []
    assert response.css("body") == []  # not even the elements an empty document has
    assert response.css_first("a") is None
    assert list(response.follow_all(css="a")) == []
    assert response.tree.css("a") == []  # the bytes were never parsed
    assert "/hidden/1" in response.text  # the body is still there to read
    assert response.follow("/next").url == "http://example.com/next"
    assert [r.url for r in response.follow_all(urls=["a", "b"])] == [
        "http://example.com/shelf/a",
        "http://example.com/shelf/b",
    ]


def test_xml_is_markup() -> None:
    sitemap = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>http://example.com/a</loc></url><url><loc>http://example.com/b</loc></url>"
        b"</urlset>"
    )
    response = _response(sitemap, headers={"content-type": "application/xml"})
    assert response.kind is BodyKind.XML
    assert not response.is_html
    assert [node.text() for node in response.css("loc")] == [
        "http://example.com/a",
        "http://example.com/b",
    ]


def test_link_limit_caps_follow_all_over_the_whole_page(caplog: pytest.LogCaptureFixture) -> None:
    response = _response()
    response.link_limit = 4
    first = [r.url for r in response.follow_all(css="li.book a")]
    rest = [r.url for r in response.follow_all(urls=["/a", "/b", "/c"])]

    assert len(first) == 3
    assert rest == ["http://example.com/a"]
    assert "links past max_links_per_page=4 dropped" in caplog.text
    assert list(response.follow_all(urls=["/d"])) == []
    assert response.follow("/e").url == "http://example.com/e"  # a single follow is not capped


def test_no_link_limit_by_default() -> None:
    urls = [f"/{i}" for i in range(20_000)]
    assert sum(1 for _ in _response().follow_all(urls=urls)) == 20_000


def test_parse_html_reads_bytes_as_utf8() -> None:
    tree = parse_html("<p>caf\u00e9</p>".encode())
    node = tree.css_first("p")
    assert node is not None
    assert node.text() == "caf\u00e9"
