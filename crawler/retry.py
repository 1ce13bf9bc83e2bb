"""Retries of transient failures, with tenacity: which failures, how long to wait, how often.

Connection and read errors, timeouts, and HTTP 408, 429, 500, 502, 503 and 504 are retried with
exponential backoff and jitter; a ``Retry-After`` header (seconds or an HTTP date) is honoured.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from crawler.errors import RetryableStatus, TransientError
from crawler.settings import Settings

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Failures a rerun leaves failed: the server said the request itself is wrong (404, 410, 403...).
# Everything else that failed (no answer, 5xx, 408, 429, a page too large or too slow to parse)
# may well go through another day.
PERMANENT_STATUSES = frozenset(range(400, 500)) - RETRY_STATUSES


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    >>> parse_retry_after("120")
    120.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_status(status: int, retry_after: str | None = None) -> None:
    """Raise RetryableStatus for a status worth retrying, with its Retry-After header's wait."""
    if status in RETRY_STATUSES:
        raise RetryableStatus(status, parse_retry_after(retry_after))


class _BackoffOrRetryAfter(wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, settings: Settings) -> None:
        self.backoff = wait_exponential_jitter(
            multiplier=settings.retry_backoff,
            max=settings.retry_backoff_max,
            jitter=settings.retry_backoff,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        return max(wait, retry_after) if retry_after is not None else wait


def retryable(settings: Settings) -> Callable[[BaseException], bool]:
    def check(error: BaseException) -> bool:
        if not isinstance(error, TransientError):
            return False
        return error.retry_after is None or error.retry_after <= settings.max_retry_after

    return check


class RetryPolicy:
    """How one crawl retries; ``policy.attempts(sleep, before_sleep)`` is the loop for a request.

    >>> async for attempt in policy.attempts(sleep, before_sleep):   # doctest: +SKIP
    ...     with attempt:
    ...         return await fetch()
    """

    def __init__(self, settings: Settings) -> None:
        self.stop = stop_after_attempt(settings.max_retries + 1)
        self.wait = _BackoffOrRetryAfter(settings)
        self.retryable = retryable(settings)
        self.retry = retry_if_exception(self.retryable)

    def __repr__(self) -> str:
        return f"<RetryPolicy attempts={self.stop.max_attempt_number}>"

    def attempts(
        self,
        sleep: Callable[[float], Awaitable[None]],
        before_sleep: Callable[[RetryCallState], None],
    ) -> AsyncRetrying:
        """``sleep`` waits between attempts: the engine passes one that gives the request's
        slot back, so a waiting retry holds no worker."""
        return AsyncRetrying(
            sleep=sleep,
            stop=self.stop,
            wait=self.wait,
            retry=self.retry,
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(
        self,
        attempt: Callable[[], Awaitable[T]],
        sleep: Callable[[float], Awaitable[None]],
        before_sleep: Callable[[RetryCallState], None],
    ) -> T:
        """``await attempt()`` until it succeeds or the policy gives up (then its last error is
        raised), as the ``attempts`` loop does. The first try is made without tenacity, which
        costs a few percent of a crawl's CPU when most pages need no retry; a failure worth
        retrying is handed to tenacity as its first attempt's outcome."""
        try:
            return await attempt()
        except Exception as error:
            if self.stop.max_attempt_number < 2 or not self.retryable(error):
                raise
            first: Exception | None = error
        async for retrying in self.attempts(sleep, before_sleep):
            with retrying:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await attempt()
        raise AssertionError("unreachable: tenacity re-raises the last error")
