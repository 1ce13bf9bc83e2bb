"""robots.txt costs a site one bounded download: at most 500 KiB is read and kept (RFC 9309),
however large the file, and it is not downloaded again for every page."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crawler import Response, Spider
from crawler.robots import ROBOTS_MAX_BYTES
from tests.crawling import crawl
from tests.site import TestSite


async def test_an_oversized_robots_txt_is_read_once_and_cut_at_500_kib(
    site: TestSite, tmp_path: Path, tmp_state: Path
) -> None:
    filler = "# padding line of a robots.txt far larger than any crawler reads\n"
    site.robots = (
        "User-agent: *\nDisallow: /private/\n"
        + filler * (2 * ROBOTS_MAX_BYTES // len(filler))
        + "Disallow: /leaf/\n"  # past the cut: ignored
    )

    class Leaves(Spider):
        name = "leaves"
        start_urls = (*(site.url(f"/leaf/{i}") for i in range(5)), site.url("/private/x"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Leaves, tmp_path, state=tmp_state)
    assert len(result.items) == 5
    assert site.hits("/robots.txt") == 1
    assert result.stats.robots_blocked == 1
    with sqlite3.connect(tmp_state) as db:
        (kept,) = db.execute("SELECT length(robots_body) FROM hosts").fetchone()
    assert kept == ROBOTS_MAX_BYTES


async def test_a_robots_txt_redirect_off_site_is_not_followed(
    site: TestSite, tmp_path: Path, tmp_state: Path
) -> None:
    """robots.txt redirects meet allowed_domains like any hop; the target is never fetched, and
    nothing of it is stored: a robots.txt that cannot be followed means no rules (RFC 9309)."""
    site.robots_redirect = site.url("/private/internal", 1)

    class Local(Spider):
        name = "local"
        allowed_domains = (site.host(0).partition(":")[0],)
        start_urls = (site.url("/leaf/1"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Local, tmp_path, state=tmp_state)
    assert len(result.items) == 1
    assert site.hits_total(1) == 0
    with sqlite3.connect(tmp_state) as db:
        assert db.execute("SELECT robots_status, robots_body FROM hosts").fetchall() == [(404, b"")]
