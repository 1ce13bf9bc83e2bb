"""Crawl statistics: counters the engine bumps for one run, persisted with the state's run
record, reported at the end; and the fetch-duration histogram, kept for the metrics endpoint
only."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from crawler.errors import SkipReason

_SKIP_COUNTERS = {
    SkipReason.DUPLICATE: "duplicates_filtered",
    SkipReason.OFFSITE: "offsite_filtered",
    SkipReason.ROBOTS: "robots_blocked",
    SkipReason.TOO_DEEP: "depth_filtered",
    SkipReason.MAX_PAGES: "max_pages_filtered",
    SkipReason.BAD_URL: "bad_urls",
    SkipReason.CRAWL_DELAY: "crawl_delay_skipped",
}


@dataclass
class Stats:
    """Counters of one run of a crawl; a continued run (after a stop or a kill) carries on with
    its own. ``crawler.runs.totals`` sums the runs of a state.

    ``requests_total`` counts HTTP requests sent (retries, redirect hops and robots.txt included);
    ``pages_crawled`` counts requests whose callback ran.
    """

    requests_total: int = 0
    responses_total: int = 0
    pages_crawled: int = 0
    items_scraped: int = 0
    items_dropped: int = 0
    retries: int = 0
    failures: int = 0
    failures_requeued: int = 0
    callback_errors: int = 0
    hook_errors: int = 0  # open_spider, close_spider or closed raised
    duplicates_filtered: int = 0
    offsite_filtered: int = 0
    robots_blocked: int = 0
    depth_filtered: int = 0
    max_pages_filtered: int = 0
    bad_urls: int = 0
    crawl_delay_skipped: int = 0
    links_dropped: int = 0
    bytes_received: int = 0
    not_modified: int = 0  # recrawls: 304s to conditional requests; no callback ran
    unchanged: int = 0  # recrawls: 200s with the last fetch's signature; no callback ran
    changed: int = 0  # recrawls: revisited pages whose signature changed; their callback ran
    not_due: int = 0  # recrawls: known pages not due yet when a recrawl started
    items_reemitted: int = 0  # on_unchanged = "reemit": an unchanged page's last items again
    queued: int = 0
    elapsed_s: float = 0.0
    status_counts: Counter[str] = field(default_factory=Counter)
    failure_reasons: Counter[str] = field(default_factory=Counter)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _elapsed_before: float = field(default=0.0, repr=False)

    def skipped(self, reason: SkipReason, count: int = 1) -> None:
        attr = _SKIP_COUNTERS[reason]
        setattr(self, attr, getattr(self, attr) + count)

    def skips(self) -> dict[SkipReason, int]:
        """Requests not fetched, by reason (duplicates include those the frontier caught)."""
        return {reason: getattr(self, attr) for reason, attr in _SKIP_COUNTERS.items()}

    def response(self, status: int, size: int) -> None:
        self.responses_total += 1
        self.bytes_received += size
        self.status_counts[str(status)] += 1

    def failed(self, reason: str) -> None:
        self.failures += 1
        self.failure_reasons[reason] += 1

    def requeued(self, count: int) -> None:
        """``count`` failed requests are queued again: they are failures no more (unless they
        fail again); ``failure_reasons`` keeps the history of every failure."""
        self.failures = max(0, self.failures - count)
        self.failures_requeued += count

    def tick(self) -> None:
        self.elapsed_s = round(self._elapsed_before + time.monotonic() - self._started, 3)

    def pages_per_second(self) -> float:
        self.tick()
        return self.pages_crawled / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        self.tick()
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["status_counts"] = dict(sorted(self.status_counts.items()))
        data["failure_reasons"] = dict(self.failure_reasons)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        """Counters saved earlier by the same run; unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k[0] != "_"}
        stats = cls(**known)
        stats.status_counts = Counter(data.get("status_counts", {}))
        stats.failure_reasons = Counter(data.get("failure_reasons", {}))
        stats._elapsed_before = float(data.get("elapsed_s", 0.0))
        stats.elapsed_s = stats._elapsed_before
        return stats


# Upper bounds, seconds: from a loopback answer to a response that takes request_timeout.
FETCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class FetchDurations:
    """How long responses took, in fixed buckets: one ``observe`` per response, O(1) and
    allocation-free, for a histogram read at scrape time. Per process: not kept in the state.

    >>> durations = FetchDurations()
    >>> durations.observe(0.02)
    >>> durations.cumulative()[:4], durations.count, durations.sum_s
    ([0, 0, 1, 1], 1, 0.02)
    """

    def __init__(self, bounds_s: tuple[float, ...] = FETCH_BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self._counts = [0] * (len(bounds_s) + 1)  # the last one is +Inf
        self.count = 0
        self.sum_s = 0.0

    def __repr__(self) -> str:
        return f"<FetchDurations count={self.count} sum_s={self.sum_s:.3f}>"

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds_s, seconds)] += 1
        self.count += 1
        self.sum_s += seconds

    def cumulative(self) -> list[int]:
        """Responses at most as long as each bound, then all of them (the +Inf bucket)."""
        total = 0
        out = []
        for count in self._counts:
            total += count
            out.append(total)
        return out
