"""The service loop of ``crawler schedule``: sleeps until each schedule's next due time and runs
it as a child ``crawler run`` process, never two of one schedule at once.

Wall-clock time comes from a `Clock` (the seam tests replace); run-time limits and stop
timeouts are durations on the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from crawler.errors import CrawlerError
from crawler.metrics.server import serve_metrics
from crawler.service.config import Schedule
from crawler.service.history import History, Outcome, Record, Trigger
from crawler.service.runs import Ending, Launch, items_added, outcome, state_run
from crawler.service.timetable import Action, Timetable, catch_up, on_due
from crawler.settings import Settings
from crawler.signals import StopSignals

log = logging.getLogger("crawler.service")


class Clock(Protocol):
    """Where the service reads the time of day and waits for a due time."""

    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class WallClock:
    """The real clock. It looks again at least once a minute, so that a clock set forward
    (NTP, a suspended machine waking up) is noticed."""

    def __repr__(self) -> str:
        return f"<WallClock {self.now().isoformat()}>"

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        # Polling on purpose: no event says that the wall clock moved.
        while (left := (moment - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, 60.0))


@dataclass
class ScheduleState:
    """One schedule as the service follows it: its run in progress, the due time queued behind
    it, and what ``/metrics`` shows (outcomes since the service started; Unix times)."""

    name: str
    running: bool = False
    queued: datetime | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    last_end: float | None = None
    last_success: float | None = None
    next_run: float | None = None


class Daemon:
    """Runs ``schedules`` until `stop`: ``await Daemon(...).serve()``."""

    def __init__(
        self,
        schedules: list[Schedule],
        history: History,
        *,
        clock: Clock | None = None,
        launch: Launch | None = None,
        stop_timeout_s: float = 50.0,
        on_record: Callable[[Record], None] | None = None,
    ) -> None:
        self.schedules = {schedule.name: schedule for schedule in schedules}
        self.history = history
        self.clock = clock or WallClock()
        self.launch = launch or Launch()
        self.stop_timeout_s = stop_timeout_s
        self.on_record = on_record
        self._slots = {name: ScheduleState(name) for name in self.schedules}
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()

    def __repr__(self) -> str:
        running = sorted(name for name, slot in self._slots.items() if slot.running)
        state = "stopping" if self._stopping.is_set() else "serving"
        return f"<Daemon {state} schedules={len(self.schedules)} running={running}>"

    def statuses(self) -> list[ScheduleState]:
        """Every schedule's state, for the metrics reader."""
        return list(self._slots.values())

    def stop(self) -> None:
        """Stop triggering and ask the children to stop (SIGINT); they get ``stop_timeout_s``."""
        self._stopping.set()

    def force(self) -> None:
        """A second request to stop: SIGINT the children again, so that they end at once."""
        self._stopping.set()
        self._forced.set()

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as group:
            for schedule in self.schedules.values():
                group.create_task(self._follow(schedule, group))

    async def run_once(self, name: str) -> Record:
        """Run schedule ``name`` now, outside its timetable (``crawler schedule --once``)."""
        slot = self._slots[name]
        slot.running = True
        try:
            return await self._run(self.schedules[name], None, Trigger.MANUAL)
        finally:
            slot.running = False

    async def _follow(self, schedule: Schedule, group: asyncio.TaskGroup) -> None:
        table = schedule.timetable()
        last = await self.history.last_scheduled_for(schedule.name)
        if last is None:  # a new schedule starts from now: nothing of the past is due
            last = self.clock.now()
            await self.history.mark_scheduled(schedule.name, last)
        trigger = Trigger.CATCH_UP
        while not self._stopping.is_set():
            last = await self._handle_due(schedule, table, last, trigger, group)
            trigger = Trigger.SCHEDULE
            due = table.next_after(last)
            self._slots[schedule.name].next_run = due.timestamp()
            log.info("schedule %s: next run due at %s", schedule.name, due.astimezone(table.zone))
            await self._unless_stopping(self.clock.sleep_until(due))
        await self._drop_queued(schedule)

    async def _handle_due(
        self,
        schedule: Schedule,
        table: Timetable,
        last: datetime,
        trigger: Trigger,
        group: asyncio.TaskGroup,
    ) -> datetime:
        """Handle the due times since ``last``; returns the newest one handled."""
        plan = catch_up(table, last, self.clock.now(), schedule.grace())
        newest = plan.run or (plan.missed[-1] if plan.missed else None)
        if newest is None:
            return last
        # Marked before the run starts: a crash in between loses this run, never doubles it.
        await self.history.mark_scheduled(schedule.name, newest)
        for due in plan.missed:
            await self._record(Record(schedule.name, Outcome.MISSED, trigger, scheduled_for=due))
        if plan.missed:
            more = " (and earlier ones, not listed)" if plan.more else ""
            log.warning("schedule %s: %d due times missed%s", schedule.name, len(plan.missed), more)
        if plan.run is not None:
            late = trigger if not plan.missed else Trigger.CATCH_UP
            await self._due(schedule, plan.run, late, group)
        return newest

    async def _due(
        self, schedule: Schedule, due: datetime, trigger: Trigger, group: asyncio.TaskGroup
    ) -> None:
        slot = self._slots[schedule.name]
        action = on_due(
            running=slot.running, queued=slot.queued is not None, overlap=schedule.overlap
        )
        if action is Action.START:
            slot.running = True
            group.create_task(self._run_and_queued(schedule, due, trigger))
        elif action is Action.QUEUE:
            slot.queued = due
            log.info("schedule %s: due at %s, queued behind the run going on", schedule.name, due)
        else:
            detail = "a run of this schedule was still going on"
            log.warning("schedule %s: due at %s skipped: %s", schedule.name, due, detail)
            await self._record(
                Record(schedule.name, Outcome.SKIPPED, trigger, scheduled_for=due, detail=detail)
            )

    async def _run_and_queued(self, schedule: Schedule, due: datetime, trigger: Trigger) -> None:
        slot = self._slots[schedule.name]
        try:  # the slot stays taken until the queued run, if any, is over too
            await self._run(schedule, due, trigger)
            while slot.queued is not None and not self._stopping.is_set():
                due, slot.queued = slot.queued, None
                await self._run(schedule, due, Trigger.QUEUED)
        finally:
            slot.running = False

    async def _drop_queued(self, schedule: Schedule) -> None:
        due, self._slots[schedule.name].queued = self._slots[schedule.name].queued, None
        if due is not None:
            detail = "the service stopped before it could start"
            await self._record(
                Record(schedule.name, Outcome.SKIPPED, Trigger.QUEUED, due, detail=detail)
            )

    async def _run(self, schedule: Schedule, due: datetime | None, trigger: Trigger) -> Record:
        run, before = await self.history.next_run(schedule.name)
        if schedule.state is not None:
            # The state's own run: a child that continues a stopped run writes its feed.
            with contextlib.suppress(CrawlerError):  # the child will say what is wrong
                run = await asyncio.to_thread(state_run, schedule.state)
        started = self.clock.now()
        log.info("schedule %s: run %d started (%s)", schedule.name, run, trigger)
        try:
            code, ending, items, total = await self._child(schedule, run, before, trigger, due)
            detail = ""
        except OSError as exc:  # no process at all: out of memory or processes, a bad python
            code, ending, items, total = 1, "exit", None, None
            detail = f"cannot start crawler run: {exc}"
            log.error("schedule %s: %s", schedule.name, detail)
        if total is not None and schedule.state is not None:
            await self.history.set_items_total(schedule.name, total)
        record = Record(
            schedule.name,
            outcome(code, ending, items, schedule.min_items),
            trigger,
            scheduled_for=due,
            run=run,
            started_at=started,
            finished_at=self.clock.now(),
            exit_code=code,
            items=items,
            detail=detail,
        )
        log.info("schedule %s: run %d %s (exit %d)", schedule.name, run, record.outcome, code)
        await self._record(record)
        return record

    async def _child(
        self,
        schedule: Schedule,
        run: int,
        before: int | None,
        trigger: Trigger,
        due: datetime | None,
    ) -> tuple[int, Ending, int | None, int | None]:
        """Run one child to its end: (exit code, why it ended, items added, items in the state)."""
        with tempfile.TemporaryDirectory(prefix="crawler-schedule-") as folder:
            stats = Path(folder) / "stats.json"
            argv = self.launch.command(schedule, run, stats, trigger=trigger, due=due)
            # A session of its own: a Ctrl-C on the service's terminal reaches the service only,
            # which forwards one SIGINT (two would make the child stop at once).
            process = await asyncio.create_subprocess_exec(*argv, start_new_session=True)
            ending = await self._wait(process, schedule.max_runtime_s)
            code = process.returncode if process.returncode is not None else -1
            return code, ending, *items_added(stats, before)

    async def _wait(self, process: asyncio.subprocess.Process, limit_s: float | None) -> Ending:
        """Wait for the child; at its time limit or the service's stop, SIGINT it and give it
        ``stop_timeout_s`` to finish its requests in flight, forwarding a second stop."""
        try:
            ended = await _race(process.wait(), self._stopping.wait(), limit_s)
            ending: Ending = "exit" if ended == 0 else "stop" if ended == 1 else "limit"
            if ending == "exit":
                return ending
            _interrupt(process)
            if await _race(process.wait(), self._forced.wait(), self.stop_timeout_s) == 1:
                _interrupt(process)  # a second SIGINT: the child stops at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.stop_timeout_s):
                        await process.wait()
            if process.returncode is None:
                log.warning("a child did not stop within %.0fs; killed", self.stop_timeout_s)
                _kill(process)
                await process.wait()
            return ending
        except BaseException:
            if process.returncode is None:  # the service itself is going down
                _kill(process)  # the state is crash-safe; an orphan would keep it locked
            raise

    async def _unless_stopping(self, sleep: Awaitable[None]) -> None:
        await _race(sleep, self._stopping.wait(), None)

    async def _record(self, record: Record) -> None:
        await self.history.add(record)
        state = self._slots[record.schedule]
        state.outcomes[record.outcome.value] += 1
        if record.finished_at is not None:
            state.last_end = record.finished_at.timestamp()
            if record.outcome is Outcome.FINISHED:
                state.last_success = state.last_end
        if self.on_record is not None:
            self.on_record(record)


async def _race(first: Awaitable[object], second: Awaitable[object], limit_s: float | None) -> int:
    """0 if ``first`` ends first, 1 if ``second`` does, 2 after ``limit_s``; cancels the rest."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        done, _ = await asyncio.wait(tasks, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0 if tasks[0] in done else 1 if tasks[1] in done else 2


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the child and what it started (its HTML screening process): its session's group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _interrupt(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)


async def serve_with_signals(daemon: Daemon, work: Awaitable[object]) -> bool:
    """Await ``work`` (``daemon.serve()`` or a ``run_once``) with SIGINT/SIGTERM handled: the
    first stops the daemon gracefully, a second forces it. Returns whether it was forced."""

    def first(signum: signal.Signals) -> None:
        log.warning("%s: stopping", signum.name)
        daemon.stop()

    def again(signum: signal.Signals) -> None:
        log.warning("%s: forced", signum.name)
        daemon.force()

    with StopSignals.handled(first, again) as got:
        await work
    return got.count > 1


async def serve(
    schedules: list[Schedule],
    history: Path,
    launch: Launch,
    *,
    once: str | None = None,
    stop_timeout_s: float = 50.0,
    settings: Settings | None = None,
) -> int:
    """``crawler schedule``: serve ``schedules`` until a signal, or run schedule ``once`` now.
    Returns the exit code: 0, 130 when a second signal forced the stop, or with ``once`` the
    run's own code."""
    async with History(history) as kept:
        daemon = Daemon(schedules, kept, launch=launch, stop_timeout_s=stop_timeout_s)
        if once is None:
            async with serve_metrics(settings or Settings(), schedules=daemon.statuses):
                forced = await serve_with_signals(daemon, daemon.serve())
            return 130 if forced else 0
        ran: list[Record] = []

        async def run_once() -> None:
            ran.append(await daemon.run_once(once))

        await serve_with_signals(daemon, run_once())
        code = ran[0].exit_code if ran else None
        return code if code is not None and 0 <= code < 256 else 1
