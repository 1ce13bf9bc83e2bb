"""The Scrapy port example (spiders/books_port.py) against the sandbox bookstore: killed and
resumed, it exports every book once and keeps its errback's record once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from crawler.sandbox import SandboxServer, expected_items
from tests.test_cli import ROOT, crawler, lines, start, wait_for_lines
from tests.test_spider_state import saved_state


@pytest.mark.slow
def test_the_scrapy_port_exports_every_book_once_across_a_sigkill(tmp_path: Path) -> None:
    feed, state = tmp_path / "books.jsonl", tmp_path / "books.db"
    with SandboxServer() as server:
        args = ("run", "books_port", "-a", f"base_url={server.base_url}", "-o", str(feed),
                "--state", str(state), "--no-progress", "-s", "download_delay=0.02")  # fmt: skip
        process = start(*args, cwd=ROOT)
        wait_for_lines(feed, 0, process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        killed_at = lines(feed)
        finished = crawler(*args, cwd=ROOT)
        expected = {item["upc"]: item for item in expected_items(server.base_url)}

    assert finished.returncode == 0, finished.stderr
    assert 0 < killed_at < len(expected)
    books = [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()]
    assert sorted(book["upc"] for book in books) == sorted(expected)
    for book in books:
        truth = expected[book["upc"]]
        assert (book["title"], book["price"], book["category"], book["url"]) == (
            truth["title"], truth["price"], truth["category"], truth["url"],
        )  # fmt: skip
        assert book["listing"] in ("All books", truth["category"])
    saved = saved_state(state)
    assert saved["missing"] == [f"{server.base_url}/about.html"]
    assert sorted(saved["seen_upcs"]) == sorted(expected)
