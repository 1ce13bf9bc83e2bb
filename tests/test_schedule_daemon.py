"""The schedule service end to end: real ``crawler run`` children crawl the loopback test site,
while the wall clock, the service's lowest seam, is moved by the test (no minute-long waits)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crawler.runner import run_history
from crawler.service.config import Schedule
from crawler.service.daemon import Daemon
from crawler.service.history import History, Outcome, Record, Trigger
from crawler.service.runs import Ending, Launch, items_added, outcome
from tests.site import TestSite

ROOT = Path(__file__).resolve().parent.parent
SPIDER = """
from crawler import Request, Response, Spider


class Leaves(Spider):
    name = "leaves"
    base = ""
    n = "5"
    delay = "0"

    async def start_requests(self):
        yield Request(f"{self.base}/slow-links?delay={self.delay}&n={self.n}")

    async def parse(self, response: Response):
        for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
            yield request

    async def parse_leaf(self, response: Response):
        yield {"leaf": int(response.url.rsplit("=", 1)[1])}
"""
NOON = datetime(2027, 3, 1, 12, tzinfo=UTC)
WAIT_S = 45  # for a child crawl of a few seconds on a loaded machine


def minute(n: float) -> datetime:
    return NOON + timedelta(minutes=n)


class FakeClock:
    """The wall clock, moved by the test. ``asleep`` gets each due time the service waits for."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._moved = asyncio.Condition()
        self.asleep: asyncio.Queue[datetime] = asyncio.Queue()

    def __repr__(self) -> str:
        return f"<FakeClock {self._now.isoformat()}>"

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, moment: datetime) -> None:
        async with self._moved:
            if self._now < moment:
                self.asleep.put_nowait(moment)
            await self._moved.wait_for(lambda: self._now >= moment)

    async def move_to(self, moment: datetime) -> None:
        async with self._moved:
            self._now = moment
            self._moved.notify_all()

    async def next_sleep(self) -> datetime:
        return await asyncio.wait_for(self.asleep.get(), WAIT_S)


@dataclass
class Service:
    daemon: Daemon
    clock: FakeClock
    records: asyncio.Queue[Record]
    history: History

    async def record(self) -> Record:
        return await asyncio.wait_for(self.records.get(), WAIT_S)

    async def at(self, moment: datetime) -> None:
        """Let the service sleep until ``moment``, then move the clock there."""
        assert await self.clock.next_sleep() == moment
        await self.clock.move_to(moment)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "leaves.py").write_text(SPIDER, encoding="utf-8")
    (tmp_path / "crawler.toml").write_text("[crawler]\nobey_robots = false\n", encoding="utf-8")
    return tmp_path


def schedule(site: TestSite, folder: Path, **fields: Any) -> Schedule:
    args = {"base": site.base(), "n": fields.pop("n", 5), "delay": fields.pop("delay", 0)}
    return Schedule(
        name="leaves",
        spider="leaves",
        cron="* * * * *",
        args=args,
        settings={"allow_private_addresses": True, "per_host_concurrency": 1},
        feed=str(folder / "items-{run}.jsonl"),
        **fields,
    )


@asynccontextmanager
async def service(
    folder: Path, entry: Schedule, now: datetime, stop_timeout_s: float = 30
) -> AsyncIterator[Service]:
    """A daemon serving ``entry`` in a task; stopped gracefully when the block ends."""
    clock, records = FakeClock(now), asyncio.Queue[Record]()
    launch = Launch(folder / "crawler.toml", folder / "spiders")
    async with History(folder / "schedule-history.db") as history:
        daemon = Daemon(
            [entry],
            history,
            clock=clock,
            launch=launch,
            stop_timeout_s=stop_timeout_s,
            on_record=records.put_nowait,
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(daemon.serve())
            try:
                yield Service(daemon, clock, records, history)
            finally:
                daemon.stop()


def feed(folder: Path, run: int) -> list[int]:
    lines = (folder / f"items-{run}.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted(json.loads(line)["leaf"] for line in lines)


def wait_for_items(path: Path) -> None:
    """Until the child's feed has items: its crawl, and its signal handling, are under way."""
    deadline = time.monotonic() + WAIT_S
    while not (path.exists() and path.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a file another process writes; not synchronisation
    assert path.exists()


@pytest.mark.slow
async def test_every_minute_one_run_per_due_time(site: TestSite, folder: Path) -> None:
    async with service(folder, schedule(site, folder), minute(0.5)) as running:
        for n in (1, 2, 3):
            await running.at(minute(n))
            record = await running.record()
            assert (record.outcome, record.trigger) == (Outcome.FINISHED, Trigger.SCHEDULE)
            assert (record.run, record.scheduled_for, record.exit_code) == (n, minute(n), 0)
            assert record.items == 5
            assert feed(folder, n) == [0, 1, 2, 3, 4]
        assert await running.history.last_scheduled_for("leaves") == minute(3)
        assert [r.run for r in await running.history.records()] == [1, 2, 3]
        (status,) = running.daemon.statuses()  # what /metrics shows of the schedule
        assert status.outcomes == {"finished": 3}
        assert status.last_success == status.last_end is not None
        assert status.next_run == minute(4).timestamp()


@pytest.mark.slow
async def test_overlap_skip_then_a_graceful_stop(site: TestSite, folder: Path) -> None:
    """A due time while the last run goes on is skipped and recorded; stopping the service
    SIGINTs the child, which ends its requests in flight and exits as stopped."""
    entry = schedule(site, folder, n=100, delay=0.1, state=folder / "state.db")
    async with service(folder, entry, minute(0.5)) as running:
        await running.at(minute(1))
        await asyncio.to_thread(wait_for_items, folder / "items-1.jsonl")
        await running.at(minute(2))
        skipped = await running.record()
        assert (skipped.outcome, skipped.scheduled_for, skipped.run) == (
            Outcome.SKIPPED,
            minute(2),
            None,
        )
        running.daemon.stop()
        stopped = await running.record()
    assert (stopped.outcome, stopped.run, stopped.scheduled_for) == (Outcome.STOPPED, 1, minute(1))
    assert stopped.exit_code in (0, 3)  # 3 once `crawler run` exits so after a graceful stop
    assert stopped.items is not None
    assert 0 < stopped.items < 100
    assert len(feed(folder, 1)) == stopped.items


@pytest.mark.slow
async def test_overlap_queue_holds_one(site: TestSite, folder: Path) -> None:
    entry = schedule(site, folder, n=30, delay=0.1, overlap="queue")
    async with service(folder, entry, minute(0.5)) as running:
        await running.at(minute(1))
        await running.at(minute(2))  # queued behind run 1
        await running.at(minute(3))  # the queue holds one: skipped
        first, second, third = [await running.record() for _ in range(3)]
        assert (first.outcome, first.scheduled_for) == (Outcome.SKIPPED, minute(3))
        assert (second.run, second.trigger, second.outcome) == (1, Trigger.SCHEDULE, "finished")
        assert (third.run, third.trigger, third.scheduled_for) == (2, Trigger.QUEUED, minute(2))
        assert third.started_at is not None
        assert second.finished_at is not None
        assert third.started_at >= second.finished_at
    assert feed(folder, 2) == list(range(30))


@pytest.mark.slow
async def test_after_downtime_exactly_one_catch_up_run(site: TestSite, folder: Path) -> None:
    entry = schedule(site, folder)
    async with service(folder, entry, minute(0.5)) as first_start:
        assert await first_start.clock.next_sleep() == minute(1)
    # Down from 12:00:30 until 12:03:20: 12:01 and 12:02 are missed, 12:03 is caught up.
    async with service(folder, entry, minute(3) + timedelta(seconds=20)) as running:
        missed = [await running.record() for _ in range(2)]
        caught_up = await running.record()
        assert await running.clock.next_sleep() == minute(4)
        assert len(await running.history.records()) == 3
    assert [(r.outcome, r.scheduled_for) for r in missed] == [
        (Outcome.MISSED, minute(1)),
        (Outcome.MISSED, minute(2)),
    ]
    assert (caught_up.outcome, caught_up.trigger) == (Outcome.FINISHED, Trigger.CATCH_UP)
    assert (caught_up.run, caught_up.scheduled_for) == (1, minute(3))


async def test_after_downtime_beyond_the_grace_nothing_runs(site: TestSite, folder: Path) -> None:
    entry = schedule(site, folder, misfire_grace_s=10)
    async with service(folder, entry, minute(0.5)) as first_start:
        assert await first_start.clock.next_sleep() == minute(1)
    async with service(folder, entry, minute(3) + timedelta(seconds=20)) as running:
        missed = [await running.record() for _ in range(3)]
        assert await running.clock.next_sleep() == minute(4)
    assert [(r.outcome, r.scheduled_for) for r in missed] == [
        (Outcome.MISSED, minute(n)) for n in (1, 2, 3)
    ]
    assert running.records.empty()


@pytest.mark.slow
async def test_max_runtime_stops_the_run_and_the_next_resumes(site: TestSite, folder: Path) -> None:
    # 100 pages at 0.1 s each, one at a time: over 10 s, so each 4 s run meets its limit.
    entry = schedule(site, folder, n=100, delay=0.1, state=folder / "state.db", max_runtime_s=4)
    async with service(folder, entry, minute(0.5)) as running:
        await running.at(minute(1))
        first = await running.record()
        await running.at(minute(2))  # the state is resumable: the next run goes on with it
        second = await running.record()
    # Both children are the state's run 1: the second continues it, and its {run} feed.
    assert [(r.run, r.outcome) for r in (first, second)] == [
        (1, Outcome.TIMEOUT),
        (1, Outcome.TIMEOUT),
    ]
    assert first.items is not None
    assert second.items is not None  # this run's share: the state's items grew by it
    assert 0 < first.items < first.items + second.items == len(feed(folder, 1)) < 100
    assert len(set(feed(folder, 1))) == len(feed(folder, 1))  # resumed: no page twice
    assert not (folder / "items-2.jsonl").exists()
    # The state's own history: one run, started by the schedule and continued by the next child.
    runs, under_way = run_history(folder / "state.db")
    assert under_way is None
    assert runs is not None
    assert [(r.id, r.trigger, r.outcome, r.exit_code, r.resumes) for r in runs] == [
        (1, "schedule", "stopped", 3, 1)
    ]
    assert runs[0].scheduled_for == minute(1)
    assert runs[0].counters()["items"] == first.items + second.items


def run_schedule(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "schedule", "--config", "crawler.toml", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def history_rows(folder: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(folder / "schedule-history.db") as db:
        return db.execute("SELECT trigger, outcome, exit_code, items, run FROM runs").fetchall()


def toml_value(value: object) -> str:
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(site: TestSite, folder: Path, **extra: object) -> None:
    lines = [
        "[crawler]",
        "obey_robots = false",
        "[[schedule]]",
        'name = "leaves"',
        'spider = "leaves"',
        'cron = "@daily"',
        'state = "state.db"',
        'feed = "items-{run}.jsonl"',
        "settings = { allow_private_addresses = true, per_host_concurrency = 1 }",
    ]
    lines += [f"{key} = {toml_value(value)}" for key, value in extra.items()]
    (folder / "crawler.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_once_too_few_items_is_degraded(site: TestSite, folder: Path) -> None:
    write_config(site, folder, min_items=10, args={"base": site.base(), "n": "5"})
    process = run_schedule(folder, "--once", "leaves")
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, stderr
    assert history_rows(folder) == [("manual", "degraded", 0, 5, 1)]


@pytest.mark.slow
def test_sigint_to_the_service_stops_the_child_gracefully(site: TestSite, folder: Path) -> None:
    write_config(site, folder, args={"base": site.base(), "n": "100", "delay": "0.1"})
    process = run_schedule(folder, "--once", "leaves")
    items = folder / "items-1.jsonl"
    wait_for_items(items)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode in (0, 3), stderr  # the child's code: a graceful stop
    [(trigger, outcome, code, count, run)] = history_rows(folder)
    assert (trigger, outcome, code, run) == ("manual", "stopped", process.returncode, 1)
    assert 0 < count < 100
    assert len(items.read_text(encoding="utf-8").splitlines()) == count


async def test_a_child_that_cannot_start_is_a_failed_run(site: TestSite, folder: Path) -> None:
    launch = Launch(folder / "crawler.toml", folder / "spiders", python=str(folder / "no-python"))
    async with History(folder / "schedule-history.db") as history:
        daemon = Daemon([schedule(site, folder)], history, launch=launch)
        record = await daemon.run_once("leaves")
        assert await history.records() == [record]
    assert (record.outcome, record.exit_code, record.trigger) == (Outcome.FAILED, 1, "manual")
    assert record.detail.startswith("cannot start crawler run: ")


@pytest.mark.parametrize(
    ("code", "ending", "items", "expected"),
    [
        (0, "exit", 12, Outcome.FINISHED),
        (0, "exit", 9, Outcome.DEGRADED),
        (0, "exit", None, Outcome.DEGRADED),  # no stats: nothing shows it reached min_items
        (1, "exit", 50, Outcome.FAILED),
        (2, "exit", None, Outcome.BAD_INPUT),
        (3, "exit", 5, Outcome.STOPPED),
        (4, "exit", None, Outcome.LOCKED),
        (130, "exit", 5, Outcome.FORCED),
        (-9, "exit", None, Outcome.FORCED),
        (0, "stop", 5, Outcome.STOPPED),
        (3, "stop", 5, Outcome.STOPPED),
        (130, "stop", 5, Outcome.FORCED),
        (0, "limit", 5, Outcome.TIMEOUT),
        (3, "limit", 5, Outcome.TIMEOUT),
        (42, "exit", None, Outcome.FAILED),
    ],
)
def test_exit_codes_become_outcomes(
    code: int, ending: Ending, items: int | None, expected: Outcome
) -> None:
    assert outcome(code, ending, items, min_items=10) == expected


def test_items_added_is_the_growth_of_the_state(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    assert items_added(stats, None) == (None, None)  # the child wrote none
    stats.write_text(json.dumps({"items_scraped": 30}), encoding="utf-8")
    assert items_added(stats, None) == (30, 30)
    assert items_added(stats, 25) == (5, 30)
    assert items_added(stats, 40) == (30, 30)  # a new state file: it all came from this run
    # crawler run's --stats: this run's counters, and the totals over the state's runs
    stats.write_text(json.dumps({"items_scraped": 4, "totals": {"items_scraped": 34}}))
    assert items_added(stats, 30) == (4, 34)


@pytest.mark.slow
def test_the_service_stops_at_sigint_between_runs(site: TestSite, folder: Path) -> None:
    write_config(site, folder, args={"base": site.base()})
    process = run_schedule(folder)
    assert process.stderr is not None
    for line in process.stderr:  # blocks until the service says it is waiting
        if "schedule leaves: next run due at " in line:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, stderr
    assert history_rows(folder) == []  # nothing was due


@pytest.mark.slow
async def test_a_child_that_ignores_sigint_is_killed_after_the_stop_timeout(
    site: TestSite, folder: Path
) -> None:
    """The stop is bounded: a child stuck past ``stop_timeout_s`` is killed (the lowest seam:
    a stand-in for python that ignores SIGINT)."""
    ready = folder / "ready"
    stuck = folder / "stuck-python"
    stuck.write_text(
        f"#!/bin/sh\ntrap '' INT\necho ready > {ready}\nexec sleep 60\n", encoding="utf-8"
    )
    stuck.chmod(0o755)
    launch = Launch(folder / "crawler.toml", folder / "spiders", python=str(stuck))
    async with History(folder / "schedule-history.db") as history:
        daemon = Daemon([schedule(site, folder)], history, launch=launch, stop_timeout_s=0.5)
        async with asyncio.TaskGroup() as group:
            running = group.create_task(daemon.run_once("leaves"))
            await asyncio.to_thread(wait_for_items, ready)
            started = time.monotonic()
            daemon.stop()
        record = running.result()
    assert time.monotonic() - started < 10
    assert (record.outcome, record.exit_code) == (Outcome.FORCED, -signal.SIGKILL)
