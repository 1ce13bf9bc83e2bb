"""When a schedule is due: cron expressions, zones, a stable jitter, and the missed-run and
overlap decisions. Pure functions over plain data and an explicit ``now``; the only importer
of cronsim, which follows Debian cron's daylight-saving rules.

>>> table = Timetable.parse("30 2 * * *", "Europe/Berlin")
>>> table.next_after(datetime(2027, 3, 27, 12, tzinfo=UTC)).isoformat()  # the skipped hour
'2027-03-28T01:00:00+00:00'
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# cronsim rejects the @ aliases; these are Debian cron's.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Due times walked when looking back over downtime; past this many, the rest are not listed.
MAX_MISSED = 100

Overlap = Literal["skip", "queue"]


def check_cron(expression: str) -> str:
    """The five- or six-field expression ``expression`` stands for; ValueError if it is bad.

    >>> check_cron("@hourly")
    '0 * * * *'
    """
    fields = ALIASES.get(expression.strip().lower(), expression.strip())
    if fields.startswith("@"):
        raise ValueError(f"unknown alias {expression!r} (known: {', '.join(ALIASES)})")
    try:
        CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"{expression!r}: {str(exc).lower()}") from None
    return fields


def check_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


def stable_jitter(name: str, jitter_s: int) -> int:
    """A schedule's offset in ``[0, jitter_s)`` seconds: the same for a name on every start and
    every machine (Python's own ``hash`` is salted per process).

    >>> stable_jitter("books", 60) == stable_jitter("books", 60) < 60
    True
    """
    if jitter_s <= 0:
        return 0
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % jitter_s


@dataclass(frozen=True)
class Timetable:
    """The due times of one schedule: its cron fields read in its zone, each moved by the
    schedule's fixed jitter. Times in and out are aware datetimes; out they are in UTC."""

    fields: str
    zone: ZoneInfo
    offset: timedelta = timedelta(0)

    @classmethod
    def parse(cls, cron: str, timezone: str = "UTC", offset_s: int = 0) -> Timetable:
        return cls(check_cron(cron), check_zone(timezone), timedelta(seconds=offset_s))

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        start = (moment - self.offset).astimezone(self.zone)
        for slot in CronSim(self.fields, start):
            # cronsim keeps fixed-time jobs on local wall time; from the second (fold=1) copy of
            # an hour that repeats in autumn it may name the first copy, already past.
            due = slot.astimezone(UTC) + self.offset
            if due > moment:
                return due
        raise ValueError(f"{self.fields!r} has no due time after {moment.isoformat()}")

    def due_between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The due times in ``(after, until]``, oldest first."""
        due = self.next_after(after)
        while due <= until:
            yield due
            due = self.next_after(due)

    def period_after(self, due: datetime) -> timedelta:
        """The time from ``due`` to the next due time: the default grace for a missed run."""
        return self.next_after(due) - due


@dataclass(frozen=True)
class CatchUp:
    """What to do with the due times that passed while the service was down (or stalled):
    run ``run`` (the latest one, if within the grace) and record ``missed``; ``more`` says that
    earlier due times were missed too (beyond `MAX_MISSED`, they are not listed)."""

    run: datetime | None
    missed: list[datetime]
    more: bool = False


def catch_up(table: Timetable, last: datetime, now: datetime, grace: timedelta | None) -> CatchUp:
    """Never a burst: of the due times in ``(last, now]`` at most the latest runs, and only if
    it is at most ``grace`` old (default: one period of the schedule).

    >>> t, day = Timetable.parse("0 * * * *"), datetime(2027, 1, 1, tzinfo=UTC)
    >>> c = catch_up(t, day.replace(hour=9), day.replace(hour=12, minute=5), None)
    >>> c.run.hour, [d.hour for d in c.missed]
    (12, [10, 11])
    """
    due, more = latest_due(table, last, now, MAX_MISSED + 1)
    if not due:
        return CatchUp(None, [])
    latest = due[-1]
    allowed = grace if grace is not None else table.period_after(latest)
    if now - latest <= allowed:
        return CatchUp(latest, due[:-1], more)
    return CatchUp(None, due[-MAX_MISSED:], more or len(due) > MAX_MISSED)


def latest_due(
    table: Timetable, after: datetime, until: datetime, count: int
) -> tuple[list[datetime], bool]:
    """The latest ``count`` due times in ``(after, until]``, oldest first, and whether there are
    earlier ones. It looks back from ``until`` in doubling windows, so a year of downtime under
    an every-minute schedule is not walked minute by minute."""
    span = timedelta(minutes=1)
    while True:
        start = max(after, until - span)
        found = list(table.due_between(start, until))
        if len(found) >= count or start == after:
            found = found[-count:]
            return found, bool(found) and table.next_after(after) < found[0]
        span *= 2


class Action(enum.StrEnum):
    """What a due time does, given the schedule's run in progress and its overlap policy."""

    START = "start"
    QUEUE = "queue"
    SKIP = "skip"


def on_due(*, running: bool, queued: bool, overlap: Overlap) -> Action:
    """Runs of one schedule never overlap: ``skip`` drops a due time while a run goes on,
    ``queue`` holds at most one to start when the run ends.

    >>> on_due(running=True, queued=False, overlap="queue")
    <Action.QUEUE: 'queue'>
    """
    if not running:
        return Action.START
    if overlap == "queue" and not queued:
        return Action.QUEUE
    return Action.SKIP
