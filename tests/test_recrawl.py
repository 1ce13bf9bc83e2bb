"""Recrawls against the loopback site: a finished crawl run again revalidates its pages with
the validators it kept, runs callbacks only on the pages that changed, and adapts its intervals."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler import Request, Response, Spider
from tests import test_cli as cli
from tests.crawling import Crawled, crawl
from tests.site import TestSite

PAGES = 20
DUE_NOW = {"revisit_after_s": 0, "revisit_min_s": 0}  # every known page is due at once
QUICK = {"obey_robots": False, "max_retries": 1, "retry_backoff": 0.0}


def fresh_spider(site: TestSite, kind: str, pages: int = PAGES, **meta: Any) -> type[Spider]:
    class Fresh(Spider):
        name = "fresh"
        start_urls: ClassVar = [site.url(f"/fresh/{kind}/?n={pages}")]

        async def parse(self, response: Response) -> AsyncIterator[Request]:
            for request in response.follow_all(css="a", callback=self.parse_page, meta=meta):
                yield request

        async def parse_page(self, response: Response) -> AsyncIterator[dict[str, int]]:
            number, version = response.css("h1.n::text").get(), response.css("p.v::text").get()
            assert number is not None
            assert version is not None
            yield {"n": int(number), "v": int(version)}

    return Fresh


async def run(spider: type[Spider], tmp_path: Path, name: str, **settings: Any) -> Crawled:
    """One run on the shared state, with a feed of its own."""
    folder = tmp_path / name
    folder.mkdir()
    return await crawl(spider, folder, state=tmp_path / "state.db", **{**QUICK, **settings})


def page_hits(site: TestSite, kind: str, *, index: bool = True) -> list[dict[str, str]]:
    """The headers of the requests for /fresh/<kind>/ pages (and its index page)."""
    prefix = f"/fresh/{kind}/"
    return [
        hit.headers
        for hit in site.log
        if hit.path.startswith(prefix) and (index or not hit.path.startswith(prefix + "?"))
    ]


async def test_nothing_changed_revalidates_every_page_for_a_tenth_of_the_bytes(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "strong")
    first = await run(spider, tmp_path, "one")
    first_bytes = site.body_bytes
    pages_before = first.stats.pages_crawled
    site.reset()

    second = await run(spider, tmp_path, "two", **DUE_NOW)

    hits = page_hits(site, "strong")
    assert len(hits) == PAGES + 1  # the start page and every page it led to, once each
    assert all("if-none-match" in headers for headers in hits)
    assert all("if-modified-since" in headers for headers in page_hits(site, "strong", index=False))
    assert second.items == []
    assert pages_before == PAGES + 1
    assert second.stats.pages_crawled == 0  # this run's: no callback ran
    assert second.stats.not_modified == PAGES + 1
    assert site.body_bytes <= first_bytes / 10
    assert len(first.items) == PAGES


async def test_reemit_gives_the_first_runs_items_again(site: TestSite, tmp_path: Path) -> None:
    spider = fresh_spider(site, "strong")
    first = await run(spider, tmp_path, "one")
    second = await run(spider, tmp_path, "two", on_unchanged="reemit", **DUE_NOW)
    third = await run(spider, tmp_path, "three", on_unchanged="reemit", **DUE_NOW)

    assert len(first.items) == PAGES
    assert sorted(second.items, key=str) == sorted(first.items, key=str)
    assert sorted(third.items, key=str) == sorted(first.items, key=str)  # not twice
    assert second.stats.items_reemitted == PAGES
    assert second.stats.pages_crawled == 0  # this run's: no callback ran


@pytest.mark.parametrize("kind", ["strong", "weak", "dates", "volatile", "ignore"])
async def test_after_five_pages_change_the_next_run_emits_exactly_those(
    site: TestSite, tmp_path: Path, kind: str
) -> None:
    spider = fresh_spider(site, kind)
    await run(spider, tmp_path, "one")
    changed = [2, 3, 5, 8, 13]
    site.mutate(*changed)

    second = await run(spider, tmp_path, "two", **DUE_NOW)
    third = await run(spider, tmp_path, "three", **DUE_NOW)

    assert sorted(item["n"] for item in second.items) == changed
    assert {item["v"] for item in second.items} == {1}
    assert second.stats.changed == 5
    assert second.stats.not_modified + second.stats.unchanged == PAGES + 1 - 5
    assert third.items == []


async def test_a_weak_etag_goes_back_weak(site: TestSite, tmp_path: Path) -> None:
    spider = fresh_spider(site, "weak")
    await run(spider, tmp_path, "one")
    site.reset()
    await run(spider, tmp_path, "two", **DUE_NOW)
    sent = {headers["if-none-match"] for headers in page_hits(site, "weak", index=False)}
    assert sent == {f'W/"p{i}-v0"' for i in range(PAGES)}


async def test_a_content_signature_hook_ignores_what_changes_on_every_fetch(
    site: TestSite, tmp_path: Path
) -> None:
    class Stamped(fresh_spider(site, "stamped")):  # type: ignore[misc]
        def content_signature(self, response: Response) -> bytes | str:
            return "".join(response.css("h1.n, p.v, div.text").getall()) or response.body

    await run(Stamped, tmp_path, "one")
    site.mutate(7)
    second = await run(Stamped, tmp_path, "two", **DUE_NOW)

    assert [item["n"] for item in second.items] == [7]
    assert second.stats.unchanged == PAGES  # the index and the 19 other pages


async def test_without_the_hook_a_volatile_part_makes_every_page_new(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "stamped")
    await run(spider, tmp_path, "one")
    second = await run(spider, tmp_path, "two", **DUE_NOW)
    assert len(second.items) == PAGES


async def test_a_304_to_a_request_without_validators_is_a_failure_retried(
    site: TestSite, tmp_path: Path
) -> None:
    class Rogue(Spider):
        name = "rogue"
        start_urls: ClassVar = [site.url("/fresh/rogue/1")]

        async def parse(self, response: Response) -> AsyncIterator[dict[str, int]]:
            yield {"status": response.status}

    crawled = await run(Rogue, tmp_path, "one")

    hits = page_hits(site, "rogue")
    assert len(hits) == 1 + QUICK["max_retries"]
    assert not any("if-none-match" in h or "if-modified-since" in h for h in hits)
    assert crawled.items == []
    assert crawled.stats.failure_reasons == {"UnexpectedNotModified": 1}


async def test_pages_not_due_are_left_and_counted_the_seeds_are_revisited(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "strong")
    await run(spider, tmp_path, "one")
    site.reset()

    second = await run(spider, tmp_path, "two")  # a day has not passed

    assert [hit.path for hit in site.log] == [f"/fresh/strong/?n={PAGES}"]
    assert "if-none-match" in site.log[0].headers
    assert second.stats.not_due == PAGES
    assert second.stats.not_modified == 1
    assert second.items == []


async def test_a_requests_own_interval_wins_never_included(site: TestSite, tmp_path: Path) -> None:
    never = fresh_spider(site, "strong", revisit_after_s="never")
    await run(never, tmp_path, "one")
    site.reset()
    await run(never, tmp_path, "two", **DUE_NOW)
    assert [hit.path for hit in site.log] == [f"/fresh/strong/?n={PAGES}"]

    site.reset()
    always = fresh_spider(site, "dates", revisit_after_s=0)
    await run(always, tmp_path / "two", "three")
    await run(always, tmp_path / "two", "four")  # the default interval is a day: these are due
    assert len(page_hits(site, "dates", index=False)) == 2 * PAGES


async def test_a_bad_own_interval_rejects_the_request(site: TestSite, tmp_path: Path) -> None:
    crawled = await run(fresh_spider(site, "strong", revisit_after_s="weekly"), tmp_path, "one")
    assert crawled.items == []
    assert crawled.stats.callback_errors == PAGES  # each rejected with a logged reason
    assert page_hits(site, "strong", index=False) == []


async def test_intervals_grow_while_unchanged_and_shrink_after_a_change(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "strong", pages=2)
    # Intervals of milliseconds: each run finds both pages due, and the factors move as in a
    # crawl of days (the clock is the real one; the arithmetic is test_freshness's).
    policy = {"revisit_after_s": 0.001, "revisit_min_s": 0, "revisit_max_s": 1000}
    for name in ("one", "two", "three"):
        await run(spider, tmp_path, name, **policy)
    site.mutate(1)
    await run(spider, tmp_path, "four", **policy)

    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute(  # the factor is kept in thousandths
            "SELECT url, factor, streak FROM requests WHERE url LIKE '%/fresh/strong/_?n=2'"
        ).fetchall()
    kept = {
        url.rsplit("/", 1)[1].partition("?")[0]: (factor / 1000, streak or 0)
        for url, factor, streak in rows
    }
    assert kept["0"] == (pytest.approx(1.5**3), 3)  # three unchanged revisits
    assert kept["1"] == (pytest.approx(1.5**2 / 2), 0)  # two, then a change: halfway to 0


KILLED_SPIDER = """
from crawler import Response, Spider


class Fresh(Spider):
    name = "fresh"
    start_urls = ["{start}"]

    async def parse(self, response: Response):
        for request in response.follow_all(css="a", callback=self.parse_page):
            yield request

    async def parse_page(self, response: Response):
        number, version = response.css("h1.n::text").get(), response.css("p.v::text").get()
        yield {{"n": int(number), "v": int(version)}}
"""


@pytest.mark.slow
def test_sigkill_mid_recrawl_then_resume_loses_and_duplicates_nothing(
    site: TestSite, tmp_path: Path
) -> None:
    pages, changed = 120, range(0, 120, 2)
    (tmp_path / "fresh.py").write_text(
        KILLED_SPIDER.format(start=site.url(f"/fresh/strong/?n={pages}&delay=0.02"))
    )
    common = ("--state", "state.db", "--no-progress", "-s", "obey_robots=false",
              "-s", "per_host_concurrency=2")  # fmt: skip
    first = cli.crawler("run", "fresh.py", "-o", "one.jsonl", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    site.mutate(*changed)

    again = ("run", "fresh.py", "-o", "two.jsonl", *common,
             "-s", "revisit_after_s=0", "-s", "revisit_min_s=0")  # fmt: skip
    feed = tmp_path / "two.jsonl"
    killed = cli.start(*again, cwd=tmp_path)
    cli.wait_for_lines(feed, 5, killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=10)
    assert cli.lines(feed) < len(changed)  # killed mid-recrawl
    resumed = cli.crawler(*again, cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    items = [json.loads(line) for line in feed.read_text().splitlines()]
    assert sorted(item["n"] for item in items) == list(changed)
    assert {item["v"] for item in items} == {1}
    assert len((tmp_path / "one.jsonl").read_text().splitlines()) == pages


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (("revisit_min_s=100", "revisit_max_s=10"), "revisit_min_s=100.0 is above revisit_max_s"),
        (("on_unchanged=keep",), "bad setting on_unchanged='keep'"),
        (("revisit_after_s=-1",), "bad setting revisit_after_s='-1'"),
    ],
)
def test_bad_recrawl_settings_are_one_line_and_exit_2(
    tmp_path: Path, setting: tuple[str, ...], message: str
) -> None:
    (tmp_path / "fresh.py").write_text(KILLED_SPIDER.format(start="http://127.0.0.1:9/"))
    overrides = [arg for pair in setting for arg in ("-s", pair)]
    result = cli.crawler("run", "fresh.py", "--no-progress", *overrides, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_a_recrawls_max_pages_budget_is_its_own(site: TestSite, tmp_path: Path) -> None:
    spider = fresh_spider(site, "strong")
    await run(spider, tmp_path, "one", max_pages=PAGES + 1)
    site.reset()
    await run(spider, tmp_path, "two", max_pages=6, **DUE_NOW)
    assert len(page_hits(site, "strong")) == 6
