"""One scheduled run as a child ``crawler run``: its command line, and what its exit code and
``--stats`` file say about it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from crawler.frontier.sqlite import read_runs
from crawler.service.config import Schedule
from crawler.service.history import Outcome, Trigger

# `crawler run` exit codes (README "Exit codes") and what they mean for a scheduled run.
EXIT_OUTCOMES = {
    1: Outcome.FAILED,
    2: Outcome.BAD_INPUT,
    3: Outcome.STOPPED,
    4: Outcome.LOCKED,
    130: Outcome.FORCED,
}
Ending = Literal["exit", "limit", "stop"]


def outcome(code: int, ending: Ending, items: int | None, min_items: int | None) -> Outcome:
    """What a child's exit means, given why it ended and how many items it added."""
    if ending == "limit":
        return Outcome.TIMEOUT
    if ending == "stop" and code in (0, 3):
        return Outcome.STOPPED  # a graceful stop exits 0 before the exit-code change (issue 9)
    if code == 0:
        short = min_items is not None and (items or 0) < min_items
        return Outcome.DEGRADED if short else Outcome.FINISHED
    return EXIT_OUTCOMES.get(code, Outcome.FORCED if code < 0 else Outcome.FAILED)


def items_added(stats_file: Path, before: int | None) -> tuple[int | None, int | None]:
    """(items this run added, items the state holds) from a child's ``--stats`` file: its
    ``totals`` add up the state's runs, so this child's share is the growth since the last one.
    (A child continuing a stopped run reports that run's items so far, not its own.)"""
    try:
        data = json.loads(stats_file.read_text(encoding="utf-8"))
        total = int(data.get("totals", data)["items_scraped"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    if before is None or total < before:  # no earlier run, or the state was replaced
        return total, total
    return total - before, total


def state_run(state: Path) -> int:
    """The number of the run a child will be on ``state``: the last one when it is resumable
    (stopped, timed out, killed), so a ``{run}`` feed is the same file and resumes exactly
    once; else the next one."""
    if not state.is_file():
        return 1
    runs = read_runs(state)
    if not runs:  # a new state, or one from before run records
        return 1
    last = runs[-1]
    return last.id if last.resumable else last.id + 1


@dataclass
class Launch:
    """How children are started: the same config file and spiders folder as the service."""

    config: Path | None = None
    spiders_dir: Path = Path("spiders")
    python: str = sys.executable

    def command(
        self,
        schedule: Schedule,
        run: int,
        stats: Path,
        *,
        trigger: Trigger = Trigger.SCHEDULE,
        due: datetime | None = None,
    ) -> list[str]:
        argv = [self.python, "-m", "crawler", "run", schedule.spider, "--no-progress"]
        # The service serves the metrics port (the config file's); a run must not take it.
        argv += ["-s", "metrics_port=0"]
        argv += ["--spiders-dir", str(self.spiders_dir), "--stats", str(stats)]
        argv += ["--trigger", str(trigger)]  # for the state's own run history (crawler runs)
        if due is not None:
            argv += ["--scheduled-for", due.isoformat()]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        if schedule.state is not None:
            argv += ["--state", str(schedule.state)]
        feed = schedule.feed_for(run)
        if feed is not None:
            argv += ["-o", str(feed)]
        for key, value in schedule.args.items():
            argv += ["-a", f"{key}={_text(value)}"]
        for key, value in schedule.settings.items():
            argv += ["-s", f"{key}={_text(value)}"]
        return argv


def _text(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
