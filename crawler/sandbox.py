"""The offline demo site, served on loopback: the bookstore's pages with validators, and changes.

Tests, benchmarks and `crawler sandbox` crawl it instead of the web. Every page has a strong ETag
and a Last-Modified, and a conditional GET of an unchanged page gets a 304. `change_books` changes
some books (their price), so their pages' ETags and Last-Modified move, as a recrawl expects.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

from crawler.bookstore import (
    BROKEN_PATHS,
    CATALOGUE,
    CATEGORIES,
    NOT_FOUND,
    PAGE_SIZE,
    Book,
    book_lastmod,
    book_url,
    category_path,
    expected_items,
    render_site,
    reprice,
)

__all__ = [
    "BROKEN_PATHS",
    "CATALOGUE",
    "CATEGORIES",
    "PAGE_SIZE",
    "Book",
    "SandboxServer",
    "book_lastmod",
    "book_url",
    "category_path",
    "expected_items",
    "is_not_modified",
]

IDLE_TIMEOUT_S = 15.0
_HTML = "text/html; charset=utf-8"
_CONTENT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "xml": "application/xml",
    "gz": "application/gzip",  # a file that is gzip, not a body sent with Content-Encoding
}
# Pages other than book pages were last modified when the sitemaps say the listings were.
_SITE_UPDATED_S = calendar.timegm((2026, 1, 1, 8, 0, 0))
_BOOK_UPDATED_S = {
    book.path: calendar.timegm(time.strptime(book_lastmod(book), "%Y-%m-%d")) for book in CATALOGUE
}
# Coprime with the 60 books: successive changes visit every book before any book changes twice.
_CHANGE_STRIDE = 7
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


@dataclass(frozen=True, slots=True)
class _Page:
    body: bytes
    content_type: str
    etag: str  # strong: a hash of the body, so it is the same on every start
    modified_s: int

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.modified_s, usegmt=True)


def _site_pages(
    rendered: Mapping[str, bytes], before: Mapping[str, _Page], now_s: int
) -> dict[str, _Page]:
    """Pages with validators; a page whose bytes did not change keeps its ETag and Last-Modified."""
    pages = {}
    for path, body in rendered.items():
        old = before.get(path)
        if old is not None and old.body == body:
            pages[path] = old
            continue
        # Strictly later than the last version, so If-Modified-Since sees two changes in a second.
        if old is not None:
            modified_s = max(now_s, old.modified_s + 1)
        else:
            modified_s = _BOOK_UPDATED_S.get(path, _SITE_UPDATED_S)
        content_type = _CONTENT_TYPES.get(path.rpartition(".")[2], _HTML)
        etag = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
        pages[path] = _Page(body, content_type, etag, modified_s)
    return pages


def is_not_modified(
    etag: str, modified_s: int, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """Whether a GET or HEAD with these conditions gets a 304 (RFC 9110 §13.2.2).

    If-None-Match decides when present, by weak comparison (``W/"x"`` matches ``"x"``);
    If-Modified-Since counts only without it, and an unparsable date is ignored.

    >>> is_not_modified('"a1"', 0, 'W/"a1", "b2"', None)
    True
    """
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        return etag.removeprefix("W/").strip('"') in _ENTITY_TAG.findall(if_none_match)
    if if_modified_since is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:  # "-0000": an HTTP-date is always GMT
        since = since.replace(tzinfo=UTC)
    return modified_s <= since.timestamp()


class _SiteHTTPServer(ThreadingHTTPServer):
    # Daemon handler threads are not joined, so stop() never waits on a client's idle keep-alive.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], idle_timeout_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        super().__init__(address, _Handler)
        # Replaced whole on a change, never mutated: a handler reads one consistent version.
        self.pages: dict[str, _Page] = {}
        self.requests_served = 0
        self.not_modified_served = 0
        self._lock = threading.Lock()

    def count_request(self, *, not_modified: bool = False) -> None:
        with self._lock:
            self.requests_served += 1
            self.not_modified_served += not_modified

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a crawler that is killed or stopped drops its connections mid-request."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed ACKs stall
    # every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True
    server: _SiteHTTPServer

    def setup(self) -> None:
        super().setup()
        # An idle keep-alive connection holds a thread: hang up on it after a while.
        self.connection.settimeout(self.server.idle_timeout_s)

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a test run should not print one line per request."""

    def _respond(self, *, with_body: bool) -> None:
        page = self.server.pages.get(urlsplit(self.path).path)
        if page is None:
            self.server.count_request()
            self._send(404, _HTML, NOT_FOUND, with_body=with_body)
            return
        # Several If-None-Match lines are one comma-separated list.
        tags = self.headers.get_all("If-None-Match")
        if_none_match = ", ".join(tags) if tags else None
        if is_not_modified(
            page.etag, page.modified_s, if_none_match, self.headers.get("If-Modified-Since")
        ):
            self.server.count_request(not_modified=True)
            self.send_response(304)
            self._send_validators(page)
            self.end_headers()
            return
        self.server.count_request()
        self._send(200, page.content_type, page.body, with_body=with_body, page=page)

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        *,
        with_body: bool,
        page: _Page | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if page is not None:
            self._send_validators(page)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _send_validators(self, page: _Page) -> None:
        self.send_header("ETag", page.etag)
        self.send_header("Last-Modified", page.last_modified)


class SandboxServer:
    """The sandbox site on a background thread; binds at construction (port 0 picks a free one).

    with SandboxServer() as server:
        urllib.request.urlopen(server.base_url + "/robots.txt")
        changed_urls = server.change_books(5)  # five books cost £1.00 more
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        self._host = host
        self._httpd = _SiteHTTPServer((host, port), idle_timeout_s)
        self._httpd.pages = _site_pages(render_site(self.base_url), {}, 0)
        self._books = list(CATALOGUE)
        self._changed_at: dict[str, str] = {}  # slug -> when it last changed, for the sitemap
        self._changes = 0
        self._change_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._changer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._httpd.server_port}"

    @property
    def requests_served(self) -> int:
        return self._httpd.requests_served

    @property
    def not_modified_served(self) -> int:
        """How many requests got a 304."""
        return self._httpd.not_modified_served

    @property
    def books(self) -> tuple[Book, ...]:
        """The catalogue as served now, changes included: ``expected_items(url, server.books)``."""
        with self._change_lock:
            return tuple(self._books)

    def change_books(self, count: int) -> list[str]:
        """Change `count` books and return their page URLs: each costs £1.00 more, so its item,
        its page, the listings that show it and the books sitemap get a new ETag and
        Last-Modified. Deterministic: every book changes once before any changes twice."""
        if not 0 <= count <= len(CATALOGUE):
            raise ValueError(f"can change 0 to {len(CATALOGUE)} books at a time, not {count}")
        with self._change_lock:
            now_s = int(time.time())
            picks = [(self._changes + i) * _CHANGE_STRIDE % len(CATALOGUE) for i in range(count)]
            self._changes += count
            stamp = datetime.fromtimestamp(now_s, UTC).isoformat()
            for index in picks:
                self._books[index] = reprice(self._books[index])
                self._changed_at[self._books[index].slug] = stamp
            rendered = render_site(self.base_url, self._books, self._changed_at)
            self._httpd.pages = _site_pages(rendered, self._httpd.pages, now_s)
        return [book_url(self.base_url, self._books[index]) for index in picks]

    def change_every(
        self,
        interval_s: float,
        count: int,
        on_change: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Change `count` books every `interval_s` seconds on a daemon thread until `stop()`;
        `on_change` gets each batch's URLs (the `crawler sandbox --change-every` demo)."""
        if interval_s <= 0 or not 0 < count <= len(CATALOGUE):
            raise ValueError(
                f"--change-every must be above 0 s and --change-count 1 to {len(CATALOGUE)}"
            )
        if self._changer is not None:
            raise RuntimeError("the sandbox already changes books periodically")

        def change() -> None:
            while not self._stopping.wait(interval_s):
                urls = self.change_books(count)
                if on_change is not None:
                    on_change(urls)

        self._changer = threading.Thread(target=change, name="sandbox-changes", daemon=True)
        self._changer.start()

    def start(self) -> str:
        """Serve in a daemon thread and return the base URL; a stopped server cannot restart."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
                name="sandbox-server",
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._changer is not None:
            self._changer.join()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (the `crawler sandbox` command)."""
        try:
            self._httpd.serve_forever()
        finally:
            self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running" if self._thread else "bound"
        return (
            f"<SandboxServer {self.base_url} {state} requests_served={self.requests_served}"
            f" not_modified={self.not_modified_served} books_changed={self._changes}>"
        )
