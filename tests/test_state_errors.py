"""A state database that fails mid-crawl stops the crawl with one StateError, and the state it
leaves resumes to every item exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, Spider
from crawler.errors import StateError
from tests.crawling import crawl
from tests.site import ITEMS_PER_PAGE, PAGED_PAGES, TestSite


@pytest.mark.slow
async def test_a_locked_state_stops_the_crawl_with_one_error(
    site: TestSite, tmp_path: Path, tmp_state: Path
) -> None:
    """Another process takes the state file's write lock while the crawl runs: each of its
    writes waits out SQLite's busy timeout, then fails."""
    holder: list[sqlite3.Connection] = []

    class Paged(Spider):
        name = "paged"
        start_urls = (site.url("/paged?page=1"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for node in response.css("span.name"):
                yield {"name": node.text()}
            if response.url.endswith("page=2") and not holder:
                other = sqlite3.connect(tmp_state, isolation_level=None)
                other.execute("BEGIN EXCLUSIVE")
                holder.append(other)
            for request in response.follow_all(css="a.next"):
                yield request

    with pytest.raises(
        StateError, match=r"state file .*state\.db cannot be used: database is locked"
    ):
        await crawl(Paged, tmp_path, state=tmp_state, obey_robots=False, concurrency=1)
    holder[0].rollback()
    holder[0].close()

    site.reset()
    result = await crawl(Paged, tmp_path, state=tmp_state, obey_robots=False)
    names = [item["name"] for item in result.items]
    assert len(names) == len(set(names)) == PAGED_PAGES * ITEMS_PER_PAGE
