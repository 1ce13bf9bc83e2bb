"""Crawl statistics: counters the engine bumps, persisted with the state, reported at the end."""

from __future__ import annotations

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
    """Counters of one crawl; they carry over when a crawl resumes.

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
    callback_errors: int = 0
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

    def response(self, status: int, size: int) -> None:
        self.responses_total += 1
        self.bytes_received += size
        self.status_counts[str(status)] += 1

    def failed(self, reason: str) -> None:
        self.failures += 1
        self.failure_reasons[reason] += 1

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
        """Counters saved by an earlier run of the same crawl; unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k[0] != "_"}
        stats = cls(**known)
        stats.status_counts = Counter(data.get("status_counts", {}))
        stats.failure_reasons = Counter(data.get("failure_reasons", {}))
        stats._elapsed_before = float(data.get("elapsed_s", 0.0))
        stats.elapsed_s = stats._elapsed_before
        return stats
