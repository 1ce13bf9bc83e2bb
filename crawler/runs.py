"""Run records: one row per run of a crawl kept in a state file (why it started, when, how it
ended, its exit code, its counters and stats), and the history table ``crawler runs`` prints.

A stopped (or killed) run is continued by the next ``crawler run`` on its state; a finished one
is not, so the next ``crawler run`` starts a new run:

>>> Run(1, Trigger.MANUAL, outcome=RunOutcome.STOPPED).resumable
True
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crawler.errors import ConfigError
from crawler.stats import Stats


class Trigger(enum.StrEnum):
    """Why a run started: by hand, or by a schedule on time, catching up after downtime, or
    late because it waited for the schedule's previous run (overlap = queue)."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    CATCH_UP = "catch-up"
    QUEUED = "queued"


class RunOutcome(enum.StrEnum):
    RUNNING = "running"  # no end recorded: under way, or its process was killed
    FINISHED = "finished"
    STOPPED = "stopped"  # by a signal: resumable
    FAILED = "failed"  # finished with callback errors and no item at all
    CRASHED = "crashed"  # an error ended it: resumable
    TIMEOUT = "timeout"  # stopped at its time limit (the schedule service): resumable


EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_LOCKED = 4
EXIT_FORCED = 130
EXIT_CODES = {
    RunOutcome.FINISHED: EXIT_FINISHED,
    RunOutcome.FAILED: EXIT_FAILED,
    RunOutcome.CRASHED: EXIT_FAILED,
    RunOutcome.STOPPED: EXIT_STOPPED,
    RunOutcome.TIMEOUT: EXIT_STOPPED,
}
_ENDED = frozenset({RunOutcome.FINISHED, RunOutcome.FAILED})

# The runs table's counter columns, and the stats key each one is read from. Keys a Stats
# does not have (yet) read 0, but for `new`: see `counters`.
COUNTERS = {
    "pages": "pages_crawled",
    "items": "items_scraped",
    "new": "new",
    "changed": "changed",
    "not_modified": "not_modified",
    "failures": "failures",
    "bytes": "bytes_received",
}


def counters(stats: Mapping[str, Any]) -> dict[str, int]:
    """The counter columns of a run with these stats. Without a count of its own, ``new`` is
    the pages crawled that were not revisits of a changed page."""
    found = {column: int(stats.get(key, 0)) for column, key in COUNTERS.items()}
    if "new" not in stats:
        found["new"] = found["pages"] - found["changed"]
    return found


@dataclass
class Run:
    """One run of a crawl. ``stats`` are this run's own counters (``Stats.to_dict()``)."""

    id: int
    trigger: Trigger
    started_at: datetime | None = None  # None: a run recorded before runs had records
    scheduled_for: datetime | None = None
    finished_at: datetime | None = None
    outcome: RunOutcome = RunOutcome.RUNNING
    exit_code: int | None = None
    resumes: int = 0
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.trigger} {self.outcome} resumes={self.resumes}>"

    @property
    def resumable(self) -> bool:
        """Whether the next run on the state continues this one rather than starting anew."""
        return self.outcome not in _ENDED

    def counters(self) -> dict[str, int]:
        return counters(self.stats)

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready values (times as ISO 8601 in UTC), stats last."""
        return {
            "id": self.id,
            "trigger": str(self.trigger),
            "scheduled_for": iso(self.scheduled_for),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "outcome": str(self.outcome),
            "exit_code": self.exit_code,
            "resumes": self.resumes,
            **self.counters(),
            "stats": self.stats,
        }


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """A stored ISO 8601 time back as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text)


def parse_scheduled_for(text: str) -> datetime:
    """``--scheduled-for``: an ISO 8601 time with its UTC offset, kept in UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--scheduled-for {text!r} is not an ISO 8601 time (e.g. 2026-12-05T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(
            f"--scheduled-for {text!r} has no UTC offset (e.g. 2026-12-05T12:00:00Z or +01:00)"
        )
    return moment.astimezone(UTC)


def outcome_of(stats: Stats, *, stopped: bool) -> RunOutcome:
    """How a run that returned ended: a signal stops it; callback errors without a single
    item mean the spider is broken."""
    if stopped:
        return RunOutcome.STOPPED
    if stats.callback_errors and not stats.items_scraped:
        return RunOutcome.FAILED
    return RunOutcome.FINISHED


_HEADER = (
    "run", "trigger", "scheduled for", "started", "ended", "outcome", "exit", "resumed",
    "pages", "items", "new", "changed", "not mod.", "failures", "bytes", "time",
)  # fmt: skip
_LEFT = {"trigger", "scheduled for", "started", "ended", "outcome"}


def table(runs: Sequence[Run], *, live: bool) -> str:
    """The run history as an aligned text table, with a totals row. ``live``: whether a
    process holds the state's lock now (else a run without an end was killed)."""
    rows = [list(_HEADER)]
    for run in runs:
        outcome = str(run.outcome)
        if run.outcome is RunOutcome.RUNNING and not live:
            outcome = "killed"
        counts = run.counters()
        rows.append([
            str(run.id), str(run.trigger), _when(run.scheduled_for), _when(run.started_at),
            _when(run.finished_at), outcome, _or_dash(run.exit_code), str(run.resumes),
            *(str(counts[c]) for c in COUNTERS if c != "bytes"), _size(counts["bytes"]),
            _seconds(run.stats.get("elapsed_s", 0.0)),
        ])  # fmt: skip
    summed = counters(total := totals([run.stats for run in runs]))
    rows.append([
        "total", "", "", "", "", "", "", "", *(str(summed[c]) for c in COUNTERS if c != "bytes"),
        _size(summed["bytes"]), _seconds(total.get("elapsed_s", 0.0)),
    ])  # fmt: skip
    # A column no run has a value in (nothing scheduled, say) is left out.
    shown = [i for i in range(len(_HEADER)) if any(row[i] != "-" for row in rows[1:-1])]
    widths = {i: max(len(row[i]) for row in rows) for i in shown}
    return "\n".join(
        "  ".join(
            row[i].ljust(widths[i]) if _HEADER[i] in _LEFT else row[i].rjust(widths[i])
            for i in shown
        ).rstrip()
        for row in rows
    )


def totals(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stats summed over runs: every count, and the counts by status and reason. ``queued`` is
    a level, not a count: the last run's."""
    summed: dict[str, Any] = {}
    for stats in runs:
        for key, value in stats.items():
            if isinstance(value, Mapping):
                inner = summed.setdefault(key, {})
                for name, count in value.items():
                    inner[name] = inner.get(name, 0) + count
            elif isinstance(value, int | float) and not isinstance(value, bool):
                summed[key] = value if key == "queued" else summed.get(key, 0) + value
    if "elapsed_s" in summed:
        summed["elapsed_s"] = round(summed["elapsed_s"], 3)
    return summed


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _size(count: int) -> str:
    units = ("B", "kB", "MB", "GB")
    size, unit = float(count), 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    return f"{count} B" if unit == 0 else f"{size:.1f} {units[unit]}"


def _seconds(value: float) -> str:
    return f"{value:.1f}s"
