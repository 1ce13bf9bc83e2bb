"""The runs table of the SQLite state: its schema, and a run record to and from its rows."""

from __future__ import annotations

from typing import Any

from crawler import jsondata
from crawler.runs import COUNTERS, Run, RunOutcome, Trigger, counters, parse_time

# Created on old states too (IF NOT EXISTS): a state from before run records gains the table.
RUNS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    started_at TEXT,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    exit_code INTEGER,
    resumes INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL DEFAULT 0,
    new INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    not_modified INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    stats BLOB NOT NULL DEFAULT '{}'
);
"""
RUN_COLUMNS = (
    "id, trigger, started_at, scheduled_for, finished_at, outcome, exit_code, resumes, stats"
)
SAVE_RUN_STATS = (
    f"UPDATE runs SET {', '.join(f'{column} = ?' for column in COUNTERS)}, stats = ? WHERE id = ?"
)


def run_from_row(row: Any) -> Run:
    """A ``Run`` from a row of ``SELECT {RUN_COLUMNS}``."""
    return Run(
        id=row[0],
        trigger=Trigger(row[1]),
        started_at=parse_time(row[2]),
        scheduled_for=parse_time(row[3]),
        finished_at=parse_time(row[4]),
        outcome=RunOutcome(row[5]),
        exit_code=row[6],
        resumes=row[7],
        stats=dict(jsondata.loads(row[8])),
    )


def run_stats_row(run_id: int, stats: dict[str, Any]) -> tuple[Any, ...]:
    """The parameters of ``SAVE_RUN_STATS``: the counter columns, the stats JSON, the run."""
    return (*counters(stats).values(), jsondata.dumps(stats), run_id)
