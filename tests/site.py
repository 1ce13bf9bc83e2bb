"""The test site: a real HTTP/1.1 server on several loopback hosts, with the pages crawls need.

`TestSite` binds one stdlib `ThreadingHTTPServer` per loopback address, serves the same routes on
each, and records what it saw (hits per path, timings, per-host concurrency) for tests to assert on.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import json
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
GRAPH_SIZE = 100
PAGED_PAGES = 5
ITEMS_PER_PAGE = 3
RULES_PAGES = 3
QUOTES_PAGES = 3
CHUNK_BYTES = 64 * 1024
HTML = "text/html; charset=utf-8"
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
SESSION = "s3ss10n"  # the session cookie /login sets and /account checks


@dataclass(frozen=True)
class Hit:
    """One request as the server saw it; `started`/`ended` are `time.monotonic()` readings.

    `ended` is taken just before the last bytes go out, so a finished client finds its hit logged.
    """

    host: str
    path: str
    method: str
    started: float
    ended: float
    headers: dict[str, str]


@dataclass
class Reply:
    """A response to send; `length=None` means no Content-Length: the body ends when we close.

    `close` hangs up after the reply without a `Connection: close` header, as a server whose
    keep-alive ran out does; `hang_up` closes the connection instead of answering at all.
    """

    status: int = 200
    chunks: Iterable[bytes] = ()
    length: int | None = 0
    headers: dict[str, str] = field(default_factory=dict)
    repeated: list[tuple[str, str]] = field(default_factory=list)  # Set-Cookie, once per value
    close: bool = False
    hang_up: bool = False


class BadParam(Exception):
    """A query parameter a route could not parse: answered with 400."""


@dataclass(frozen=True)
class Incoming:
    """What a route sees of a request."""

    site: TestSite
    host: str
    method: str
    path: str
    rest: str  # what follows the route's own segment: "7" in "/graph/7"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    count: int  # this request's ordinal for (host, path), starting at 1
    raw_headers: tuple[tuple[str, str], ...] = ()  # as sent: original case and order

    def number(self, name: str, default: float) -> float:
        try:
            return float(self.query.get(name, default))
        except ValueError:
            raise BadParam(f"bad {name}") from None

    def integer(self, name: str, default: int) -> int:
        return int(self.number(name, default))

    def sleep(self, seconds: float) -> None:
        # An Event rather than time.sleep so stopping the site wakes slow handlers at once.
        self.site._stopping.wait(seconds)


def raw(
    data: bytes, content_type: str, status: int = 200, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(status, (data,), len(data), {"Content-Type": content_type, **(headers or {})})


def text(body: str, status: int = 200) -> Reply:
    return raw(body.encode(), "text/plain; charset=utf-8", status)


def page(title: str, body: str, status: int = 200) -> Reply:
    head = f"<!doctype html>\n<html><head><title>{title}</title></head>"
    doc = f"{head}\n<body>\n{body}\n</body></html>\n"
    return raw(doc.encode(), HTML, status)


def anchors(hrefs: Iterable[str], css_class: str | None = None) -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return "\n".join(f'<a{attr} href="{escape(href)}">{escape(href)}</a>' for href in hrefs)


def not_found() -> Reply:
    return page("not found", "<p>not found</p>", 404)


def index(segment: str) -> int | None:
    return int(segment) if segment.isdigit() else None


def graph(req: Incoming) -> Reply:
    n = index(req.rest)
    if n is None or n >= GRAPH_SIZE:
        return not_found()
    hrefs = [f"/graph/{child}" for child in (2 * n + 1, 2 * n + 2) if child < GRAPH_SIZE]
    hrefs += ["/graph/0", f"/graph/{n}#x", "/graph/1?a=1&b=2", "/graph/1?b=2&a=1"]
    if n == 0 and len(req.site.hosts) > 1:
        hrefs.append(req.site.url("/graph/0", 1))
    return page(f"page {n}", f'<h1 class="n">{n}</h1>\n{anchors(hrefs)}')


def paged(req: Incoming) -> Reply:
    k = req.integer("page", 1)
    if not 1 <= k <= PAGED_PAGES:
        return not_found()
    items = "\n".join(
        f'<div class="item"><span class="name">item-{k}-{i}</span></div>'
        for i in range(1, ITEMS_PER_PAGE + 1)
    )
    nav = anchors([f"/paged?page={k + 1}"], "next") if k < PAGED_PAGES else ""
    return page(f"paged {k}", f"{items}\n{nav}")


def robots(req: Incoming) -> Reply:
    if req.site.robots_redirect is not None and req.host == req.site.host(0):
        return raw(b"", HTML, 302, {"Location": req.site.robots_redirect})
    rules = req.site.robots
    status = req.site.robots_status or (200 if rules is not None else 404)
    return text(rules or "", status)


def private(req: Incoming) -> Reply:
    return page("private", "<p>private</p>")


def flaky(req: Incoming) -> Reply:
    if req.count <= req.integer("fail", 1):
        code = req.integer("status", 503)
        return page("failing", f"<p>status {code}</p>", code)
    return raw(f"ok {req.rest}".encode(), HTML)


def retry_after(req: Incoming) -> Reply:
    if req.count > req.integer("times", 1):
        return raw(f"ok {req.rest}".encode(), HTML)
    seconds = req.query.get("seconds", "1")
    if req.query.get("date") == "1":
        seconds = email.utils.formatdate(time.time() + req.number("seconds", 1), usegmt=True)
    reply = page("later", "<p>later</p>", req.integer("status", 429))
    reply.headers["Retry-After"] = seconds
    return reply


def rate_limited(req: Incoming) -> Reply:
    """429 when this request came less than 1/rate seconds after the previous one to any
    /rate-limited page of its host (by the server's clock); ``retry_after`` adds that header."""
    rate = req.number("rate", 10)
    if req.site._too_fast(req.host, 1 / rate if rate > 0 else 0.0):
        reply = page("slow down", "<p>slow down</p>", 429)
        if "retry_after" in req.query:
            reply.headers["Retry-After"] = req.query["retry_after"]
        return reply
    return page(f"rate {req.rest}", f'<p class="v">{escape(req.rest)}</p>')


def slow(req: Incoming) -> Reply:
    req.sleep(req.number("delay", 1))
    return page("slow", f'<p class="slow">{escape(req.query.get("i", ""))}</p>')


def slow_links(req: Incoming) -> Reply:
    delay = req.query.get("delay", "1")
    hrefs = [f"/slow?delay={delay}&i={i}" for i in range(req.integer("n", 3))]
    return page("slow links", anchors(hrefs))


def fan(req: Incoming) -> Reply:
    n = index(req.rest)
    if n is None:
        return not_found()
    return page(f"fan {n}", anchors(f"/leaf/{i}" for i in range(n)))


def leaf(req: Incoming) -> Reply:
    i = index(req.rest)
    return not_found() if i is None else page(f"leaf {i}", f'<p class="v">{i}</p>')


def redirect(req: Incoming) -> Reply:
    target = req.query.get("to", "/")
    reply = page("moved", anchors([target]), req.integer("status", 302))
    reply.headers["Location"] = target
    return reply


def redirect_chain(req: Incoming) -> Reply:
    n = index(req.rest)
    if n is None:
        return not_found()
    if n == 0:
        return raw(b"end", HTML)
    return raw(b"", HTML, 302, {"Location": f"/redirect-chain/{n - 1}"})


def filler(size: int) -> Iterator[bytes]:
    block = b"<p>filler</p>\n" * (CHUNK_BYTES // 14 + 1)
    for offset in range(0, size, CHUNK_BYTES):
        yield block[: min(CHUNK_BYTES, size - offset)]


def big(req: Incoming) -> Reply:
    size = req.integer("size", 1 << 20)
    return Reply(200, filler(size), size, {"Content-Type": HTML})


def nolength(req: Incoming) -> Reply:
    return Reply(200, filler(req.integer("size", 1 << 20)), None, {"Content-Type": HTML})


@functools.lru_cache(maxsize=4)
def gzipped_zeros(size: int) -> bytes:
    """A gzip member that inflates to `size` zero bytes (100 MB packs into ~100 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = memoryview(bytes(1 << 20))
    step = len(block)
    parts = [packer.compress(block[: min(step, size - at)]) for at in range(0, size, step)]
    return b"".join(parts) + packer.flush()


def gzip_bomb(req: Incoming) -> Reply:
    body = gzipped_zeros(req.integer("size", 100_000_000))
    return raw(body, HTML, headers={"Content-Encoding": "gzip"})


def status(req: Incoming) -> Reply:
    code = index(req.rest)
    if code is None or not 200 <= code <= 599:
        return not_found()
    return page(f"status {code}", f"<p>status {code}</p>", code)


CHARSET_PAGES: dict[str, tuple[str, bytes]] = {
    "header": ("text/html; charset=iso-8859-1", "<p>café</p>".encode("latin-1")),
    "meta": (
        "text/html",
        '<html><head><meta charset="windows-1252"></head><body><p>café €</p></body></html>'.encode(
            "cp1252"
        ),
    ),
    "bom": ("text/html", "\ufeff<p>café</p>".encode()),
    # What many servers send: windows-1252 bytes (curly quotes, dashes, euro) under a latin-1 label.
    "windows-1252": (
        "text/html; charset=iso-8859-1",
        "<h1>Café “deals”</h1><p>€5 \u2013 €9… \u2018now\u2019</p>".encode("cp1252"),
    ),
    "none": ("text/html", "<p>café</p>".encode()),
}


def charset(req: Incoming) -> Reply:
    if req.rest not in CHARSET_PAGES:
        return not_found()
    content_type, body = CHARSET_PAGES[req.rest]
    return raw(body, content_type)


def json_page(req: Incoming) -> Reply:
    return raw(json.dumps({"ok": True, "items": [1, 2, 3]}).encode(), "application/json")


def base_href(req: Incoming) -> Reply:
    return raw(
        b'<html><head><base href="/sub/dir/"><title>base</title></head>'
        b'<body><a href="page.html">page</a></body></html>',
        HTML,
    )


# Bytes that look like links, hidden in files that are not HTML: no crawl may follow them.
LINKS_IN_BINARY = b'<html><a href="/binary-link/1">one</a> <a href="/binary-link/2">two</a></html>'
BINARIES: dict[str, tuple[str, bytes]] = {
    "pdf": ("application/pdf", b"%PDF-1.7\n1 0 obj <<>> stream\n" + LINKS_IN_BINARY + b"\n%%EOF\n"),
    "png": ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01" + LINKS_IN_BINARY),
    "gif": ("image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00" + LINKS_IN_BINARY),
    "zip": ("application/zip", b"PK\x03\x04\x14\x00\x00\x00" + LINKS_IN_BINARY),
    "blob": ("application/octet-stream", b"\x00\x01\x02\x03" + LINKS_IN_BINARY),
}


def binary(req: Incoming) -> Reply:
    """A binary file with link-like bytes; `?type=` overrides its Content-Type, `type=none`
    sends none (so the client has to sniff)."""
    if req.rest not in BINARIES:
        return not_found()
    content_type, body = BINARIES[req.rest]
    content_type = req.query.get("type", content_type)
    headers = {} if content_type == "none" else {"Content-Type": content_type}
    return Reply(200, (body,), len(body), headers)


def _nested(n: int) -> bytes:
    return b"<div>" * n + b"deep" + b"</div>" * n


def _long_line(n: int) -> bytes:
    words = b"lorem ipsum dolor sit amet " * (n // 27 + 1)
    return b'<p class="long">' + words[:n] + b"</p>"


def _nul(n: int) -> bytes:
    return b"<p>a\x00b</p>\x00" * (n // 13 + 1)


def _unclosed(n: int) -> bytes:
    return b"<p><li><td><a href=#>x<b><select><option>" * (n // 40 + 1)


def _links(n: int) -> bytes:
    return b"".join(b"<a href=/m/%d>" % i for i in range(n))


def _formatting(n: int) -> bytes:
    # Formatting elements with distinct attributes, then misnested end tags: the tree builder
    # reconstructs the whole list of active formatting elements for each one.
    opens = b"".join(b"<b %d><i %d>" % (i, i) for i in range(n))
    return opens + b"x</b>" * n


HOSTILE: dict[str, tuple[Callable[[int], bytes], int]] = {
    "nested": (_nested, 100_000),
    "long-line": (_long_line, 5_000_000),
    "nul": (_nul, 2_000_000),
    "unclosed": (_unclosed, 1_000_000),
    "links": (_links, 500_000),
    "formatting": (_formatting, 3_000),
}


@functools.lru_cache(maxsize=8)
def hostile_page(shape: str, n: int) -> bytes:
    """A pathological HTML page; `/leaf/<n>` linked at its very end marks when it was parsed."""
    build, _ = HOSTILE[shape]
    head = b'<!doctype html><html><head><title>hostile</title></head><body><h1 class="t">'
    return head + shape.encode() + b"</h1>" + build(n) + b'<a href="/leaf/%d">end</a>' % n


def hostile(req: Incoming) -> Reply:
    if req.rest not in HOSTILE:
        return not_found()
    return raw(hostile_page(req.rest, req.integer("n", HOSTILE[req.rest][1])), HTML)


def chain(req: Incoming) -> Reply:
    """`/chain/<k>`: a page after `?delay=` seconds, linking to `/chain/<k+1>` up to `?length=`."""
    k = index(req.rest)
    if k is None or k >= req.integer("length", 100):
        return not_found()
    req.sleep(req.number("delay", 0))
    query = req.path.partition("?")[2]
    link = anchors([f"/chain/{k + 1}?{query}"]) if k + 1 < req.integer("length", 100) else ""
    return page(f"chain {k}", f'<h1 class="n">{k}</h1>\n{link}')


# Pages of /spellings/ and the links its index holds to each, in the spellings browsers read as
# one URL: a tab or newline inside, backslashes, dot segments ("%2e" too), escape case, an IPv4
# number form and an upper-case scheme. The crawl should fetch each page once.
SPELLINGS = {
    "page-1": ["pa\tge-1", "page\n-1", "page-1"],
    "page-2": ["\\spellings\\page-2", "page-2"],
    "page-3": ["x/../page-3", "./%2e/page-3", "/spellings/./page-3"],
    "page-~4": ["page-%7E4", "page-%7e4", "page-~4"],
    "page-5": [
        "http://0x7f.1:{port}/spellings/page-5",
        "HTTP://127.0.0.1:{port}/spellings/page-5#x",
    ],
}


def spellings(req: Incoming) -> Reply:
    if not req.rest:
        port = req.headers["host"].rpartition(":")[2]
        links = [link.format(port=port) for hrefs in SPELLINGS.values() for link in hrefs]
        return page("spellings", anchors(links))
    name = req.rest.replace("%7E", "~").replace("%7e", "~")
    return page(name, f"<p>{name}</p>") if name in SPELLINGS else not_found()


def echo(req: Incoming) -> Reply:
    body = req.body.decode(errors="replace")
    seen = {
        "method": req.method,
        "path": req.path,
        "headers": req.headers,
        "raw_headers": req.raw_headers,
        "body": body,
    }
    return raw(json.dumps(seen).encode(), "application/json")


# The messy web on one page: every kind of trouble the crawler must take in its stride, linked
# from /messy (the paths are on the same host; `{other}` is the base of host 1).
MESSY_LINKS = (
    "/charset/windows-1252",
    "/spellings/",
    "/binary/pdf",
    "/binary/png?type=none",
    "/hostile/nested",
    "/hostile/links",
    "/closing/0?n=5",
    "/private/secret",
    "/redirect-chain/2",
    "{other}/paged?page=1",
    "http://[",
    "http://a\tb.invalid:99999/",
    "javascript:alert(1)",
)


def messy(req: Incoming) -> Reply:
    other = req.site.base(1) if len(req.site.hosts) > 1 else ""
    return page("messy", anchors(link.format(other=other) for link in MESSY_LINKS))


def links(req: Incoming) -> Reply:
    """`/links?h=<JSON list>`: a page whose anchors carry exactly those hrefs (escaped as HTML)."""
    try:
        hrefs = json.loads(req.query.get("h", "[]"))
    except ValueError:
        raise BadParam("h must be a JSON list of strings") from None
    return page("links", anchors(str(href) for href in hrefs))


def quotes(req: Incoming) -> Reply:
    """`/quotes/<k>`: quotes.toscrape.com's shape (div.quote, span.text, small.author, tags,
    li.next), ``QUOTES_PAGES`` pages of two quotes each, for Scrapy's selector idioms."""
    k = index(req.rest)
    if k is None or not 1 <= k <= QUOTES_PAGES:
        return not_found()
    blocks = "\n".join(
        f'<div class="quote" data-n="{k}-{i}"><span class="text">Quote {k}.{i} &amp; more</span>'
        f' <span>by <small class="author">Author {i}</small> <a href="/author/{i}">(about)</a>'
        f'</span><div class="tags">Tags: <a class="tag" href="/tag/t{i}/">t{i}</a>'
        f'<a class="tag" href="/tag/common/">common</a></div></div>'
        for i in (1, 2)
    )
    nav = f'<li class="next"><a href="/quotes/{k + 1}">Next</a></li>' if k < QUOTES_PAGES else ""
    return page(f"quotes {k}", f"<h1>Quotes <b>to</b> scrape</h1>\n{blocks}\n<ul>{nav}</ul>")


def set_cookies(req: Incoming) -> Reply:
    """`/set-cookies/<n>?k=&size=&pages=`: sets `k` new cookies (`c<n>x<i>`, values of `size`
    bytes) and links to `/set-cookies/<n+1>`, up to `pages`; a site that never stops setting."""
    n = index(req.rest)
    pages = req.integer("pages", 10)
    if n is None or n >= pages:
        return not_found()
    query = req.path.partition("?")[2]
    link = anchors([f"/set-cookies/{n + 1}?{query}"]) if n + 1 < pages else ""
    reply = page(f"cookies {n}", link)
    value = "v" * req.integer("size", 20)
    reply.repeated += [
        ("Set-Cookie", f"c{n}x{i}={value}; Path=/") for i in range(req.integer("k", 10))
    ]
    return reply


def cookie_echo(req: Incoming) -> Reply:
    """The Cookie header this request carried (empty if none), as text."""
    return text(req.headers.get("cookie", ""))


def login(req: Incoming) -> Reply:
    """Sets the session cookie `/account` wants: on a page linking there, or with
    `?redirect=1` on a 302 to it."""
    reply = page("login", anchors(["/account"]))
    if req.query.get("redirect") == "1":
        reply = raw(b"", HTML, 302, {"Location": "/account"})
    reply.repeated.append(("Set-Cookie", f"session={SESSION}; Path=/; HttpOnly"))
    return reply


def account(req: Incoming) -> Reply:
    """Who the session cookie says the visitor is: `alice`, or `anonymous` without it."""
    cookies = dict(
        part.strip().partition("=")[::2] for part in req.headers.get("cookie", "").split(";")
    )
    user = "alice" if cookies.get("session") == SESSION else "anonymous"
    return page("account", f'<p class="user">{user}</p>')


def rules(req: Incoming) -> Reply:
    """A shop for crawl rules: `/rules/list/1..RULES_PAGES` list three items each
    (`/rules/item/11`...), a next page, and links rules should drop (a private page, files,
    another host, mailto:); an item page links to `/rules/extra/<n>`; `/rules/broken` links to a
    page that hangs up."""
    kind, _, rest = req.rest.partition("/")
    n = index(rest)
    if kind == "list" and n is not None and 1 <= n <= RULES_PAGES:
        items = anchors(f"/rules/item/{10 * n + i}" for i in (1, 2, 3))
        pager = anchors([f"/rules/list/{n + 1}"] if n < RULES_PAGES else [])
        drops = [f"/rules/private/{n}", "/rules/files/report.PDF", "/rules/files/site.tar.gz"]
        drops += ["mailto:shop@a.test", "#top", req.site.url("/rules/item/99", 1)]
        body = f'<div class="items">{items}</div><nav class="pager">{pager}</nav>'
        return page(f"list {n}", f"{body}<footer>{anchors(drops)}</footer>")
    if kind == "item" and n is not None:
        more = f'<a href="/rules/extra/{n}">more</a> <a href="/rules/list/1">all</a>'
        return page(f"item {n}", f'<h1 class="n">{n}</h1>{more}')
    if kind in {"extra", "private"} and n is not None:
        return page(f"{kind} {n}", f'<h1 class="n">{n}</h1>')
    if kind == "broken":
        return page("broken", anchors(["/hang-up", "/rules/item/1"]))
    return not_found()


def hang_up(req: Incoming) -> Reply:
    return Reply(hang_up=True)


def closing(req: Incoming) -> Reply:
    """`/closing/0?n=N` links to pages 1..N-1; every reply closes its connection afterwards."""
    i = index(req.rest)
    n = req.integer("n", 10)
    if i is None or i >= n:
        return not_found()
    hrefs = [f"/closing/{j}?n={n}" for j in range(1, n)] if i == 0 else []
    reply = page(f"closing {i}", f'<p class="v">{i}</p>\n{anchors(hrefs)}')
    reply.close = True
    return reply


def _urlset(paths: Iterable[str], extra: str = "") -> bytes:
    urls = "".join(f"<url><loc>{path}</loc>{extra}</url>" for path in paths)
    return f'<urlset xmlns="{SITEMAP_NS}">{urls}</urlset>'.encode()


def sitemap(req: Incoming) -> Reply:
    """`/sitemap/big?n=N`: a urlset of /leaf/0../leaf/N-1; `/sitemap/deep/K`: an index of
    /sitemap/deep/K+1 and of `/sitemap/leaves/K.xml.gz` (gzip bytes, no Content-Encoding) listing
    /leaf/K; `/sitemap/broken`: two URLs, then XML that breaks off."""
    kind, _, arg = req.rest.partition("/")
    if kind == "big":
        body = _urlset(f"/leaf/{i}" for i in range(req.integer("n", 50_000)))
    elif kind == "deep" and (k := index(arg)) is not None:
        children = (f"/sitemap/deep/{k + 1}", f"/sitemap/leaves/{k}.xml.gz")
        entries = "".join(f"<sitemap><loc>{child}</loc></sitemap>" for child in children)
        body = f'<sitemapindex xmlns="{SITEMAP_NS}">{entries}</sitemapindex>'.encode()
    elif kind == "leaves" and (k := index(arg.removesuffix(".xml.gz"))) is not None:
        return raw(gzip.compress(_urlset([f"/leaf/{k}"])), "application/gzip")
    elif kind == "broken":
        body = _urlset(["/leaf/1", "/leaf/2"])[:-9] + b"<url><loc>/leaf/3</lo"
    else:
        return not_found()
    return raw(body, "application/xml")


# Pages for recrawls: `/fresh/<kind>/` lists `?n=` pages `/fresh/<kind>/<i>` (about 2 KB each,
# their content at version `site.versions[i]`, which `site.mutate(i)` bumps). How each kind
# answers a revisit:
FRESH_KINDS = {
    "strong": "an ETag and a Last-Modified; honours If-None-Match, else If-Modified-Since",
    "weak": "a weak W/ ETag, compared weakly (RFC 9110 13.1.2)",
    "dates": "only a Last-Modified, honoured",
    "volatile": "a new ETag on every response, so If-None-Match never matches",
    "ignore": "an ETag and a Last-Modified, but always 200",
    "stamped": "no validators, and a counter in the page that changes on every response",
    "rogue": "304 to everything, conditional or not",
}
FRESH_EPOCH = 1_700_000_000  # Last-Modified of version 0


def _fresh_page(req: Incoming, kind: str, i: int) -> Reply:
    version = req.site.versions[i]
    filler = "".join(
        f"<p>paragraph {k} of page {i}: lorem ipsum dolor sit amet</p>" for k in range(40)
    )
    stamp = f'<p class="stamp">{req.count}</p>' if kind == "stamped" else ""
    body = (
        f'<h1 class="n">{i}</h1><p class="v">{version}</p><div class="text">{filler}</div>{stamp}'
    )
    reply = page(f"fresh {i}", body)
    tag = f'"p{i}-v{version}"'
    modified = email.utils.formatdate(FRESH_EPOCH + 1000 * version, usegmt=True)
    if kind == "weak":
        tag = "W/" + tag
    elif kind == "volatile":
        tag = f'"p{i}-r{req.count}"'
    if kind in ("strong", "weak", "volatile", "ignore"):
        reply.headers["ETag"] = tag
    if kind in ("strong", "dates", "ignore"):
        reply.headers["Last-Modified"] = modified
    if kind not in ("ignore", "stamped") and _not_modified(req, tag, modified):
        return Reply(304, headers={k: v for k, v in reply.headers.items() if k != "Content-Type"})
    return reply


def _not_modified(req: Incoming, tag: str, modified: str) -> bool:
    if (match := req.headers.get("if-none-match")) is not None:
        weak = {t.strip().removeprefix("W/") for t in match.split(",")}
        return tag.removeprefix("W/") in weak
    return req.headers.get("if-modified-since") == modified


def fresh(req: Incoming) -> Reply:
    kind, _, rest = req.rest.partition("/")
    if kind not in FRESH_KINDS:
        return not_found()
    req.sleep(req.number("delay", 0))
    if kind == "rogue":
        return Reply(304)
    query = req.path.partition("?")[2]
    if not rest:
        hrefs = [
            f"/fresh/{kind}/{i}" + (f"?{query}" if query else "")
            for i in range(req.integer("n", 20))
        ]
        listing = page(f"fresh {kind}", anchors(hrefs))
        tag = f'"index-{kind}-{len(hrefs)}"'
        if kind in ("strong", "weak") and req.headers.get("if-none-match") == tag:
            return Reply(304, headers={"ETag": tag})
        listing.headers["ETag"] = tag
        return listing
    i = index(rest)
    return not_found() if i is None else _fresh_page(req, kind, i)


Route = Callable[[Incoming], Reply]

# Keyed by the first path segment; the route parses whatever follows it (`Incoming.rest`).
ROUTES: dict[str, Route] = {
    "/graph": graph,
    "/paged": paged,
    "/robots.txt": robots,
    "/private": private,
    "/flaky": flaky,
    "/retry-after": retry_after,
    "/rate-limited": rate_limited,
    "/slow": slow,
    "/slow-links": slow_links,
    "/fan": fan,
    "/leaf": leaf,
    "/redirect": redirect,
    "/redirect-chain": redirect_chain,
    "/big": big,
    "/gzip-bomb": gzip_bomb,
    "/nolength": nolength,
    "/status": status,
    "/charset": charset,
    "/json": json_page,
    "/base-href": base_href,
    "/echo": echo,
    "/messy": messy,
    "/links": links,
    "/binary": binary,
    "/hostile": hostile,
    "/chain": chain,
    "/spellings": spellings,
    "/hang-up": hang_up,
    "/rules": rules,
    "/closing": closing,
    "/set-cookies": set_cookies,
    "/cookie-echo": cookie_echo,
    "/login": login,
    "/account": account,
    "/sitemap": sitemap,
    "/quotes": quotes,
    "/fresh": fresh,
}


def route(req: Incoming) -> Reply:
    handler = ROUTES.get("/" + req.path.partition("?")[0].lstrip("/").partition("/")[0])
    if handler is None:
        return not_found()
    try:
        return handler(req)
    except BadParam as exc:
        return text(str(exc), 400)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed ACKs stall
    # every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True
    server: _HostServer

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read the site's counters; stderr noise helps nobody

    def _serve(self) -> None:
        site, host = self.server.site, self.server.host
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        raw_headers = tuple(self.headers.items())
        headers = {name.lower(): value for name, value in raw_headers}
        target, _, query = self.path.partition("?")
        rest = target.lstrip("/").partition("/")[2]
        started = time.monotonic()
        count = site._begin(host, self.path)
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                hit = Hit(host, self.path, self.command, started, time.monotonic(), headers)
                site._end(hit)

        try:
            args = dict(parse_qsl(query, keep_blank_values=True))
            req = Incoming(
                site, host, self.command, self.path, rest, args, headers, body, count, raw_headers
            )
            reply = route(req)
            if not reply.hang_up:
                self._send(reply, record)
            # Set after sending: a header must not announce it, the client finds out the hard way.
            self.close_connection = self.close_connection or reply.close or reply.hang_up
        finally:
            record()

    def _send(self, reply: Reply, record: Callable[[], None]) -> None:
        """Send `reply`, calling `record` just before the client can see the response complete.

        So a client holding a whole response always finds its `Hit` in the log already.
        """
        self.send_response(reply.status)
        for name, value in [*reply.headers.items(), *reply.repeated]:
            self.send_header(name, value)
        if reply.length is None:
            self.send_header("Connection", "close")
        elif reply.status not in (204, 304):  # these never carry a body nor its length
            self.send_header("Content-Length", str(reply.length))
        bodyless = self.command == "HEAD" or reply.status in (204, 304)
        chunks = iter(()) if bodyless else (chunk for chunk in reply.chunks if chunk)
        pending = next(chunks, b"")
        if not pending:
            record()
        self.end_headers()
        site = self.server.site
        for chunk in chunks:
            site._sent(len(pending))
            self.wfile.write(pending)
            pending = chunk
        if pending:
            site._sent(len(pending))
            record()
            self.wfile.write(pending)


class _HostServer(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread: nothing leaks
    block_on_close = True

    def __init__(self, site: TestSite, address: str) -> None:
        self.site = site
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((address, 0), _Handler)
        self.host = f"{address}:{self.server_port}"

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's reverse-DNS getfqdn()
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.site._connected(self.host)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # A client hanging up mid-response is a normal event in crawler tests, not a site bug.
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.site._failed(error)

    def disconnect_all(self) -> None:
        """Hang up kept-alive connections so their handler threads see EOF and finish."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class TestSite:
    """The same routes served on several loopback hosts, with counters tests can read.

    >>> with TestSite() as site:
    ...     url = site.url("/graph/0")  # "http://127.0.0.1:<port>/graph/0"
    ...     # crawl it, then: site.hits("/graph/0") == 1, site.peak_concurrency(0) <= 2
    """

    __test__ = False  # a helper, not a pytest test class despite its name

    def __init__(self, addresses: Sequence[str] = ADDRESSES) -> None:
        self.robots: str | None = None
        self.robots_status: int | None = None
        self.robots_redirect: str | None = None  # host 0's robots.txt answers 302 to this
        self.log: list[Hit] = []
        self.errors: list[BaseException] = []
        self._addresses = tuple(addresses)
        self._servers: list[_HostServer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._hits: Counter[tuple[str, str]] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._connections: Counter[str] = Counter()
        self._last_arrival: dict[str, float] = {}
        self.arrivals: list[tuple[float, bool]] = []  # /rate-limited: (server time, refused?)
        self.versions: Counter[int] = Counter()  # /fresh/<kind>/<i>: page i's content version
        self.body_bytes = 0  # response body bytes sent, all hosts

    def start(self) -> None:
        self._stopping.clear()
        try:
            for address in self._addresses:
                server = _HostServer(self, address)
                self._servers.append(server)
                thread = threading.Thread(
                    target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=server.host
                )
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
        for server in self._servers:
            server.disconnect_all()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def hosts(self) -> tuple[str, ...]:
        """The `host:port` of every running server, in address order."""
        return tuple(server.host for server in self._servers)

    def host(self, host_index: int = 0) -> str:
        return self.hosts[host_index]

    def base(self, host_index: int = 0) -> str:
        return f"http://{self.host(host_index)}"

    def url(self, path: str, host_index: int = 0) -> str:
        return self.base(host_index) + path

    def hits(self, path: str, host: str | int | None = None) -> int:
        """Requests for `path` (query string included), on one host or all of them."""
        with self._lock:
            if host is None:
                return sum(n for (_, seen), n in self._hits.items() if seen == path)
            return self._hits[self._key(host), path]

    def hits_total(self, host: str | int | None = None) -> int:
        with self._lock:
            if host is None:
                return self._hits.total()
            key = self._key(host)
            return sum(n for (seen, _), n in self._hits.items() if seen == key)

    def peak_concurrency(self, host: str | int = 0) -> int:
        """The most requests this host was serving at one moment."""
        with self._lock:
            return self._peak[self._key(host)]

    def connections(self, host: str | int = 0) -> int:
        """TCP connections this host accepted (keep-alive reuse keeps it low)."""
        with self._lock:
            return self._connections[self._key(host)]

    def reset(self) -> None:
        """Forget hits, log, peaks, connections and errors; keeps `robots` settings."""
        with self._lock:
            self._hits.clear()
            self._connections.clear()
            self._peak = Counter(self._in_flight)
            self.log.clear()
            self.errors.clear()
            self.arrivals.clear()
            self._last_arrival.clear()
            self.body_bytes = 0

    def __repr__(self) -> str:
        with self._lock:
            busy = sum(self._in_flight.values())
            return f"<TestSite {' '.join(self.hosts)} hits={self._hits.total()} in_flight={busy}>"

    def _key(self, host: str | int) -> str:
        return self.hosts[host] if isinstance(host, int) else host

    def _begin(self, host: str, path: str) -> int:
        with self._lock:
            self._hits[host, path] += 1
            self._in_flight[host] += 1
            self._peak[host] = max(self._peak[host], self._in_flight[host])
            return self._hits[host, path]

    def _end(self, hit: Hit) -> None:
        with self._lock:
            self._in_flight[hit.host] -= 1
            self.log.append(hit)

    def _too_fast(self, host: str, min_gap: float) -> bool:
        with self._lock:
            now = time.monotonic()
            last = self._last_arrival.get(host)
            self._last_arrival[host] = now
            refused = last is not None and now - last < min_gap
            self.arrivals.append((now, refused))
            return refused

    def mutate(self, *pages: int) -> None:
        """Change the content of these /fresh pages (a new version, ETag and Last-Modified)."""
        with self._lock:
            self.versions.update(pages)

    def _sent(self, size: int) -> None:
        with self._lock:
            self.body_bytes += size

    def _connected(self, host: str) -> None:
        with self._lock:
            self._connections[host] += 1

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)
