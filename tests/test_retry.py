"""Unit tests of crawler.retry: Retry-After parsing, retryable statuses and the retry loop."""

import pytest
from tenacity import AsyncRetrying, RetryCallState

from crawler.errors import FetchError, RetryableStatus, TransientError
from crawler.retry import RETRY_STATUSES, RetryPolicy, check_status, parse_retry_after, retryable
from crawler.settings import Settings

HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
HTTP_DATE_TS = 1445412480.0


def _settings(**changes: object) -> Settings:
    values: dict[str, object] = {
        "max_retries": 3,
        "retry_backoff": 0.5,
        "retry_backoff_max": 30.0,
        "max_retry_after": 300.0,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


class Recorder:
    """The seams tenacity offers: a sleep that only records, and a before_sleep hook."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.before: list[int] = []
        self.calls = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def before_sleep(self, state: RetryCallState) -> None:
        self.before.append(state.attempt_number)


def attempts(settings: Settings, recorder: Recorder) -> AsyncRetrying:
    return RetryPolicy(settings).attempts(recorder.sleep, recorder.before_sleep)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=0.0) == expected


def test_parse_retry_after_http_date_is_relative_to_now() -> None:
    assert parse_retry_after(HTTP_DATE, now=HTTP_DATE_TS - 90) == 90.0
    assert parse_retry_after(HTTP_DATE, now=HTTP_DATE_TS + 90) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", now=HTTP_DATE_TS) == 0.0


def test_parse_retry_after_non_ascii_digit_is_garbage() -> None:
    assert parse_retry_after("\u00b2", now=0.0) is None


@pytest.mark.parametrize("status", [200, 204, 301, 304, 400, 401, 403, 404, 410, 501, 505])
def test_check_status_lets_other_statuses_pass(status: int) -> None:
    check_status(status, "5")


def test_check_status_retries_exactly_the_transient_statuses() -> None:
    raised = []
    for status in range(100, 600):
        try:
            check_status(status)
        except RetryableStatus as error:
            raised.append((status, error.status, error.retry_after))
    assert raised == [(status, status, None) for status in sorted(RETRY_STATUSES)]
    assert {408, 429, 500, 502, 503, 504} == RETRY_STATUSES


def test_check_status_carries_retry_after() -> None:
    with pytest.raises(RetryableStatus, match="HTTP 429") as caught:
        check_status(429, "42")
    assert caught.value.retry_after == 42.0
    assert isinstance(caught.value, TransientError)


def test_retry_policy_repr() -> None:
    assert repr(RetryPolicy(_settings(max_retries=2))) == "<RetryPolicy attempts=3>"


def test_retryable() -> None:
    check = retryable(_settings(max_retry_after=60.0))
    assert check(TransientError("reset"))
    assert check(RetryableStatus(503))
    assert check(RetryableStatus(503, retry_after=60.0))
    assert not check(RetryableStatus(503, retry_after=60.5))
    assert not check(FetchError("404"))
    assert not check(ValueError("boom"))


async def test_transient_errors_are_retried_max_retries_times_then_reraised() -> None:
    recorder = Recorder()
    errors = [TransientError(f"reset {n}") for n in range(10)]

    async def fail() -> None:
        recorder.calls += 1
        raise errors[recorder.calls - 1]

    retrying = attempts(_settings(max_retries=3), recorder)
    with pytest.raises(TransientError) as caught:
        await retrying(fail)

    assert caught.value is errors[3]
    assert recorder.calls == 4
    assert recorder.before == [1, 2, 3]
    assert len(recorder.sleeps) == 3
    # Exponential backoff, from retry_backoff, plus up to retry_backoff of jitter.
    for attempt, seconds in enumerate(recorder.sleeps):
        assert 0.5 * 2**attempt <= seconds <= 0.5 * 2**attempt + 0.5


async def test_backoff_is_capped_by_retry_backoff_max() -> None:
    recorder = Recorder()

    async def fail() -> None:
        raise TransientError("reset")

    settings = _settings(max_retries=6, retry_backoff=1.0, retry_backoff_max=3.0)
    with pytest.raises(TransientError):
        await attempts(settings, recorder)(fail)
    assert len(recorder.sleeps) == 6
    assert max(recorder.sleeps) <= 3.0
    assert recorder.sleeps[-1] == 3.0


async def test_success_after_failures_returns_the_value() -> None:
    recorder = Recorder()

    async def flaky() -> str:
        recorder.calls += 1
        if recorder.calls < 3:
            raise RetryableStatus(503)
        return "page"

    assert await attempts(_settings(), recorder)(flaky) == "page"
    assert recorder.calls == 3
    assert len(recorder.sleeps) == 2


async def test_fetch_errors_are_not_retried() -> None:
    recorder = Recorder()

    async def fail() -> None:
        recorder.calls += 1
        raise FetchError("unsupported URL")

    with pytest.raises(FetchError, match="unsupported URL"):
        await attempts(_settings(), recorder)(fail)
    assert recorder.calls == 1
    assert recorder.sleeps == []
    assert recorder.before == []


async def test_zero_max_retries_tries_once() -> None:
    recorder = Recorder()

    async def fail() -> None:
        recorder.calls += 1
        raise TransientError("reset")

    with pytest.raises(TransientError):
        await attempts(_settings(max_retries=0), recorder)(fail)
    assert recorder.calls == 1
    assert recorder.sleeps == []


@pytest.mark.parametrize("retry_after", [0.0, 1.2, 7.0, 300.0])
async def test_wait_is_never_shorter_than_retry_after(retry_after: float) -> None:
    recorder = Recorder()

    async def fail() -> None:
        raise RetryableStatus(429, retry_after=retry_after)

    with pytest.raises(RetryableStatus):
        await attempts(_settings(max_retries=4), recorder)(fail)
    assert len(recorder.sleeps) == 4
    for attempt, seconds in enumerate(recorder.sleeps):
        assert seconds >= retry_after
        assert seconds >= min(0.5 * 2**attempt, 30.0)
        assert seconds <= max(retry_after, 0.5 * 2**attempt + 0.5)


async def test_retry_after_above_the_limit_fails_at_once() -> None:
    recorder = Recorder()

    async def fail() -> None:
        recorder.calls += 1
        raise RetryableStatus(503, retry_after=3600.0)

    with pytest.raises(RetryableStatus) as caught:
        await attempts(_settings(max_retry_after=300.0), recorder)(fail)
    assert caught.value.retry_after == 3600.0
    assert recorder.calls == 1
    assert recorder.sleeps == []


# --- RetryPolicy.call: the first attempt without tenacity, the same loop after it ---------------


async def test_call_retries_as_the_attempts_loop_does() -> None:
    """The first failure reaches tenacity as its first attempt: same hooks, sleeps and count."""
    recorder = Recorder()
    errors = [TransientError(f"reset {n}") for n in range(10)]

    async def fail() -> None:
        recorder.calls += 1
        raise errors[recorder.calls - 1]

    policy = RetryPolicy(_settings(max_retries=3))
    with pytest.raises(TransientError) as caught:
        await policy.call(fail, recorder.sleep, recorder.before_sleep)
    assert caught.value is errors[3]
    assert recorder.calls == 4
    assert recorder.before == [1, 2, 3]
    for attempt, seconds in enumerate(recorder.sleeps):
        assert 0.5 * 2**attempt <= seconds <= 0.5 * 2**attempt + 0.5


async def test_call_returns_a_value_after_failures_and_at_once() -> None:
    recorder = Recorder()

    async def flaky() -> str:
        recorder.calls += 1
        if recorder.calls < 3:
            raise RetryableStatus(503)
        return f"page {recorder.calls}"

    policy = RetryPolicy(_settings())
    assert await policy.call(flaky, recorder.sleep, recorder.before_sleep) == "page 3"
    assert recorder.before == [1, 2]
    assert await policy.call(flaky, recorder.sleep, recorder.before_sleep) == "page 4"
    assert recorder.before == [1, 2]  # nothing slept before a first attempt that succeeded


@pytest.mark.parametrize(
    ("error", "max_retries"),
    [
        (FetchError("unsupported URL"), 3),
        (TransientError("reset"), 0),
        (RetryableStatus(503, retry_after=301.0), 3),  # longer than max_retry_after
    ],
)
async def test_call_raises_what_is_not_retried_at_once(error: Exception, max_retries: int) -> None:
    recorder = Recorder()

    async def fail() -> None:
        recorder.calls += 1
        raise error

    policy = RetryPolicy(_settings(max_retries=max_retries))
    with pytest.raises(type(error)) as caught:
        await policy.call(fail, recorder.sleep, recorder.before_sleep)
    assert caught.value is error
    assert (recorder.calls, recorder.sleeps, recorder.before) == (1, [], [])
