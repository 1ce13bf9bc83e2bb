"""How a crawl ended, for people and scripts: the summary lines and ``crawler run``'s exit status.

=====  ==================================================================================
 0     the crawl finished
 1     a crash, or "failed": the crawl finished with callback errors and not one item
 2     bad input (the CLI's one-line errors), nothing crawled
 3     stopped by SIGINT/SIGTERM after saving: resumable
 4     the state is locked by another run
 130   a second signal: stopped at once, the state as last committed
=====  ==================================================================================
"""

from __future__ import annotations

from crawler.runs import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_FORCED,
    EXIT_LOCKED,
    EXIT_STOPPED,
    outcome_of,
)
from crawler.runs import EXIT_FINISHED as EXIT_OK
from crawler.stats import Stats

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_FORCED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "exit_code",
    "lines",
]


def exit_code(stats: Stats, *, stopped: bool) -> int:
    """The exit status of a crawl that ended (a crash or bad input never gets here): the one
    its run records (``crawler.runs``).

    >>> exit_code(Stats(callback_errors=3), stopped=False)
    1
    """
    return EXIT_CODES[outcome_of(stats, stopped=stopped)]


def lines(stats: Stats, *, stopped: bool, requeued: int = 0) -> list[str]:
    """The summary of a crawl: what was done, what was not fetched, statuses, a verdict."""
    data = stats.to_dict()
    statuses = ", ".join(f"{k}: {v}" for k, v in data["status_counts"].items()) or "none"
    again = f", {requeued} re-queued from earlier runs" if requeued else ""
    out = [
        f"{'stopped' if stopped else 'done'} in {data['elapsed_s']:.1f}s: "
        f"{data['pages_crawled']} pages, "
        f"{data['items_scraped']} items ({data['items_dropped']} dropped), "
        f"{data['callback_errors']} callback errors, "
        f"{data['failures']} failures{again}, {data['retries']} retries",
        f"not fetched: {data['duplicates_filtered']} duplicates, "
        f"{data['offsite_filtered']} off-site, {data['robots_blocked']} blocked by robots.txt",
        f"statuses: {statuses}",
    ]
    if stats.hook_errors:
        out.append(
            f"{stats.hook_errors} errors in open_spider, close_spider or closed hooks (see the log)"
        )
    if exit_code(stats, stopped=stopped) == EXIT_FAILED:
        out.append(f"failed: {data['callback_errors']} callback errors and no item (see the log)")
    return out
