"""The summary lines and exit statuses of a crawl that ended (pure functions over Stats)."""

from __future__ import annotations

import pytest

from crawler.stats import Stats
from crawler.summary import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, exit_code, lines


@pytest.mark.parametrize(
    ("counters", "stopped", "expected"),
    [
        ({}, False, EXIT_OK),
        ({"failures": 5}, False, EXIT_OK),  # failed pages are counted, not a failed crawl
        ({"callback_errors": 2, "items_scraped": 1}, False, EXIT_OK),
        ({"callback_errors": 2}, False, EXIT_FAILED),
        ({"callback_errors": 2}, True, EXIT_STOPPED),
        ({}, True, EXIT_STOPPED),
    ],
)
def test_exit_code(counters: dict[str, int], stopped: bool, expected: int) -> None:
    assert exit_code(Stats(**counters), stopped=stopped) == expected


def test_lines_name_every_drop_and_the_verdict() -> None:
    stats = Stats(pages_crawled=3, callback_errors=3, offsite_filtered=4, robots_blocked=1)
    stats.response(200, 10)

    found = lines(stats, stopped=False, requeued=2)

    assert found[0].startswith("done in ")
    assert found[0].endswith(
        "3 pages, 0 items (0 dropped), 3 callback errors, 0 failures, "
        "2 re-queued from earlier runs, 0 retries"
    )
    assert found[1:] == [
        "not fetched: 0 duplicates, 4 off-site, 1 blocked by robots.txt",
        "statuses: 200: 1",
        "failed: 3 callback errors and no item (see the log)",
    ]
    assert lines(Stats(), stopped=True)[0].startswith("stopped in ")
