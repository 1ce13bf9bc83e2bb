"""Tools for testing spiders: a Response built from HTML, a callback's output collected, and a
small loopback site served from a dict of routes or a folder.

>>> from crawler.testing import make_response, run_callback_sync
>>> response = make_response("http://example.com/", "<a href='/next'>next</a>")
>>> output = run_callback_sync(MySpider().parse, response)  # doctest: +SKIP
>>> [request.url for request in output.requests]  # doctest: +SKIP
['http://example.com/next']
"""

from __future__ import annotations

import asyncio
import mimetypes
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from crawler.failure import Failure
from crawler.request import Request
from crawler.response import Response
from crawler.spider import iterate


def make_response(
    url: str,
    body: str | bytes = b"",
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    meta: dict[str, Any] | None = None,
) -> Response:
    """A Response as the fetcher would build it, Scrapy's ``HtmlResponse(url, body=...)``.

    A ``str`` body is HTML sent as UTF-8 (its Content-Type says so unless ``headers`` give
    one); bytes go as they are. ``request`` defaults to ``Request(url, meta=meta)``.
    """
    given = dict(headers or {})
    if isinstance(body, str):
        body = body.encode()
        if not any(name.lower() == "content-type" for name in given):
            given["Content-Type"] = "text/html; charset=utf-8"
    if request is None:
        request = Request(url, meta=meta)
    return Response(url, status, given, body, request=request)


@dataclass
class Output:
    """What a callback produced: the requests it yielded and the items (dicts or models)."""

    requests: list[Request] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)


async def run_callback(
    callback: Callable[..., Any], argument: Response | Failure, **cb_kwargs: Any
) -> Output:
    """Call a spider callback (or an errback, with a ``Failure``) and collect its output.

    Each request is checked as the crawl would check it before storing it: its ``meta`` and
    ``cb_kwargs`` must be JSON data (a SpiderError says which is not). Items are returned as the
    callback yielded them, before ``item_model`` and pipelines.
    """
    output = Output()
    async for value in iterate(callback(argument, **cb_kwargs)):
        if isinstance(value, Request):
            value.to_record()
            output.requests.append(value)
        else:
            output.items.append(value)
    return output


def run_callback_sync(
    callback: Callable[..., Any], argument: Response | Failure, **cb_kwargs: Any
) -> Output:
    """``run_callback`` for synchronous tests (not inside a running event loop)."""
    return asyncio.run(run_callback(callback, argument, **cb_kwargs))


@dataclass
class Page:
    """A route's answer when it is not a plain 200 page: a status, headers, a body."""

    body: str | bytes = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """A request the site received."""

    method: str
    path: str
    headers: dict[str, str]


Routes = Mapping[str, str | bytes | Page]


class LoopbackSite:
    """A threaded HTTP/1.1 server on 127.0.0.1 and a free port, for the time of a ``with``.

    ``routes`` maps a path (``"/"``, ``"/page/2"``, or with its query) to a ``str`` (an HTML
    page), ``bytes`` (typed by the path's extension) or a ``Page``; other paths are 404. A
    folder is served as its files are (``index.html`` for a folder), never outside it.

    >>> with LoopbackSite({"/": "<a href='/a'>a</a>", "/a": Page("gone", status=410)}) as site:
    ...     start = site.url("/")
    """

    def __init__(self, routes: Routes | str | Path) -> None:
        self.routes: Routes = routes if isinstance(routes, Mapping) else {}
        self.folder = None if isinstance(routes, Mapping) else Path(routes).resolve()
        self.seen: list[Seen] = []
        self.hits: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""  # kept once stopped, so a test can read what it requested

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<LoopbackSite {self._base_url or 'unstarted'} {state} requests={len(self.seen)}>"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; once the site has stopped, its port refuses connections."""
        if not self._base_url:
            raise RuntimeError("the site has not started: use it in a `with` block")
        return self._base_url

    def url(self, path: str = "/") -> str:
        return urljoin(self.base_url + "/", path)

    def __enter__(self) -> LoopbackSite:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    def answer(self, target: str) -> Page:
        """The page for a request target (a path and maybe a query)."""
        path = urlsplit(target).path or "/"
        if self.folder is not None:
            return self._file(unquote(path))
        found = self.routes.get(target, self.routes.get(path))
        if found is None:
            return Page("<h1>Not found</h1>", status=404)
        if isinstance(found, Page):
            return found
        if isinstance(found, str):
            return Page(found)
        return Page(found, headers={"Content-Type": _content_type(path)})

    def _file(self, path: str) -> Page:
        assert self.folder is not None
        file = (self.folder / path.lstrip("/")).resolve()
        if file.is_dir():
            file /= "index.html"
        if not file.is_relative_to(self.folder) or not file.is_file():
            return Page("<h1>Not found</h1>", status=404)
        return Page(file.read_bytes(), headers={"Content-Type": _content_type(file.name)})


def serve(routes: Routes | str | Path) -> LoopbackSite:
    """``with serve({...}) as site:`` a LoopbackSite for the time of the block."""
    return LoopbackSite(routes)


def _content_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _handler_for(site: LoopbackSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body are separate writes: without this, Nagle and delayed ACKs
            # stall each keep-alive response by ~40 ms.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            self._reply(send_body=True)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(send_body=True)

        def do_HEAD(self) -> None:
            self._reply(send_body=False)

        def _reply(self, *, send_body: bool) -> None:
            site.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            site.hits[urlsplit(self.path).path] += 1
            page = site.answer(self.path)
            body = page.body.encode() if isinstance(page.body, str) else page.body
            headers = dict(page.headers)
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "text/html; charset=utf-8"
            self.send_response(page.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # a test's output is not the place for an access log

    return Handler
