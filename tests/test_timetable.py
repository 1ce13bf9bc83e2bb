"""The schedule timetable, pure, on a fixed clock: cron fields in a zone (both 2027 Berlin
daylight-saving changes), the @ aliases, the stable jitter, missed runs and overlap."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crawler.service.timetable import (
    ALIASES,
    MAX_MISSED,
    Action,
    Timetable,
    catch_up,
    check_cron,
    check_zone,
    latest_due,
    on_due,
    stable_jitter,
)

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def local(moments: list[datetime]) -> list[str]:
    return [moment.astimezone(BERLIN).isoformat() for moment in moments]


@pytest.mark.parametrize("cron", ["0 2 * * *", "30 2 * * *", "59 2 * * *"])
def test_spring_change_runs_once_at_three(cron: str) -> None:
    """2027-03-28 has no 02:00-03:00 in Berlin: a job set inside it runs once, at 03:00."""
    table = Timetable.parse(cron, "Europe/Berlin")
    due = list(table.due_between(berlin(2027, 3, 27, 12), berlin(2027, 3, 29, 12)))
    assert local(due) == [
        "2027-03-28T03:00:00+02:00",
        f"2027-03-29T02:{cron.split(maxsplit=1)[0].zfill(2)}:00+02:00",
    ]


def test_autumn_change_runs_once() -> None:
    """2027-10-31 has 02:00-03:00 twice in Berlin: a job set inside it runs the first time."""
    table = Timetable.parse("30 2 * * *", "Europe/Berlin")
    due = list(table.due_between(berlin(2027, 10, 30, 12), berlin(2027, 11, 1, 12)))
    assert local(due) == ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]


@pytest.mark.parametrize(
    "start",
    [
        berlin(2027, 10, 31, 2, 30),  # the due time itself, first copy of the hour
        berlin(2027, 10, 31, 2, 45),  # after it, still in the first copy
        berlin(2027, 10, 31, 2, 10, fold=1),  # the second copy, before 02:30 comes again
        berlin(2027, 10, 31, 2, 30, fold=1),
    ],
)
def test_autumn_change_never_runs_again_in_the_repeated_hour(start: datetime) -> None:
    table = Timetable.parse("30 2 * * *", "Europe/Berlin")
    assert local([table.next_after(start)]) == ["2027-11-01T02:30:00+01:00"]


@pytest.mark.parametrize(
    ("day", "next_day", "hours"),
    [((2027, 3, 28), (2027, 3, 29), 23), ((2027, 10, 31), (2027, 11, 1), 25)],
)
def test_hourly_follows_real_hours_on_change_days(
    day: tuple[int, int, int], next_day: tuple[int, int, int], hours: int
) -> None:
    """Fixed-hour jobs keep local time; an every-hour job follows the real hours."""
    table = Timetable.parse("@hourly", "Europe/Berlin")
    second = timedelta(seconds=1)
    due = list(table.due_between(berlin(*day) - second, berlin(*next_day) - second))
    assert len(due) == hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(due))


def test_zone_default_is_utc_and_times_come_out_in_utc() -> None:
    table = Timetable.parse("15 6 * * *")
    due = table.next_after(datetime(2027, 6, 1, 7, tzinfo=UTC))
    assert due == datetime(2027, 6, 2, 6, 15, tzinfo=UTC)
    assert Timetable.parse("15 6 * * *", "Asia/Tokyo").next_after(due) == datetime(
        2027, 6, 2, 21, 15, tzinfo=UTC
    )


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_mean_their_cron_fields(alias: str) -> None:
    expected = Timetable.parse(ALIASES[alias], "Europe/Berlin")
    table = Timetable.parse(alias.upper(), "Europe/Berlin")
    moment = berlin(2027, 3, 1)
    for _ in range(3):
        moment = table.next_after(moment)
        assert moment == expected.next_after(moment - timedelta(seconds=1))


def test_six_fields_have_seconds() -> None:
    table = Timetable.parse("*/20 * * * * *")
    start = datetime(2027, 1, 1, tzinfo=UTC)
    assert [d.second for d in table.due_between(start, start + timedelta(minutes=1))] == [
        20,
        40,
        0,
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "'61 * * * *': bad minute"),
        ("* 24 * * *", "bad hour"),
        ("* * 32 * *", "bad day-of-month"),
        ("* * * 13 *", "bad month"),
        ("* * * * 8", "bad day-of-week"),
        ("* * *", "wrong number of fields"),
        ("@fortnightly", "unknown alias '@fortnightly'"),
        ("", "wrong number of fields"),
    ],
)
def test_bad_cron_says_which_field(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_cron(cron)


@pytest.mark.parametrize("zone", ["Europe/Berlim", "CEST", "../etc/passwd", ""])
def test_bad_zone(zone: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        check_zone(zone)


def test_jitter_is_bounded_and_spread() -> None:
    offsets = [stable_jitter(f"schedule-{n}", 300) for n in range(500)]
    assert all(0 <= offset < 300 for offset in offsets)
    assert len(set(offsets)) > 200  # spread, not one value
    assert stable_jitter("books", 0) == 0
    assert {stable_jitter(f"s{n}", 1) for n in range(50)} == {0}


def test_jitter_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the jitter must not be."""
    code = (
        "from crawler.service.timetable import stable_jitter; print(stable_jitter('books', 3600))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert seen == {str(stable_jitter("books", 3600))}


def test_jitter_moves_every_due_time_by_the_same_offset() -> None:
    offset = stable_jitter("books", 600)
    assert offset > 0  # else this test shows nothing
    table = Timetable.parse("0 * * * *", "UTC", offset)
    start = datetime(2027, 1, 1, tzinfo=UTC)
    due = list(table.due_between(start, start + timedelta(hours=3)))
    assert due == [start + timedelta(hours=h, seconds=offset) for h in range(3)]
    assert table.next_after(due[0] - timedelta(seconds=1)) == due[0]
    assert table.next_after(due[0]) == due[1]


MINUTELY = Timetable.parse("* * * * *")
NOON = datetime(2027, 1, 1, 12, tzinfo=UTC)


def minute(n: int) -> datetime:
    return NOON + timedelta(minutes=n)


def test_nothing_due_nothing_to_catch_up() -> None:
    plan = catch_up(MINUTELY, minute(0), minute(0) + timedelta(seconds=59), None)
    assert (plan.run, plan.missed, plan.more) == (None, [], False)


def test_on_time_due_time_runs() -> None:
    plan = catch_up(MINUTELY, minute(0), minute(1), None)
    assert (plan.run, plan.missed) == (minute(1), [])


def test_after_downtime_one_catch_up_run_within_the_grace() -> None:
    """Down from 12:00 to 12:03:30: 12:01 and 12:02 are missed, 12:03 runs, once."""
    plan = catch_up(MINUTELY, minute(0), minute(3) + timedelta(seconds=30), None)
    assert plan.run == minute(3)
    assert plan.missed == [minute(1), minute(2)]
    assert not plan.more


def test_after_downtime_nothing_runs_beyond_the_grace() -> None:
    now = minute(3) + timedelta(seconds=30)
    plan = catch_up(MINUTELY, minute(0), now, timedelta(seconds=20))
    assert plan.run is None
    assert plan.missed == [minute(1), minute(2), minute(3)]
    within = catch_up(MINUTELY, minute(0), now, timedelta(seconds=30))
    assert within.run == minute(3)


def test_default_grace_is_one_period() -> None:
    daily = Timetable.parse("@daily")
    midnight = datetime(2027, 1, 2, tzinfo=UTC)
    late = catch_up(daily, midnight - timedelta(days=1), midnight + timedelta(hours=23), None)
    assert late.run == midnight
    too_late = catch_up(daily, midnight - timedelta(days=1), midnight + timedelta(hours=24.5), None)
    assert (too_late.run, too_late.missed) == (midnight + timedelta(days=1), [midnight])


def test_long_downtime_is_no_burst_and_lists_the_latest_misses() -> None:
    """A year down under an every-minute schedule: one run, the latest misses listed."""
    year_later = minute(0) + timedelta(days=365, seconds=10)
    plan = catch_up(MINUTELY, minute(0), year_later, None)
    assert plan.run == year_later - timedelta(seconds=10)
    assert len(plan.missed) == MAX_MISSED
    assert plan.missed[-1] == plan.run - timedelta(minutes=1)
    assert plan.more


def test_latest_due_counts_exactly() -> None:
    due, more = latest_due(MINUTELY, minute(0), minute(5), 3)
    assert (due, more) == ([minute(3), minute(4), minute(5)], True)
    due, more = latest_due(MINUTELY, minute(0), minute(3), 3)
    assert (due, more) == ([minute(1), minute(2), minute(3)], False)


@pytest.mark.parametrize(
    ("running", "queued", "overlap", "action"),
    [
        (False, False, "skip", Action.START),
        (False, False, "queue", Action.START),
        (True, False, "skip", Action.SKIP),
        (True, False, "queue", Action.QUEUE),
        (True, True, "queue", Action.SKIP),  # at most one waits
    ],
)
def test_runs_never_overlap(running: bool, queued: bool, overlap: str, action: Action) -> None:
    assert on_due(running=running, queued=queued, overlap=overlap) == action  # type: ignore[arg-type]
