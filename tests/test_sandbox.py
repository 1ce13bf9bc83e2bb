"""The sandbox bookstore as a recrawl sees it: ETag and Last-Modified on every page, 304s for
unchanged pages, and books that change on demand (`change_books`) or on a timer."""

from __future__ import annotations

import email.utils
import gzip
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from crawler.sandbox import CATALOGUE, SandboxServer, expected_items, is_not_modified
from spiders.books import BooksSpider
from tests.crawling import crawl

ROOT = Path(__file__).resolve().parent.parent
BOOK = CATALOGUE[0].path
LISTING = "/catalogue/page-1.html"


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
        yield sandbox


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment must never see loopback test traffic.
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def get(
    client: httpx.Client, server: SandboxServer, path: str, **conditions: str
) -> httpx.Response:
    headers = {name.replace("_", "-"): value for name, value in conditions.items()}
    return client.get(server.base_url + path, headers=headers)


def test_pages_carry_a_strong_etag_and_last_modified(
    server: SandboxServer, client: httpx.Client
) -> None:
    for path in (BOOK, LISTING, "/", "/robots.txt", "/sitemap-books.xml.gz"):
        response = get(client, server, path)
        assert response.status_code == 200
        etag = response.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{16}"', etag), etag
        assert email.utils.parsedate_to_datetime(response.headers["last-modified"]).year >= 2025
        assert get(client, server, path).headers["etag"] == etag
    missing = get(client, server, "/no/such/page.html")
    assert missing.status_code == 404
    assert "etag" not in missing.headers


def test_etags_hash_the_content_so_a_restarted_sandbox_keeps_them(client: httpx.Client) -> None:
    # A book page holds no absolute links, so its bytes do not depend on the port.
    with SandboxServer() as first, SandboxServer() as second:
        one, two = get(client, first, BOOK), get(client, second, BOOK)
        assert one.content == two.content
        assert one.headers["etag"] == two.headers["etag"]
        assert one.headers["last-modified"] == two.headers["last-modified"]
        assert get(client, first, "/").headers["etag"] != get(client, second, "/").headers["etag"]


def test_if_none_match_with_the_etag_gets_a_304_with_its_validators(
    server: SandboxServer, client: httpx.Client
) -> None:
    page = get(client, server, BOOK)
    etag, modified = page.headers["etag"], page.headers["last-modified"]

    again = get(client, server, BOOK, if_none_match=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert (again.headers["etag"], again.headers["last-modified"]) == (etag, modified)
    head = client.head(server.base_url + BOOK, headers={"If-None-Match": etag})
    assert head.status_code == 304
    assert server.not_modified_served == 2
    # The keep-alive connection is still in step after the bodiless 304s.
    assert get(client, server, BOOK).content == page.content


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),  # weak comparison: W/ is ignored
        ('"nope", W/"other", {etag}', 304),
        ("*", 304),
        ('"nope"', 200),
        ('W/"nope", "also-not"', 200),
        ("{bare}", 200),  # an entity tag needs its quotes
    ],
)
def test_if_none_match_uses_weak_comparison_over_a_list(
    server: SandboxServer, client: httpx.Client, header: str, status: int
) -> None:
    etag = get(client, server, BOOK).headers["etag"]
    value = header.format(etag=etag, bare=etag.strip('"'))
    assert get(client, server, BOOK, if_none_match=value).status_code == status


def test_several_if_none_match_lines_are_one_list(
    server: SandboxServer, client: httpx.Client
) -> None:
    etag = get(client, server, BOOK).headers["etag"]
    headers = [("If-None-Match", '"nope"'), ("If-None-Match", etag)]
    assert client.get(server.base_url + BOOK, headers=headers).status_code == 304


def test_if_modified_since_counts_only_without_if_none_match(
    server: SandboxServer, client: httpx.Client
) -> None:
    modified = get(client, server, BOOK).headers["last-modified"]
    second_before = email.utils.parsedate_to_datetime(modified) - timedelta(seconds=1)
    earlier = email.utils.format_datetime(second_before, usegmt=True)
    assert get(client, server, BOOK, if_modified_since=modified).status_code == 304
    assert get(client, server, BOOK, if_modified_since=earlier).status_code == 200
    assert get(client, server, BOOK, if_modified_since="yesterday").status_code == 200
    # If-None-Match decides when both are sent (RFC 9110 13.2.2), even if the date matches.
    mixed = get(client, server, BOOK, if_none_match='"nope"', if_modified_since=modified)
    assert mixed.status_code == 200


def test_is_not_modified_is_a_pure_decision() -> None:
    assert is_not_modified('"a"', 100, '"b", W/"a"', None)
    assert not is_not_modified('"a"', 100, '"b"', "Thu, 01 Jan 1970 00:01:40 GMT")
    assert is_not_modified('"a"', 100, None, "Thu, 01 Jan 1970 00:01:40 GMT")
    assert not is_not_modified('"a"', 101, None, "Thu, 01 Jan 1970 00:01:40 GMT")
    assert is_not_modified('"a"', 100, None, "Thu, 01 Jan 1970 00:01:40 -0000")
    assert not is_not_modified('"a"', 100, None, None)


def test_changed_books_move_their_pages_validators_and_nothing_else(
    server: SandboxServer, client: httpx.Client
) -> None:
    paths = [book.path for book in CATALOGUE]
    before = {path: get(client, server, path) for path in [*paths, LISTING, "/"]}

    changed = server.change_books(5)

    assert len(set(changed)) == 5
    assert all(url.startswith(server.base_url + "/catalogue/") for url in changed)
    changed_paths = {url.removeprefix(server.base_url) for url in changed}
    for path in paths:
        old = before[path]
        revalidated = get(
            client,
            server,
            path,
            if_none_match=old.headers["etag"],
        )
        if path in changed_paths:
            assert revalidated.status_code == 200, path
            assert revalidated.headers["etag"] != old.headers["etag"]
            new_modified = email.utils.parsedate_to_datetime(revalidated.headers["last-modified"])
            assert new_modified > email.utils.parsedate_to_datetime(old.headers["last-modified"])
            by_date = get(client, server, path, if_modified_since=old.headers["last-modified"])
            assert by_date.status_code == 200
        else:
            assert revalidated.status_code == 304, path
    # The full listing shows prices, the home page does not.
    listing_etag = before[LISTING].headers["etag"]
    assert get(client, server, LISTING, if_none_match=listing_etag).status_code == 200
    assert get(client, server, "/", if_none_match=before["/"].headers["etag"]).status_code == 304


def test_changes_are_deterministic_and_visit_every_book_once() -> None:
    with SandboxServer() as one, SandboxServer() as two:
        strip = one.base_url, two.base_url
        first = [url.removeprefix(strip[0]) for url in one.change_books(3)]
        assert first == [url.removeprefix(strip[1]) for url in two.change_books(3)]
        rest = [url.removeprefix(strip[0]) for url in one.change_books(len(CATALOGUE) - 3)]
        assert sorted(first + rest) == sorted(book.path for book in CATALOGUE)
        assert one.change_books(0) == []
        for bad in (-1, len(CATALOGUE) + 1):
            with pytest.raises(ValueError, match="can change 0 to 60 books"):
                one.change_books(bad)
        assert "books_changed=60" in repr(one)


def test_a_second_change_in_the_same_second_still_moves_last_modified(
    server: SandboxServer, client: httpx.Client
) -> None:
    server.change_books(len(CATALOGUE))
    first = get(client, server, BOOK).headers["last-modified"]
    server.change_books(len(CATALOGUE))
    assert get(client, server, BOOK, if_modified_since=first).status_code == 200


def test_the_books_sitemap_gives_a_changed_book_its_change_time(
    server: SandboxServer, client: httpx.Client
) -> None:
    [url] = server.change_books(1)
    sitemap = gzip.decompress(get(client, server, "/sitemap-books.xml.gz").content).decode()
    entry = sitemap.split(f"<loc>{url}</loc><lastmod>", 1)[1].split("</lastmod>", 1)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", entry), entry


async def test_a_crawl_after_a_change_scrapes_the_changed_prices(tmp_path: Path) -> None:
    with SandboxServer() as server:
        changed = set(server.change_books(5))

        class Local(BooksSpider):
            base_url = server.base_url

        result = await crawl(Local, tmp_path)
        now = expected_items(server.base_url, server.books)
    originals = {item["url"]: item for item in expected_items(server.base_url)}
    assert sorted(result.items, key=str) == sorted(now, key=str)
    moved = {item["url"] for item in now if item != originals[item["url"]]}
    assert moved == changed
    for item in now:
        if item["url"] in changed:
            assert item["price"] == pytest.approx(float(originals[item["url"]]["price"]) + 1)


def test_change_every_changes_books_on_a_timer_until_stopped() -> None:
    batches: list[list[str]] = []
    two_batches = threading.Event()

    def record(urls: list[str]) -> None:
        batches.append(urls)
        if len(batches) == 2:
            two_batches.set()

    with SandboxServer() as server:
        server.change_every(0.02, 3, record)
        assert two_batches.wait(timeout=10)
        with pytest.raises(RuntimeError, match="already changes"):
            server.change_every(1, 1)
    done = len(batches)
    assert all(len(batch) == 3 for batch in batches)
    assert f"books_changed={3 * done}" in repr(server)
    for bad in ((0, 3), (1, 0), (1, len(CATALOGUE) + 1)):
        with SandboxServer() as fresh, pytest.raises(ValueError, match="--change-every"):
            fresh.change_every(*bad)


def sandbox_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "crawler", "sandbox", "--port", "0", *options]


def test_the_sandbox_command_changes_books_every_interval() -> None:
    process = subprocess.Popen(
        sandbox_command("--change-every", "0.05", "--change-count", "2"),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(4)]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert lines[0] == "2 books change every 0.05 s\n"
    assert lines[1].startswith("sandbox bookstore on http://127.0.0.1:")
    assert lines[2].startswith("changed 2 books: /catalogue/")
    assert lines[3].startswith("changed 2 books: /catalogue/")


def test_the_sandbox_command_refuses_a_bad_change_count_in_one_line() -> None:
    result = subprocess.run(
        sandbox_command("--change-every", "1", "--change-count", "61"),
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == ("error: --change-every must be above 0 s and --change-count 1 to 60\n")
