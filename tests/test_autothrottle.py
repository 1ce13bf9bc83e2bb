"""Unit tests of crawler.autothrottle on a fake clock: backoff on 429/503, Retry-After, additive
recovery down to the learned limit, latency, and the bounds it never crosses."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from crawler import autothrottle
from crawler.autothrottle import LIMIT_HALF_LIFE_S, LIMIT_MARGIN, RECOVERY_RESPONSES, Bounds, Pace

FREE = Bounds(min_delay=0.0, max_delay=60.0, max_concurrency=4, target_concurrency=1.0)


def _healthy(pace: Pace, n: int, bounds: Bounds = FREE, now: float = 0.0) -> Pace:
    for _ in range(n):
        pace = autothrottle.observe(pace, bounds, now, latency_s=0.001, status=200)
    return pace


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_doubles_the_delay_halves_concurrency_and_is_remembered(status: int) -> None:
    pace = Pace(delay=0.2, concurrency=4)
    after = autothrottle.observe(pace, FREE, now=5.0, latency_s=0.01, status=status)
    assert after.delay == pytest.approx(0.4)
    assert after.concurrency == 2
    assert after.limit_s == pytest.approx(0.2)
    assert after.limit_at == 5.0


def test_the_refused_interval_counts_latency_spread_over_the_requests_in_flight() -> None:
    pace = Pace(delay=0.0, concurrency=4)
    after = autothrottle.observe(pace, FREE, now=0.0, latency_s=0.4, status=429)
    assert after.limit_s == pytest.approx(0.1)  # four in flight, 0.4 s each: one per 0.1 s
    assert after.delay == pytest.approx(0.2)


def test_a_first_refusal_with_no_delay_backs_off_by_a_minimum() -> None:
    after = autothrottle.observe(Pace(delay=0.0), FREE, now=0.0, latency_s=0.001, status=429)
    assert after.delay == autothrottle.MIN_BACKOFF_S


def test_retry_after_holds_the_host_until_then_and_only_moves_forward() -> None:
    pace = autothrottle.observe(Pace(delay=0.1), FREE, 10.0, 0.01, 429, retry_after_s=30.0)
    assert pace.resume_at == 40.0
    pace = autothrottle.observe(pace, FREE, 11.0, 0.01, 503, retry_after_s=5.0)
    assert pace.resume_at == 40.0


def test_recovery_is_additive_and_stops_just_above_the_refused_interval() -> None:
    pace = autothrottle.observe(Pace(delay=0.1), FREE, now=0.0, latency_s=0.001, status=429)
    delays = [pace.delay]
    for _ in range(RECOVERY_RESPONSES + 5):
        pace = _healthy(pace, 1)
        delays.append(pace.delay)
    steps = [a - b for a, b in itertools.pairwise(delays) if a - b > 1e-12]
    assert len(steps) <= RECOVERY_RESPONSES
    assert max(steps) == pytest.approx(min(steps))  # equal steps: additive
    assert delays[-1] == pytest.approx(0.1 * LIMIT_MARGIN)


def test_a_learned_limit_fades_with_its_half_life() -> None:
    pace = autothrottle.observe(Pace(delay=0.1), FREE, now=0.0, latency_s=0.001, status=429)
    assert autothrottle.learned_limit(pace, 0.0) == pytest.approx(0.1)
    assert autothrottle.learned_limit(pace, LIMIT_HALF_LIFE_S) == pytest.approx(0.05)
    later = _healthy(pace, 100, now=4 * LIMIT_HALF_LIFE_S)
    assert later.delay == pytest.approx(0.1 * LIMIT_MARGIN / 16)


def test_rising_latency_raises_the_delay_towards_latency_over_target() -> None:
    bounds = Bounds(min_delay=0.0, max_delay=60.0, max_concurrency=4, target_concurrency=2.0)
    pace = autothrottle.observe(Pace(delay=0.1), bounds, now=0.0, latency_s=2.0, status=200)
    assert pace.delay == pytest.approx((0.1 + 1.0) / 2)
    pace = autothrottle.observe(pace, bounds, now=0.0, latency_s=2.0, status=200)
    assert pace.delay == pytest.approx((0.55 + 1.0) / 2)


@pytest.mark.parametrize("status", [500, 502, 504, None])
def test_a_failure_halves_concurrency_and_holds_the_delay(status: int | None) -> None:
    pace = autothrottle.observe(Pace(delay=0.1), FREE, now=0.0, latency_s=0.001, status=429)
    pace = replace(pace, concurrency=4, healthy=2)
    after = autothrottle.observe(pace, FREE, now=1.0, latency_s=0.01, status=status)
    assert (after.delay, after.concurrency, after.healthy) == (pace.delay, 2, 0)
    assert (after.limit_s, after.limit_at) == (pace.limit_s, pace.limit_at)  # no limit learned


def test_a_healthy_host_gains_one_request_in_flight_per_window_up_to_the_ceiling() -> None:
    pace = autothrottle.start(FREE, start_delay=0.0)
    seen = []
    for _ in range(30):
        pace = _healthy(pace, 1)
        seen.append(pace.concurrency)
    assert seen[:6] == [2, 2, 3, 3, 3, 4]  # one answer at 1, two at 2, three at 3
    assert max(seen) == FREE.max_concurrency


def test_the_bounds_are_never_crossed() -> None:
    bounds = Bounds(min_delay=0.5, max_delay=2.0, max_concurrency=2, target_concurrency=1.0)
    pace = autothrottle.start(bounds, start_delay=0.0)
    assert pace.delay == 0.5  # download_delay or Crawl-delay is the floor
    for _ in range(10):
        pace = autothrottle.observe(pace, bounds, 0.0, latency_s=0.001, status=429)
        assert pace.delay <= 2.0
    assert autothrottle.learned_limit(pace, 0.0) == 2.0
    pace = _healthy(pace, 200, bounds, now=10 * LIMIT_HALF_LIFE_S)  # once the limit faded
    assert pace.delay == 0.5
    assert pace.concurrency == 2
    pace = autothrottle.observe(pace, bounds, 0.0, latency_s=100.0, status=200)
    assert pace.delay == 2.0


def test_bound_applies_new_bounds_to_a_pace() -> None:
    pace = Pace(delay=0.1, concurrency=4)
    robots = Bounds(min_delay=1.0, max_delay=60.0, max_concurrency=1, target_concurrency=1.0)
    assert autothrottle.bound(pace, robots) == Pace(delay=1.0, concurrency=1)


def test_a_simulated_rate_limit_is_held_just_under_its_rate() -> None:
    """A fake host refusing requests less than 1/rate apart, crawled on a fake clock one
    request at a time for 120 s: after the first half, it is held at 85-100 % of its rate
    with few refusals."""
    rate, latency = 10.0, 0.005
    pace = autothrottle.start(FREE, start_delay=0.0)
    now = last = 0.0
    late: list[bool] = []
    while now < 120.0:
        now = max(now + max(pace.delay, latency), pace.resume_at)
        refused = now - last < 1 / rate
        last = now
        pace = autothrottle.observe(pace, FREE, now, latency, 429 if refused else 200)
        if now >= 60.0:
            late.append(refused)
    served = late.count(False) / 60.0
    assert late.count(True) <= 0.03 * len(late)
    assert 0.85 * rate <= served <= rate


def test_repr_shows_live_state() -> None:
    assert repr(Pace(delay=0.25, concurrency=2, limit_s=0.1, healthy=3)) == (
        "<Pace delay=0.250 concurrency=2 limit_s=0.100 healthy=3>"
    )
