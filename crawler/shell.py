"""``crawler shell``: an interactive console holding a fetched page, for writing selectors.

The console's names are Scrapy's: ``response``, ``request``, ``fetch(url)``, ``view(response)``
and ``settings``. IPython is used when it is installed and the console is a terminal.
"""

from __future__ import annotations

import asyncio
import code
import re
import sys
import tempfile
import webbrowser
from html import escape
from pathlib import Path
from typing import Any

from crawler.errors import CrawlerError
from crawler.fetcher import Fetcher
from crawler.request import Request
from crawler.response import Response
from crawler.settings import Settings

BANNER = """crawler shell: names available
  response, request   the last page fetched and its request
  fetch(url)          fetch a URL (or a Request) with the crawl's client; sets response
  view(response)      save a page to a temporary file and open it in a browser
  settings            the resolved settings
  response.css("a::attr(href)").getall(), response.css("h1::text").get(), ...
"""

_HEAD = re.compile(rb"<head[^>]*>", re.IGNORECASE)
_BASE = re.compile(rb"<base\s", re.IGNORECASE)


class Shell:
    """The console's state: one event loop and one client kept for the whole session.

    >>> with Shell(settings) as shell:              # doctest: +SKIP
    ...     shell.fetch("http://127.0.0.1:8765/")
    ...     shell.interact()
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The client's connections belong to one loop, so every fetch runs on this one.
        self._runner = asyncio.Runner()
        self._fetcher = Fetcher(settings)
        self.namespace: dict[str, Any] = {
            "settings": settings,
            "fetch": self.fetch,
            "view": view,
            "request": None,
            "response": None,
        }

    def __repr__(self) -> str:
        return f"<Shell response={self.namespace['response']!r} fetcher={self._fetcher!r}>"

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch(self, url: str | Request) -> Response | None:
        """Fetch ``url`` (redirects followed, as in a crawl) and make it ``response``."""
        request = url if isinstance(url, Request) else Request(url)
        # The page asked for is a start host, as in a crawl: loopback and LAN pages work.
        self._fetcher.guard.exempt_start(request.url)
        try:
            result = self._runner.run(self._fetcher.fetch(request))
        except CrawlerError as error:
            print(f"fetch failed: {error}", file=sys.stderr)
            return None
        if not isinstance(result, Response):
            print(f"not fetched: {result.value}", file=sys.stderr)
            return None
        self.namespace.update(request=request, response=result)
        print(f"[{result.status}] {result.url} ({len(result.body)} bytes)", file=sys.stderr)
        return result

    def interact(self) -> None:
        """Run the console until end of input."""
        if sys.stdin.isatty():
            try:
                from IPython import start_ipython  # noqa: PLC0415 - an optional extra
            except ImportError:
                pass
            else:
                start_ipython(argv=[], user_ns=self.namespace, display_banner=False)
                return
        code.interact(banner=BANNER, local=self.namespace, exitmsg="")

    def close(self) -> None:
        try:
            self._runner.run(self._fetcher.close())
        finally:
            self._runner.close()


def view(response: Response) -> Path:
    """Save the page to a temporary file and open it in a browser (on a terminal); relative
    links keep working through a ``<base href>`` put in its head."""
    body = response.body
    if response.is_html and not _BASE.search(body):
        base = f'<base href="{escape(response.url)}">'.encode()
        head = _HEAD.search(body)
        at = head.end() if head else 0
        body = body[:at] + base + body[at:]
    suffix = f".{response.kind.value}" if response.kind.is_markup else ".txt"
    with tempfile.NamedTemporaryFile("wb", prefix="crawler-", suffix=suffix, delete=False) as file:
        file.write(body)
    path = Path(file.name)
    print(f"saved {response.url} to {path}", file=sys.stderr)
    if sys.stdin.isatty():
        webbrowser.open(path.as_uri())
    return path
