"""Event-loop lag and the ``/healthz`` verdict.

A ticker sleeps a short interval and records how late it woke up: a callback that blocks the
loop makes every timer late by as long as it blocks. The HTTP server answering ``/healthz`` runs
on that same loop, so while the loop is blocked nobody answers (a health check times out); the
answers after the stall read how overdue the ticker is, or the largest lag it measured within
the last ``HOLD_S``, and say 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from crawler.metrics import CrawlView

MAX_TICK_S = 0.1  # the ticker's interval: half the threshold, at most this
HOLD_S = 1.0  # a lag is reported this long after it was measured: a check queued behind it sees it
STALE_TICKS = 3  # the crawl's progress tick is stalled past this many lag thresholds


class LoopLag:
    """``await lag.run()`` in a task; ``lag_s()`` at any time.

    >>> lag = LoopLag(threshold_s=1.0)
    >>> lag.interval_s, lag.lag_s()
    (0.1, 0.0)
    """

    def __init__(self, threshold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = min(threshold_s / 2, MAX_TICK_S)
        self.peak_s = 0.0  # the largest lag measured within the last HOLD_S
        self._clock = clock
        self._peak_at = clock()
        self.due_at: float | None = None  # when the sleeping ticker is to wake up

    def __repr__(self) -> str:
        return f"<LoopLag interval_s={self.interval_s} peak_s={self.peak_s:.4f}>"

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            self.due_at = self._clock() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.measured(self._clock() - self.due_at)

    def measured(self, lag_s: float) -> None:
        """A tick woke up ``lag_s`` late (what ``run`` calls)."""
        now = self._clock()
        if lag_s >= self.peak_s or now - self._peak_at > HOLD_S:
            self.peak_s = max(0.0, lag_s)
            self._peak_at = now

    def lag_s(self) -> float:
        """How overdue the ticker is, if it is (the loop is blocked, or was until a moment ago
        and the ticker has not run yet), or the largest lag measured within ``HOLD_S``."""
        now = self._clock()
        overdue = 0.0 if self.due_at is None else now - self.due_at
        held = self.peak_s if now - self._peak_at <= HOLD_S else 0.0
        return max(held, overdue, 0.0)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def verdict(lag_s: float, threshold_s: float, tick_age_s: float | None = None) -> Verdict:
    """Healthy while the loop lags less than ``threshold_s`` and, for a crawl (a tick age is
    given once its first tick ran), its progress tick ran within ``STALE_TICKS`` thresholds.

    >>> verdict(0.002, 1.0, tick_age_s=0.3)
    Verdict(healthy=True, reason='ok: event loop lag 0.002s')
    >>> verdict(1.5, 1.0).healthy
    False
    """
    if lag_s >= threshold_s:
        return Verdict(False, f"event loop lag {lag_s:.3f}s, threshold {threshold_s}s")
    if tick_age_s is not None and tick_age_s > STALE_TICKS * threshold_s:
        return Verdict(False, f"the crawl's progress tick last ran {tick_age_s:.3f}s ago")
    return Verdict(True, f"ok: event loop lag {lag_s:.3f}s")


class Health:
    """What ``/healthz`` answers: the loop's lag and, for a crawl, its progress tick."""

    def __init__(
        self,
        lag: LoopLag,
        threshold_s: float,
        crawl: CrawlView | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lag = lag
        self.threshold_s = threshold_s
        self.crawl = crawl
        self._clock = clock

    def __repr__(self) -> str:
        return f"<Health threshold_s={self.threshold_s} {self.lag!r}>"

    def check(self) -> Verdict:
        ticked = None if self.crawl is None else self.crawl.ticked_at
        age = None if ticked is None else self._clock() - ticked
        return verdict(self.lag.lag_s(), self.threshold_s, age)
