"""The recrawl policy, pure: intervals, due-ness, validators, signatures, dates."""

from __future__ import annotations

import pytest

from crawler import freshness
from crawler.freshness import Change, History, Revisit

DAY = 86400.0
POLICY = Revisit(after_s=DAY, min_s=3600, max_s=14 * DAY)


def unchanged(policy: Revisit, times: int, factor: float = 1.0) -> float:
    for _ in range(times):
        factor = policy.next_factor(factor, changed=False)
    return factor


@pytest.mark.parametrize("k", range(12))
def test_k_unchanged_revisits_give_the_base_times_1_5_to_the_k_up_to_the_maximum(k: int) -> None:
    assert POLICY.interval(unchanged(POLICY, k)) == pytest.approx(min(14 * DAY, DAY * 1.5**k))


def test_a_change_moves_the_interval_halfway_toward_the_minimum() -> None:
    long = unchanged(POLICY, 20)  # at the maximum, and no further
    assert POLICY.interval(long) == 14 * DAY
    shrunk = POLICY.next_factor(long, changed=True)
    assert POLICY.interval(shrunk) == pytest.approx((14 * DAY + 3600) / 2)
    factor = long
    for _ in range(30):
        factor = POLICY.next_factor(factor, changed=True)
    assert POLICY.interval(factor) == pytest.approx(3600)
    assert POLICY.interval(POLICY.next_factor(factor, changed=True)) >= 3600  # never below


def test_the_factor_stops_growing_at_the_maximum_so_one_change_is_felt_at_once() -> None:
    assert unchanged(POLICY, 50) == pytest.approx(14.0)
    assert POLICY.interval(POLICY.next_factor(unchanged(POLICY, 50), changed=True)) < 14 * DAY


def test_intervals_stay_within_the_bounds_when_the_base_moves() -> None:
    factor = unchanged(POLICY, 3)
    assert Revisit(after_s=10, min_s=3600, max_s=7200).interval(factor) == 3600
    assert Revisit(after_s=10 * DAY, min_s=0, max_s=DAY).interval(factor) == DAY


def test_a_zero_base_and_minimum_make_every_known_page_due() -> None:
    now_due = Revisit(after_s=0, min_s=0, max_s=14 * DAY)
    assert now_due.is_due(1000, unchanged(POLICY, 8), None, now=1000)
    assert now_due.next_factor(3.0, changed=False) == 1.0


def test_due_ness() -> None:
    fetched = 1_000_000
    assert not POLICY.is_due(fetched, 1.0, None, now=fetched + DAY - 1)
    assert POLICY.is_due(fetched, 1.0, None, now=fetched + DAY)
    assert not POLICY.is_due(fetched, 1.5, None, now=fetched + DAY)
    assert POLICY.is_due(None, None, None, now=0)  # never fetched with a history: due
    assert POLICY.is_due(fetched, None, None, now=fetched + DAY)


def test_a_requests_own_interval_is_fixed_and_never_means_never() -> None:
    fetched = 1_000_000
    assert POLICY.is_due(fetched, 8.0, 60, now=fetched + 60)
    assert not POLICY.is_due(fetched, 1.0, 60, now=fetched + 59)
    never = freshness.own_interval({"revisit_after_s": "never"})
    assert not POLICY.is_due(fetched, 1.0, never, now=fetched + 1e12)
    assert freshness.own_interval({}) is None
    assert freshness.own_interval({"revisit_after_s": 0.5}) == 1


@pytest.mark.parametrize("value", ["weekly", -1, True, float("nan"), [3600]])
def test_a_bad_own_interval_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="revisit_after_s"):
        freshness.own_interval({"revisit_after_s": value})


def test_validators_go_back_verbatim() -> None:
    history = History('W/"x1"', "Tue, 14 Nov 2023 22:13:20 GMT", 7, 0)
    assert freshness.conditional_headers(history) == {
        "If-None-Match": 'W/"x1"',
        "If-Modified-Since": "Tue, 14 Nov 2023 22:13:20 GMT",
    }
    assert freshness.conditional_headers(History(None, None, 7, 0)) == {}
    assert freshness.conditional_headers(None) == {}


def test_a_304_is_believed_only_after_validators() -> None:
    assert freshness.is_conditional({"If-None-Match": '"a"'})
    assert freshness.is_conditional({}, {"if-modified-since": "x"})  # the spider's own
    assert not freshness.is_conditional({}, {"Accept": "*/*"})


def test_revisit_tells_new_changed_unchanged_and_not_modified_apart() -> None:
    def after(last: History | None, signature: int | None, **headers: str | None) -> Change:
        _, change = freshness.revisit(
            last,
            etag=headers.get("etag"),
            last_modified=headers.get("last_modified"),
            signature=signature,
            now=100,
            policy=POLICY,
            own_interval_s=None,
        )
        return change

    last = History('"a"', None, 5, 50, factor=1.5, streak=1)
    assert after(None, 5) is Change.NEW
    assert after(last, 6) is Change.CHANGED
    assert after(last, 5, etag='"b"') is Change.UNCHANGED  # a volatile ETag
    assert after(last, None) is Change.NOT_MODIFIED
    with pytest.raises(ValueError, match="earlier fetch"):
        after(None, None)


def test_a_304_keeps_the_signature_and_the_validators_it_does_not_replace() -> None:
    last = History('"a"', "Tue, 14 Nov 2023 22:13:20 GMT", 5, 50, factor=1.5, streak=1)
    history, _ = freshness.revisit(
        last, etag='"b"', last_modified=None, signature=None, now=99.9, policy=POLICY,
        own_interval_s=None,
    )  # fmt: skip
    assert history == History('"b"', last.last_modified, 5, 99, 2.25, 2)
    changed, _ = freshness.revisit(
        history, etag=None, last_modified=None, signature=9, now=200, policy=POLICY,
        own_interval_s=60,
    )  # fmt: skip
    assert (changed.etag, changed.signature, changed.streak, changed.own_interval_s) == (
        None, 9, 0, 60,
    )  # fmt: skip


def test_signatures_are_8_bytes_and_tell_contents_apart() -> None:
    a, b = freshness.signature(b"<p>a</p>"), freshness.signature(b"<p>b</p>")
    assert a != b
    assert -(2**63) <= a < 2**63
    assert freshness.signature("<p>a</p>") == a  # text is hashed as UTF-8


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        ("Tue, 14 Nov 2023 22:13:20 GMT", 1_700_000_000),
        ("Tuesday, 14-Nov-23 22:13:20 GMT", "Tuesday, 14-Nov-23 22:13:20 GMT"),  # RFC 850
        ("Tue, 14 Nov 2023 22:13:20 +0000", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ("yesterday", "yesterday"),
        (None, None),
    ],
)
def test_last_modified_is_packed_only_when_it_comes_back_byte_for_byte(
    header: str | None, stored: int | str | None
) -> None:
    assert freshness.pack_date(header) == stored
    assert freshness.unpack_date(freshness.pack_date(header)) == header
