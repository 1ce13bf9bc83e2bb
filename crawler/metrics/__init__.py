"""Monitoring a running crawl or schedule: what the metrics and health readers may see of it.

The readers (``prometheus``, ``health``, served by ``server``) take these read-only views at
scrape time; they keep no counts of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from crawler.stats import FetchDurations, Stats


class CrawlView(Protocol):
    """A running crawl, as the engine shows it."""

    @property
    def stats(self) -> Stats: ...

    @property
    def in_flight(self) -> int:
        """Requests handed out and not done yet (fetching, parsing or waiting to retry)."""
        ...

    @property
    def fetch_durations(self) -> FetchDurations: ...

    @property
    def ticked_at(self) -> float | None:
        """``time.monotonic()`` of the engine's last progress tick; None before the first."""
        ...


class ScheduleStatus(Protocol):
    """One schedule of the ``crawler schedule`` service. Times are Unix seconds."""

    @property
    def name(self) -> str: ...

    @property
    def outcomes(self) -> Mapping[str, int]:
        """Runs since the service started, by outcome (finished, failed, missed, ...)."""
        ...

    @property
    def running(self) -> bool: ...

    @property
    def last_end(self) -> float | None: ...

    @property
    def last_success(self) -> float | None: ...

    @property
    def next_run(self) -> float | None: ...
