"""crawler.testing, the toolkit for users' spider tests: responses from HTML, a callback's
output collected, and loopback sites from routes or a folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Request, Response, Spider
from crawler.errors import SpiderError
from crawler.testing import Page, make_response, run_callback, run_callback_sync, serve

SHELF = """<html><head><base href="/books/"></head><body>
<article><h3><a href="one.html" title="One">One</a></h3><p class="price">£10</p></article>
<article><h3><a href="two.html" title="Two">Two</a></h3><p class="price">£12</p></article>
<li class="next"><a href="page-2.html">next</a></li>
</body></html>"""


class Shelf(Spider):
    name = "shelf"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for book in response.css("article"):
            link = book.css_first("h3 a")
            assert link is not None
            yield {"title": link.attributes["title"], "page": response.meta.get("page", 1)}
        for request in response.follow_all(css="li.next a"):
            yield request.replace(meta={"page": response.meta.get("page", 1) + 1})

    def parse_sync(self, response: Response, shelf: str) -> Iterator[Any]:
        yield {"shelf": shelf, "status": response.status}

    def parse_bad_meta(self, response: Response) -> Iterator[Any]:
        yield Request(response.urljoin("x"), meta={"when": object()})


def test_a_response_from_html_parses_as_a_fetched_one() -> None:
    response = make_response("http://shop.test/catalogue/", SHELF, meta={"page": 3})
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.encoding == "utf-8"
    assert response.is_html
    assert response.meta == {"page": 3}
    assert response.urljoin("one.html") == "http://shop.test/books/one.html"
    assert [node.text() for node in response.css("p.price")] == ["£10", "£12"]


def test_bytes_go_as_they_are_and_headers_as_given() -> None:
    response = make_response(
        "http://shop.test/data",
        b'{"n": 1}',
        status=201,
        headers={"Content-Type": "application/json"},
    )
    assert isinstance(response.headers, httpx.Headers)
    assert (response.status, response.json(), response.kind) == (201, {"n": 1}, "text")
    assert make_response("http://shop.test/logo", b"\x89PNG\r\n\x1a\n").kind == "binary"


async def test_run_callback_collects_requests_and_items() -> None:
    response = make_response("http://shop.test/catalogue/", SHELF, meta={"page": 1})
    output = await run_callback(Shelf().parse, response)
    assert output.items == [{"title": "One", "page": 1}, {"title": "Two", "page": 1}]
    [next_page] = output.requests
    assert (next_page.url, next_page.meta) == ("http://shop.test/books/page-2.html", {"page": 2})


def test_run_callback_sync_passes_cb_kwargs_to_a_plain_generator() -> None:
    response = make_response("http://shop.test/", "<p>hi</p>", status=404)
    output = run_callback_sync(Shelf().parse_sync, response, shelf="fiction")
    assert output.items == [{"shelf": "fiction", "status": 404}]
    assert output.requests == []


def test_a_request_the_crawl_could_not_store_fails_the_test() -> None:
    with pytest.raises(SpiderError, match="JSON data"):
        run_callback_sync(Shelf().parse_bad_meta, make_response("http://shop.test/", "<p></p>"))


def test_a_site_from_routes_answers_and_counts() -> None:
    routes = {
        "/": "<h1>home</h1>",
        "/data.json": b'{"a": 1}',
        "/moved": Page(status=301, headers={"Location": "/"}),
        "/q?page=2": "<p>second page</p>",
    }
    with serve(routes) as site, httpx.Client() as client:
        home = client.get(site.url("/"))
        data = client.get(site.url("/data.json"))
        moved = client.get(site.url("/moved"))
        second = client.get(site.url("/q?page=2"))
        missing = client.get(site.url("/nope"))
        client.post(site.url("/"), content=b"x=1")
    assert (home.status_code, home.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert (data.json(), data.headers["content-type"]) == ({"a": 1}, "application/json")
    assert (moved.status_code, moved.headers["location"]) == (301, "/")
    assert second.text == "<p>second page</p>"
    assert missing.status_code == 404
    assert site.hits == {"/": 2, "/data.json": 1, "/moved": 1, "/q": 1, "/nope": 1}
    assert [seen.method for seen in site.seen][-1] == "POST"
    assert "stopped" in repr(site)


def test_a_site_from_a_folder_serves_its_files_and_nothing_outside(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "books").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "books" / "index.html").write_text("<h1>books</h1>")
    (root / "books" / "style.css").write_text("h1 {}")
    (tmp_path / "secret.txt").write_text("not served")
    with serve(root) as site, httpx.Client() as client:
        assert client.get(site.url("/")).text == "<h1>home</h1>"
        assert client.get(site.url("/books/")).text == "<h1>books</h1>"
        css = client.get(site.url("/books/style.css"))
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert client.get(site.url("/../secret.txt")).status_code == 404
        assert client.get(site.url("/%2e%2e/secret.txt")).status_code == 404
        assert client.get(site.url("/missing.html")).status_code == 404
