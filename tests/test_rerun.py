"""A rerun on a state retries what failed before (retry_failed_on_rerun), but not permanent 4xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Spider
from crawler.frontier import Outcome, RequestState
from crawler.frontier.sqlite import SqliteFrontier
from crawler.request import Request
from crawler.response import Response
from crawler.retry import PERMANENT_STATUSES
from crawler.runner import CrawlJob, CrawlResult, run
from tests.site import TestSite

# Each fails its first request: a 503, a 500, a 404 (permanent), a 410 (permanent), a 429.
FAILING_ONCE = ("/flaky?fail=1", "/flaky?fail=1&status=500", "/flaky?fail=1&status=404",
                "/flaky?fail=1&status=410", "/flaky?fail=1&status=429")  # fmt: skip


def failing_spider(site: TestSite) -> type[Spider]:
    class Failing(Spider):
        name = "failing"
        start_urls = tuple(site.url(path) for path in (*FAILING_ONCE, "/leaf/1"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Failing


async def crawl_again(spider: type[Spider], folder: Path, **settings: Any) -> CrawlResult:
    settings |= {"max_retries": 0, "obey_robots": False, "allow_private_addresses": True}
    job = CrawlJob(
        spider=spider,
        overrides=settings,
        feed=folder / "items.jsonl",
        state=folder / "state.db",
        progress=False,
        signals=False,
    )
    return await run(job)


async def test_a_rerun_retries_failures_but_not_permanent_4xx(
    site: TestSite, tmp_path: Path
) -> None:
    spider = failing_spider(site)
    first = await crawl_again(spider, tmp_path)
    assert (first.stats.failures, first.stats.pages_crawled, first.requeued) == (5, 1, 0)

    second = await crawl_again(spider, tmp_path)

    assert second.requeued == 3  # the 503, the 500 and the 429
    assert second.stats.failures_requeued == 3
    # Stats are this run's: the three retried pages, none failing again; the totals over
    # both runs hold the first run's page and its failures, the 404 and the 410 among them.
    assert (second.stats.failures, second.stats.pages_crawled) == (0, 3)
    assert second.totals.pages_crawled == 4
    for path in ("/flaky?fail=1", "/flaky?fail=1&status=500", "/flaky?fail=1&status=429"):
        assert site.hits(path) == 2
    for path in ("/flaky?fail=1&status=404", "/flaky?fail=1&status=410"):
        assert site.hits(path) == 1
    assert site.hits("/leaf/1") == 2  # done: revisited by the rerun (a recrawl), unchanged
    feed = (tmp_path / "items.jsonl").read_text().splitlines()
    assert len(feed) == 4

    third = await crawl_again(spider, tmp_path)  # nothing failed that may be retried
    assert (third.requeued, third.stats.failures) == (0, 0)
    for path in ("/flaky?fail=1&status=404", "/flaky?fail=1&status=410"):
        assert site.hits(path) == 1  # never asked again; the done pages are revisits
    assert third.totals.failures == 5 + 0 + 0  # every run's own failures, summed


async def test_retry_failed_on_rerun_false_leaves_failures_alone(
    site: TestSite, tmp_path: Path
) -> None:
    spider = failing_spider(site)
    await crawl_again(spider, tmp_path)
    second = await crawl_again(spider, tmp_path, retry_failed_on_rerun=False)

    assert (second.requeued, second.stats.failures, second.stats.pages_crawled) == (0, 0, 0)
    assert second.totals.failures == 5
    assert site.hits("/flaky?fail=1") == 1


async def test_a_request_that_fails_again_is_a_failure_once(site: TestSite, tmp_path: Path) -> None:
    class Down(Spider):
        name = "down"
        start_urls = (site.url("/status/503"),)

    first = await crawl_again(Down, tmp_path)
    second = await crawl_again(Down, tmp_path)

    assert (first.stats.failures, second.requeued, second.stats.failures) == (1, 1, 1)
    assert second.totals.failure_reasons == {"RetryableStatus": 2}  # the history of every failure
    assert site.hits("/status/503") == 2


@pytest.mark.parametrize("status", [None, 500, 503, 408, 429, 404, 410, 403])
async def test_requeue_failed_keeps_permanent_statuses(tmp_path: Path, status: int | None) -> None:
    frontier = SqliteFrontier(tmp_path / "state.db")
    await frontier.open("s")
    try:
        request = Request("http://a.test/")
        frontier.add([request])
        await frontier.flush()
        [leased] = await frontier.lease("a.test", 1)
        frontier.complete(Outcome(leased, RequestState.FAILED, status=status, error="x"))
        await frontier.flush()

        requeued = await frontier.requeue_failed(PERMANENT_STATUSES)

        counts = await frontier.counts()
    finally:
        await frontier.close()
    permanent = status in {404, 410, 403}
    assert requeued == (0 if permanent else 1)
    assert (counts.queued, counts.failed) == ((0, 1) if permanent else (1, 0))


def test_the_summary_says_how_many_failures_were_requeued(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(
        "from crawler import Spider\n\n\nclass Flaky(Spider):\n"
        "    name = 'flaky'\n"
        f"    start_urls = ({site.url('/flaky?fail=1')!r}, {site.url('/status/404')!r})\n\n"
        "    async def parse(self, response):\n        yield {'url': response.url}\n"
    )
    args = ("run", "flaky.py", "--state", "state.db", "--no-progress",
            "-s", "obey_robots=false", "-s", "max_retries=0")  # fmt: skip

    def crawler() -> str:
        ran = subprocess.run(
            [sys.executable, "-m", "crawler", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        return ran.stderr

    first = crawler()
    assert "0 pages, 0 items (0 dropped), 0 callback errors, 2 failures, 0 retries" in first
    assert "re-queued" not in first
    second = crawler()
    # This run's counts: the page retried; the 404 failed in run 1 and stays failed.
    assert "1 pages, 1 items (0 dropped), 0 callback errors, 0 failures, 1 re-queued" in second
    assert "totals over 2 runs: 1 pages, 1 items, 2 failures" in second
