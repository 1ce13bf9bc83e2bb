"""Pages that would hurt a crawl: binary files full of link-like bytes, and HTML built to be slow
to parse. None is mined for links, none holds up the other hosts, and a page over max_parse_s
fails alone while the crawl goes on."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Failure, Request, Response, Spider
from crawler.errors import ParseBudgetExceeded
from crawler.parse_worker import HEADER_BYTES, PARSED, READY, serve
from crawler.parsing import INLINE_PARSE_BYTES, SCREEN_TAGS, PageParser
from crawler.settings import Settings
from tests.crawling import crawl
from tests.site import BINARIES, TestSite, hostile_page

BINARY_PATHS = (
    "/binary/pdf",
    "/binary/png",
    "/binary/png?type=none",  # no Content-Type: sniffed
    "/binary/gif?type=none",
    "/binary/blob?type=none",
    "/binary/pdf?type=text/html",  # a PDF that claims to be HTML
    "/binary/zip",
)


def _response(body: bytes, content_type: str | None = "text/html") -> Response:
    headers = httpx.Headers({"content-type": content_type} if content_type else {})
    return Response(
        "http://example.com/", 200, headers, body, request=Request("http://example.com/")
    )


def _page(size: int) -> bytes:
    rows = (f'<li><a href="/item/{i}">item {i}</a></li>' for i in range(size // 30 + 1))
    return b"<html><body><ul>" + "".join(rows).encode()[:size] + b"</ul></body></html>"


def _workers() -> Iterator[int]:
    """Screening processes that are children of this test process, seen by the OS."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"parse_worker.py" in cmdline:
            yield int(entry.name)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def test_site_serves_binaries_hostile_pages_and_a_chain(site: TestSite) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        pdf = client.get(site.url("/binary/pdf"))
        untyped = client.get(site.url("/binary/png?type=none"))
        nested = client.get(site.url("/hostile/nested?n=3"))
        chain = client.get(site.url("/chain/4?length=5"))
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert b'href="/binary-link/1"' in pdf.content
    assert "content-type" not in untyped.headers
    assert b"<div><div><div>deep</div></div></div>" in nested.content
    assert nested.content.endswith(b'<a href="/leaf/3">end</a>')
    assert b"/chain/5" not in chain.content  # the last page of the chain links nowhere
    assert len(hostile_page("links", 500_000)) < Settings().max_response_bytes


# The screening process's protocol, on in-memory streams.


def test_worker_answers_once_per_page_and_stops_at_the_end_of_input() -> None:
    pages = b"".join(len(html).to_bytes(HEADER_BYTES, "big") + html for html in (b"<p>a", b""))
    answers = io.BytesIO()
    serve(io.BytesIO(pages + b"\x00\x00"), answers)  # a cut header ends it, no answer
    assert answers.getvalue() == READY + PARSED + PARSED


def test_worker_stops_at_a_cut_page() -> None:
    answers = io.BytesIO()
    serve(io.BytesIO((100).to_bytes(HEADER_BYTES, "big") + b"<p>only part"), answers)
    assert answers.getvalue() == READY


# PageParser against a real screening process.


async def test_a_small_page_is_left_to_parse_on_first_read() -> None:
    parser = PageParser(Settings(max_links_per_page=7))
    response = _response(_page(SCREEN_TAGS * 10 - 100))  # some 30 bytes per three tags
    await parser.prepare(response)

    assert (parser.parsed_off_loop, parser.worker_pid) == (0, None)  # no process started
    assert response.link_limit == 7
    assert len(response.css("a")) > 100
    await parser.aclose()


async def test_a_large_page_is_parsed_off_the_loop() -> None:
    parser = PageParser(Settings())
    response = _response(_page(200_000))
    try:
        await parser.prepare(response)
        assert parser.parsed_off_loop == 1
        assert parser.worker_pid is not None
        assert response.css_first("a[href='/item/0']") is not None
    finally:
        await parser.aclose()
    assert parser.worker_pid is None


async def test_a_large_page_with_few_tags_is_parsed_in_a_thread_unscreened() -> None:
    parser = PageParser(Settings())
    body = b"<html><body><p>" + b"lorem ipsum " * 90_000 + b"</p><a href=/x>x</a></body></html>"
    response = _response(body)
    assert len(body) > INLINE_PARSE_BYTES
    await parser.prepare(response)
    assert (parser.parsed_off_loop, parser.worker_pid) == (1, None)
    assert response.css_first("a[href='/x']") is not None
    await parser.aclose()


async def test_a_small_page_with_many_tags_is_screened() -> None:
    parser = PageParser(Settings())
    body = b"<b>" * (SCREEN_TAGS + 1)
    assert len(body) <= INLINE_PARSE_BYTES
    response = _response(body)
    try:
        await parser.prepare(response)
        assert parser.parsed_off_loop == 1
        assert parser.worker_pid is not None
    finally:
        await parser.aclose()


@pytest.mark.parametrize("name", sorted(BINARIES))
async def test_large_bodies_that_are_not_markup_are_not_parsed(name: str) -> None:
    content_type, head = BINARIES[name]
    parser = PageParser(Settings())
    response = _response(head + bytes(range(256)) * 400, content_type)
    await parser.prepare(response)

    assert (parser.parsed_off_loop, parser.worker_pid) == (0, None)
    assert response.css("a") == []


@needs_proc
async def test_a_page_over_budget_fails_and_its_parse_is_killed() -> None:
    parser = PageParser(Settings(max_parse_s=0.3))
    bomb = _response(hostile_page("formatting", 3_000))  # ~5 s of parsing on an idle machine
    try:
        with pytest.raises(ParseBudgetExceeded, match=r"HTML takes over max_parse_s=0\.3s"):
            await parser.prepare(bomb)
        assert parser.over_budget == 1
        assert parser.worker_pid is None
        assert list(_workers()) == []  # killed and reaped, not left to finish

        after = _response(_page(100_000))
        await parser.prepare(after)  # a new screening process takes over
        assert parser.parsed_off_loop == 1
        assert after.css_first("a") is not None
    finally:
        await parser.aclose()
    assert list(_workers()) == []


async def test_a_worker_that_died_between_pages_is_replaced() -> None:
    parser = PageParser(Settings())
    try:
        await parser.prepare(_response(_page(50_000)))
        first = parser.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await parser.prepare(_response(_page(50_000)))
        assert parser.worker_pid not in (None, first)
        assert parser.parsed_off_loop == 2
    finally:
        await parser.aclose()


async def test_without_a_budget_large_pages_are_parsed_in_a_thread_only() -> None:
    parser = PageParser(Settings(max_parse_s=None))
    response = _response(_page(100_000))
    await parser.prepare(response)

    assert (parser.parsed_off_loop, parser.worker_pid) == (1, None)
    assert response.css_first("a") is not None
    await parser.aclose()


async def test_a_worker_that_cannot_start_leaves_pages_without_a_budget(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    parser = PageParser(Settings())
    response = _response(_page(100_000))
    with caplog.at_level(logging.ERROR, "crawler.parsing"):
        await parser.prepare(response)

    assert "large pages are parsed without max_parse_s" in caplog.text
    assert parser.parsed_off_loop == 1
    assert response.css_first("a") is not None
    await parser.aclose()


# Whole crawls of the test site.


def everything_spider(urls: tuple[str, ...]) -> type[Spider]:
    class Everything(Spider):
        name = "everything"
        start_urls = urls

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url, "kind": response.kind.value, "a": len(response.css("a"))}
            for request in response.follow_all(css="a"):
                yield request

    return Everything


async def test_binary_files_are_never_mined_for_links(site: TestSite, tmp_path: Path) -> None:
    urls = (*(site.url(path) for path in BINARY_PATHS), site.url("/fan/3"))
    result = await crawl(everything_spider(urls), tmp_path, obey_robots=False)

    items = {item["url"]: item for item in result.items}
    for path in BINARY_PATHS:
        assert items[site.url(path)] == {"url": site.url(path), "kind": "binary", "a": 0}
        assert site.hits(path, 0) == 1
    assert site.hits("/binary-link/1") + site.hits("/binary-link/2") == 0
    # An HTML page of the same crawl still has its links followed.
    assert items[site.url("/fan/3")]["a"] == 3
    assert [site.hits(f"/leaf/{i}", 0) for i in range(3)] == [1, 1, 1]
    assert result.stats.failures == 0


def hostile_spider(urls: tuple[str, ...]) -> type[Spider]:
    """Records each page's heading and link count; follows only /leaf/ and /chain/ links (the
    500,000 links of /hostile/links lead nowhere)."""

    class Hostile(Spider):
        name = "hostile"
        start_urls = urls

        async def start_requests(self) -> AsyncIterator[Request]:
            for url in self.start_urls:
                yield Request(url, errback="failed")

        async def failed(self, failure: Failure) -> AsyncIterator[Any]:
            yield {"error": failure.type.__name__}

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            heading = response.css_first("h1")
            requests = list(response.follow_all(css="a"))
            yield {
                "url": response.url,
                "h1": heading.text() if heading is not None else None,
                "links": len(requests),
            }
            for request in requests:
                if "/leaf/" in request.url or "/chain/" in request.url:
                    yield request

    return Hostile


CHAIN_LENGTH = 200


async def test_a_slow_page_is_parsed_while_other_hosts_are_crawled(
    site: TestSite, tmp_path: Path
) -> None:
    """~0.5 s to parse on an idle machine, screened then parsed again: if that held the event
    loop, host 2's chain of pages would stand still until the page's last link is requested."""
    heavy, chain = "/hostile/nested?n=20000", f"/chain/0?delay=0.01&length={CHAIN_LENGTH}"
    spider = hostile_spider((site.url(heavy, 1), site.url(chain, 2)))
    result = await crawl(spider, tmp_path, obey_robots=False)

    [fetched] = [hit for hit in site.log if hit.path == heavy]
    [parsed] = [hit for hit in site.log if hit.path == "/leaf/20000"]  # its last link
    meanwhile = [
        hit
        for hit in site.log
        if hit.host == site.host(2) and fetched.ended < hit.started < parsed.started
    ]
    # At ~10 ms a page the chain fetches dozens of pages while the page is parsed; a loop held
    # for the parse would let through only the one or two requests already on their way.
    assert len(meanwhile) >= 10
    chain_items = {item["h1"] for item in result.items if "/chain/" in item["url"]}
    assert chain_items == {str(k) for k in range(CHAIN_LENGTH)}
    assert result.stats.failures == 0


HOSTILE_PATHS = {
    "nested": "/hostile/nested",  # 100,000 nested <div>: ~20 s to parse, over the budget
    "long-line": "/hostile/long-line",  # 5 MB on one line
    "nul": "/hostile/nul",  # NUL bytes throughout
    "unclosed": "/hostile/unclosed",  # a million bytes of tags never closed
    "links": "/hostile/links",  # 500,000 links
}


@needs_proc
async def test_hostile_pages_parse_in_bounded_time_or_fail_alone(
    site: TestSite, tmp_path: Path
) -> None:
    urls = (
        *(site.url(path, 1) for path in HOSTILE_PATHS.values()),
        site.url(f"/chain/0?length={CHAIN_LENGTH}", 2),
    )
    result = await crawl(
        hostile_spider(urls), tmp_path, obey_robots=False, max_parse_s=3.0, max_links_per_page=1000
    )

    items = {item["url"]: item for item in result.items if "url" in item}
    assert site.url(HOSTILE_PATHS["nested"], 1) not in items
    assert dict(result.stats.failure_reasons) == {"ParseBudgetExceeded": 1}
    assert {"error": "ParseBudgetExceeded"} in result.items  # its errback was called
    for shape in ("long-line", "nul", "unclosed"):
        assert items[site.url(HOSTILE_PATHS[shape], 1)]["h1"] == shape
    assert [site.hits(f"/leaf/{n}", 1) for n in (5_000_000, 2_000_000, 1_000_000)] == [1, 1, 1]
    # The links page: parsed, but follow_all stops at max_links_per_page; its last link, the
    # 500,001st, is never requested.
    assert items[site.url(HOSTILE_PATHS["links"], 1)]["links"] == 1000
    assert site.hits("/leaf/500000", 1) == 0
    chain_items = {item["h1"] for url, item in items.items() if "/chain/" in url}
    assert chain_items == {str(k) for k in range(CHAIN_LENGTH)}
    assert list(_workers()) == []  # the screening process ended with the crawl


async def test_the_loop_keeps_ticking_while_a_page_is_screened() -> None:
    """A direct look at the loop: a ticker's longest wait while a slow page is prepared."""
    parser = PageParser(Settings())
    response = _response(hostile_page("nested", 20_000))
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    async with asyncio.TaskGroup() as group:
        group.create_task(tick())
        started = asyncio.get_running_loop().time()
        await parser.prepare(response)
        took = asyncio.get_running_loop().time() - started
        done.set()
    await parser.aclose()
    # Screening then parsing takes ~1 s; a ticker blocked by either would wait half of that.
    assert max(gaps) < took / 4
