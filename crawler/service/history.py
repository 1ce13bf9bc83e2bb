"""The service's memory, in a small SQLite file beside the states: each schedule's last handled
due time (so a restart knows what it missed) and one row per run, skip or miss.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import aiosqlite

from crawler.errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    last_scheduled_for TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    items_total INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    schedule TEXT NOT NULL,
    run INTEGER,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    started_at TEXT,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    exit_code INTEGER,
    items INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_schedule ON runs (schedule, id);
"""


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    CATCH_UP = "catch-up"
    QUEUED = "queued"
    MANUAL = "manual"


class Outcome(enum.StrEnum):
    """How a due time ended. The first group mirrors ``crawler run``'s exit codes."""

    FINISHED = "finished"  # exit 0, enough items
    DEGRADED = "degraded"  # exit 0, fewer items than min_items
    FAILED = "failed"  # exit 1: a crash, or callback errors and no items
    BAD_INPUT = "bad-input"  # exit 2
    STOPPED = "stopped"  # exit 3, or stopped by the service's own shutdown
    LOCKED = "locked"  # exit 4: another run holds the state; nothing was crawled
    FORCED = "forced"  # exit 130, or killed
    TIMEOUT = "timeout"  # stopped at max_runtime_s; the next run resumes
    SKIPPED = "skipped"  # due while a run of the schedule was going on
    MISSED = "missed"  # due while the service was down, and not caught up


@dataclass(frozen=True)
class Record:
    schedule: str
    outcome: Outcome
    trigger: Trigger
    scheduled_for: datetime | None = None
    run: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    items: int | None = None
    detail: str = ""


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class History:
    """``async with History(path) as history``: the rows of every schedule in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self.added = 0

    def __repr__(self) -> str:
        state = "open" if self._db is not None else "closed"
        return f"<History {self.path} {state} added={self.added}>"

    async def __aenter__(self) -> History:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.executescript(SCHEMA)
        except aiosqlite.Error as exc:
            await self.close()
            raise StateError(f"cannot keep the schedule history in {self.path}: {exc}") from None
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StateError(f"the schedule history {self.path} is not open")
        return self._db

    async def last_scheduled_for(self, name: str) -> datetime | None:
        sql = "SELECT last_scheduled_for FROM schedules WHERE name = ?"
        async with self.db.execute(sql, (name,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _moment(row[0])

    async def mark_scheduled(self, name: str, due: datetime) -> None:
        """Remember that due times up to ``due`` are handled (run, queued, skipped or missed)."""
        await self.db.execute(
            "INSERT INTO schedules (name, last_scheduled_for) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET last_scheduled_for = max(coalesce(last_scheduled_for, ''), "
            "excluded.last_scheduled_for)",
            (name, _text(due)),
        )

    async def next_run(self, name: str) -> tuple[int, int | None]:
        """A new run number for ``name``, and the item count its state held after the last run."""
        await self.db.execute(
            "INSERT INTO schedules (name, runs) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET runs = runs + 1",
            (name,),
        )
        sql = "SELECT runs, items_total FROM schedules WHERE name = ?"
        async with self.db.execute(sql, (name,)) as cursor:
            row = await cursor.fetchone()
        assert row is not None  # just written
        return int(row[0]), row[1]

    async def set_items_total(self, name: str, total: int) -> None:
        await self.db.execute("UPDATE schedules SET items_total = ? WHERE name = ?", (total, name))

    async def add(self, record: Record) -> None:
        await self.db.execute(
            "INSERT INTO runs (schedule, run, trigger, scheduled_for, started_at, finished_at, "
            "outcome, exit_code, items, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.schedule,
                record.run,
                record.trigger.value,
                _text(record.scheduled_for),
                _text(record.started_at),
                _text(record.finished_at),
                record.outcome.value,
                record.exit_code,
                record.items,
                record.detail,
            ),
        )
        self.added += 1

    async def records(self, name: str | None = None, limit: int = 1000) -> list[Record]:
        """The latest ``limit`` rows, oldest first; of one schedule if ``name`` is given."""
        where, params = ("WHERE schedule = ?", (name, limit)) if name else ("", (limit,))
        sql = (
            "SELECT schedule, outcome, trigger, scheduled_for, run, started_at, finished_at, "
            f"exit_code, items, detail FROM runs {where} ORDER BY id DESC LIMIT ?"
        )
        async with self.db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [
            Record(
                schedule=row[0],
                outcome=Outcome(row[1]),
                trigger=Trigger(row[2]),
                scheduled_for=_moment(row[3]),
                run=row[4],
                started_at=_moment(row[5]),
                finished_at=_moment(row[6]),
                exit_code=row[7],
                items=row[8],
                detail=row[9],
            )
            for row in reversed(list(rows))
        ]
