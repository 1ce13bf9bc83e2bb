"""Adaptive politeness: how a host's delay and concurrency follow its latency, errors and limits.

Pure decisions over plain values; the scheduler applies them to the host's slot. Unlike Scrapy's
AutoThrottle, a 429 or 503 is a signal, not noise: the delay grows multiplicatively, the
interval that was too fast is remembered, and the host is then held just under it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

RATE_LIMITED = frozenset({429, 503})
BACKOFF = 2.0  # a rate-limited host's delay is multiplied by this
RECOVERY_RESPONSES = 10  # healthy responses that undo one backoff, in equal steps
LIMIT_MARGIN = 1.1  # held this much slower than the interval a host refused
LIMIT_HALF_LIFE_S = 60.0  # a learned limit fades, so a host that relaxed it is probed again
MIN_BACKOFF_S = 0.05  # the first backoff of a host crawled with no delay at all
MIN_STEP_S = 0.001  # so a delay always comes back down, however it went up


@dataclass(frozen=True)
class Bounds:
    """What autothrottle may never cross: the floor is ``download_delay`` or robots.txt
    ``Crawl-delay``, whichever is longer; the ceiling is ``per_host_concurrency``."""

    min_delay: float
    max_delay: float
    max_concurrency: int
    target_concurrency: float


@dataclass(frozen=True)
class Pace:
    """One host's adaptive state.

    ``limit_s`` is the interval between requests at which the host last refused (429/503), as
    of ``limit_at``; ``step_s`` the additive decrease per healthy response since the last
    backoff; ``healthy`` healthy responses in a row at this concurrency.
    """

    delay: float
    concurrency: int = 1
    limit_s: float = 0.0
    limit_at: float = 0.0
    step_s: float = 0.0
    healthy: int = 0
    resume_at: float = 0.0

    def __repr__(self) -> str:
        return (
            f"<Pace delay={self.delay:.3f} concurrency={self.concurrency}"
            f" limit_s={self.limit_s:.3f} healthy={self.healthy}>"
        )


def start(bounds: Bounds, start_delay: float) -> Pace:
    """A new host's pace: one request at a time, ``start_delay`` apart (within the bounds)."""
    delay = _clamp(start_delay, bounds)
    return Pace(delay=delay, concurrency=1, step_s=delay / RECOVERY_RESPONSES)


def bound(pace: Pace, bounds: Bounds) -> Pace:
    """The pace within new bounds (robots.txt's Crawl-delay arrived)."""
    concurrency = min(pace.concurrency, bounds.max_concurrency)
    return replace(pace, delay=_clamp(pace.delay, bounds), concurrency=concurrency)


def observe(
    pace: Pace,
    bounds: Bounds,
    now: float,
    latency_s: float,
    status: int | None,
    *,
    retry_after_s: float | None = None,
) -> Pace:
    """The pace after one response of ``status`` that took ``latency_s``, received at ``now``;
    ``status=None``: no response at all (a timeout, a connection refused or reset).

    >>> b = Bounds(min_delay=0.0, max_delay=60.0, max_concurrency=4, target_concurrency=2.0)
    >>> observe(Pace(delay=0.1), b, now=0.0, latency_s=0.01, status=429).delay
    0.2
    """
    if status in RATE_LIMITED:
        return _back_off(pace, bounds, now, latency_s, retry_after_s)
    if status is None or status >= 500:
        # A failing server, or none at all: fewer at once and no faster, but no sign of a rate
        # limit. The delay is not raised: a dead host would wait max_delay between retries.
        delay = max(pace.delay, _clamp(_latency_delay(latency_s, bounds), bounds))
        concurrency = max(1, pace.concurrency // 2)
        return replace(pace, delay=delay, concurrency=concurrency, healthy=0)
    return _recover(pace, bounds, now, latency_s)


def _back_off(
    pace: Pace, bounds: Bounds, now: float, latency_s: float, retry_after_s: float | None
) -> Pace:
    # The interval requests were actually arriving at: the delay, or latency over the requests
    # in flight when the delay is shorter than that.
    interval = max(pace.delay, latency_s / pace.concurrency)
    delay = _clamp(max(interval * BACKOFF, MIN_BACKOFF_S), bounds)
    resume_at = pace.resume_at
    if retry_after_s is not None:
        resume_at = max(resume_at, now + retry_after_s)
    return Pace(
        delay=delay,
        concurrency=max(1, pace.concurrency // 2),
        limit_s=interval,
        limit_at=now,
        step_s=(delay - delay / BACKOFF) / RECOVERY_RESPONSES,  # the backoff, undone in steps
        healthy=0,
        resume_at=resume_at,
    )


def _recover(pace: Pace, bounds: Bounds, now: float, latency_s: float) -> Pace:
    wanted = _latency_delay(latency_s, bounds)
    if wanted > pace.delay + MIN_STEP_S:
        # Rising latency: close half the gap at once, as Scrapy does.
        delay = _clamp((pace.delay + wanted) / 2, bounds)
        step_s = max(pace.step_s, delay / RECOVERY_RESPONSES)
        return replace(pace, delay=delay, step_s=step_s, healthy=0)
    floor = max(wanted, learned_limit(pace, now) * LIMIT_MARGIN)
    delay = _clamp(max(floor, pace.delay - max(pace.step_s, MIN_STEP_S)), bounds)
    healthy = pace.healthy + 1
    concurrency = pace.concurrency
    at_floor = delay <= max(floor, bounds.min_delay)
    if at_floor and healthy >= concurrency and concurrency < bounds.max_concurrency:
        concurrency, healthy = concurrency + 1, 0  # additive increase, one per window of answers
    return replace(pace, delay=delay, concurrency=concurrency, healthy=healthy)


def learned_limit(pace: Pace, now: float) -> float:
    """The refused interval, faded by its age: a limit learned a half-life ago counts half."""
    if pace.limit_s <= 0:
        return 0.0
    return pace.limit_s * math.pow(0.5, max(0.0, now - pace.limit_at) / LIMIT_HALF_LIFE_S)


def _latency_delay(latency_s: float, bounds: Bounds) -> float:
    """Scrapy's rule: latency over the target concurrency keeps that many requests in flight."""
    return latency_s / bounds.target_concurrency


def _clamp(delay: float, bounds: Bounds) -> float:
    return min(max(delay, bounds.min_delay), max(bounds.max_delay, bounds.min_delay))
