"""Runs of a crawl kept in a state file: the lock that keeps two runs apart, the runs table, per-run
stats with totals, and ``crawler runs``. Pure parts as unit tests; the rest on real crawls."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import crawler
from crawler import Request, Response, Spider
from crawler.errors import ConfigError, StateError, StateLocked
from crawler.lock import StateLock, holder, lock_path
from crawler.runner import CrawlJob, check_outputs, run_history
from crawler.runs import (
    Run,
    RunOutcome,
    Trigger,
    outcome_of,
    parse_scheduled_for,
    table,
    totals,
)
from crawler.stats import Stats
from crawler.testing import serve
from tests.site import TestSite
from tests.test_cli import crawler as crawler_cli
from tests.test_cli import lines, slow_crawl, start, wait_for_lines
from tests.test_running import PAGES, SETTINGS


class Headings(Spider):
    """Yields each page's heading; ``-a explode=yes`` makes start_requests raise."""

    name = "headings"
    start = ""
    explode = ""

    async def start_requests(self) -> AsyncIterator[Request]:
        if self.explode:
            # What ends a crawl: a state that cannot be written (a spider's own errors are
            # counted and the crawl goes on).
            raise StateError("start_requests broke")
        yield Request(self.start)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        heading = response.css_first("h1")
        yield {"h1": heading.text() if heading is not None else None}
        for request in response.follow_all(css="a"):
            yield request


# -- pure parts ---------------------------------------------------------------------------------


def test_totals_sum_every_count_and_keep_the_last_queue() -> None:
    first = Stats(pages_crawled=3, items_scraped=2, bytes_received=100, queued=5, elapsed_s=1.25)
    first.status_counts["200"] = 3
    second = Stats(pages_crawled=4, failures=1, queued=0, elapsed_s=0.5)
    second.status_counts.update({"200": 3, "404": 1})
    second.failure_reasons["http_404"] = 1
    summed = totals([first.to_dict(), second.to_dict()])
    assert summed["pages_crawled"] == 7
    assert summed["items_scraped"] == 2
    assert summed["failures"] == 1
    assert summed["bytes_received"] == 100
    assert summed["queued"] == 0
    assert summed["status_counts"] == {"200": 6, "404": 1}
    assert summed["failure_reasons"] == {"http_404": 1}
    assert Stats.from_dict(summed).pages_crawled == 7
    assert totals([]) == {}


def test_a_run_ends_stopped_failed_or_finished() -> None:
    broken = Stats(callback_errors=2)
    assert outcome_of(broken, stopped=False) is RunOutcome.FAILED
    assert outcome_of(broken, stopped=True) is RunOutcome.STOPPED
    assert outcome_of(Stats(callback_errors=2, items_scraped=1), stopped=False) is (
        RunOutcome.FINISHED
    )
    assert outcome_of(Stats(), stopped=False) is RunOutcome.FINISHED
    resumable = {
        outcome for outcome in RunOutcome if Run(1, Trigger.MANUAL, outcome=outcome).resumable
    }
    assert resumable == {
        RunOutcome.RUNNING,
        RunOutcome.STOPPED,
        RunOutcome.CRASHED,
        RunOutcome.TIMEOUT,
    }


def test_scheduled_for_needs_an_offset_and_is_kept_in_utc() -> None:
    noon = datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert parse_scheduled_for("2026-12-05T13:00:00+01:00") == noon
    assert parse_scheduled_for("2026-12-05T12:00:00Z") == noon
    assert parse_scheduled_for("2026-12-05T13:00:00+01:00").utcoffset() == timedelta(0)
    with pytest.raises(ConfigError, match="no UTC offset"):
        parse_scheduled_for("2026-12-05T12:00:00")
    with pytest.raises(ConfigError, match="not an ISO 8601 time"):
        parse_scheduled_for("tomorrow")


def test_the_table_lists_runs_with_a_totals_row() -> None:
    started = datetime(2026, 12, 5, 12, tzinfo=UTC)
    runs = [
        Run(1, Trigger.MANUAL, started, finished_at=started, outcome=RunOutcome.FINISHED,
            exit_code=0, stats={"pages_crawled": 10, "items_scraped": 9, "bytes_received": 2500}),
        Run(2, Trigger.SCHEDULE, started, outcome=RunOutcome.RUNNING,
            stats={"pages_crawled": 2, "items_scraped": 1, "bytes_received": 500}),
    ]  # fmt: skip
    shown = table(runs, live=False).splitlines()
    assert shown[0].split()[:4] == ["run", "trigger", "started", "ended"]  # none scheduled
    assert shown[1].split()[0:2] == ["1", "manual"]
    assert "finished" in shown[1].split()
    assert "2.5 kB" in shown[1]
    assert "killed" in shown[2].split()  # no end and no lock holder: its process died
    assert "running" in table(runs, live=True).splitlines()[2].split()
    assert shown[3].split()[:3] == ["total", "12", "10"]
    assert "3.0 kB" in shown[3]
    runs[1].scheduled_for = started
    assert "scheduled for" in table(runs, live=True).splitlines()[0]


# -- the lock -----------------------------------------------------------------------------------


async def test_a_second_lock_on_a_state_is_refused_and_names_its_holder(tmp_state: Path) -> None:
    async with StateLock(tmp_state, "2026-12-05T12:00:00Z") as first:
        assert stat.S_IMODE(os.stat(lock_path(tmp_state)).st_mode) == 0o600
        with pytest.raises(StateLocked) as refused:
            await StateLock(tmp_state, "2026-12-05T12:00:01Z").acquire()
        message = str(refused.value)
        assert f"PID {os.getpid()} on {socket.gethostname()}" in message
        assert "started 2026-12-05T12:00:00Z" in message
        assert holder(tmp_state) == first.holder
        assert "held" in repr(first)
    assert holder(tmp_state) is None
    assert lock_path(tmp_state).read_bytes() == b""  # released: no holder named any more
    async with StateLock(tmp_state, "2026-12-05T12:00:02Z"):
        pass


async def test_a_lock_file_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = tmp_path / "state.db"
    lock_path(state).symlink_to(victim)
    with pytest.raises(ConfigError, match=r"cannot lock the state with .*state\.db\.lock"):
        await StateLock(state, "2026-12-05T12:00:00Z").acquire()
    assert victim.read_text() == "keep me"


def test_the_lock_file_is_one_of_the_states_files(tmp_state: Path) -> None:
    job = CrawlJob(spider=Headings, state=tmp_state, stats=lock_path(tmp_state))
    with pytest.raises(ConfigError, match="same file"):
        check_outputs(job)


# -- runs of in-process crawls ------------------------------------------------------------------


async def test_a_finished_state_starts_a_new_run_with_its_own_stats(tmp_path: Path) -> None:
    state, report = tmp_path / "state.db", tmp_path / "stats.json"
    with serve(PAGES) as site:
        start_url = {"start": site.url("/")}
        first = await crawler.crawl_async(
            Headings, settings={**SETTINGS, "max_pages": 1}, arguments=start_url, state=state
        )
        second = await crawler.crawl_async(
            Headings, settings=SETTINGS, arguments=start_url, state=state, stats=report
        )
    assert (first.run.id, first.run.outcome, first.stats.pages_crawled) == (1, "finished", 1)
    assert (second.run.id, second.run.outcome, second.stats.pages_crawled) == (2, "finished", 2)
    assert second.totals.pages_crawled == 3 == sum(site.hits.values())
    assert second.totals.items_scraped == 3

    written = json.loads(report.read_text())
    assert written["pages_crawled"] == 2
    assert written["run"]["id"] == 2
    assert written["run"]["exit_code"] == 0
    assert written["totals"]["pages_crawled"] == 3

    history, under_way = run_history(state)
    assert under_way is None
    assert history is not None
    assert [(r.id, r.trigger, r.outcome, r.exit_code, r.resumes) for r in history] == [
        (1, "manual", "finished", 0, 0),
        (2, "manual", "finished", 0, 0),
    ]
    assert [r.counters()["pages"] for r in history] == [1, 2]
    assert [r.counters()["new"] for r in history] == [1, 2]  # no page was a revisit
    assert all(r.started_at is not None and r.finished_at is not None for r in history)
    with sqlite3.connect(state) as db:  # the columns a SQL reader sees
        assert db.execute("SELECT pages, items, bytes > 0 FROM runs ORDER BY id").fetchall() == [
            (1, 1, 1),
            (2, 2, 1),
        ]


async def test_a_crashed_run_is_recorded_and_the_next_run_continues_it(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with serve(PAGES) as site:
        with pytest.raises(StateError, match="start_requests broke"):
            await crawler.crawl_async(
                Headings,
                settings=SETTINGS,
                arguments={"start": site.url("/"), "explode": "yes"},
                state=state,
            )
        crashed, _ = run_history(state)
        result = await crawler.crawl_async(
            Headings, settings=SETTINGS, arguments={"start": site.url("/")}, state=state
        )
    assert crashed is not None
    assert [(r.id, r.outcome, r.exit_code) for r in crashed] == [(1, "crashed", 1)]
    assert (result.run.id, result.run.outcome, result.run.resumes) == (1, "finished", 1)
    assert result.stats.pages_crawled == 3


async def test_a_state_from_before_run_records_becomes_run_one(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with serve(PAGES) as site:
        start_url = {"start": site.url("/")}
        first = await crawler.crawl_async(
            Headings, settings={**SETTINGS, "max_pages": 1}, arguments=start_url, state=state
        )
        # What a crawler without run records left: cumulative stats in meta, no runs table.
        with sqlite3.connect(state) as db:
            db.execute("DROP TABLE runs")
            db.execute("INSERT INTO meta VALUES ('stats', ?)", (json.dumps(first.stats.to_dict()),))
        assert run_history(state) == (None, None)
        second = await crawler.crawl_async(
            Headings, settings=SETTINGS, arguments=start_url, state=state
        )
    # Requests were still queued: the old crawl had stopped, and this run continued it.
    assert (second.run.id, second.run.resumes, second.run.started_at) == (1, 1, None)
    assert second.stats.pages_crawled == 3
    assert second.totals.pages_crawled == 3


# -- crawler run and crawler runs, as a user runs them ------------------------------------------


def _runs_json(state: Path, cwd: Path) -> list[dict[str, Any]]:
    listed = crawler_cli("runs", "--state", str(state), "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    records: list[dict[str, Any]] = json.loads(listed.stdout)
    return records


@pytest.mark.slow
def test_a_second_run_on_a_locked_state_exits_4_at_once_and_names_the_holder(
    site: TestSite, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    args = slow_crawl(site, tmp_path, feed, per_host=1)
    state = tmp_path / "state.db"
    holder_process = start(*args, cwd=tmp_path)
    try:
        wait_for_lines(feed, 2, holder_process)
        # The same start-up (Python, the crawl stack, the spiders) refused for another reason.
        baseline = time.monotonic()
        unknown = crawler_cli("run", "no-such-spider.py", *args[2:], cwd=tmp_path)
        python_start_s = time.monotonic() - baseline
        began = time.monotonic()
        refused = crawler_cli(*args, cwd=tmp_path)
        took = time.monotonic() - began
        listed = crawler_cli("runs", "--state", str(state), cwd=tmp_path)
    finally:
        holder_process.send_signal(signal.SIGINT)
        holder_process.communicate(timeout=20)

    assert unknown.returncode == 2, unknown.stderr
    assert refused.returncode == 4, refused.stderr
    assert took < python_start_s + 1.0, (took, python_start_s)
    message = refused.stderr.strip()
    assert "\n" not in message
    assert f"in use by another run (PID {holder_process.pid} on {socket.gethostname()}" in message
    assert "running" in listed.stdout.splitlines()[1].split()
    assert f"under way: PID {holder_process.pid}" in listed.stderr


@pytest.mark.slow
def test_stopped_resumed_and_rerun_runs_are_recorded(site: TestSite, tmp_path: Path) -> None:
    feed, report = tmp_path / "items.jsonl", tmp_path / "stats.json"
    args = (*slow_crawl(site, tmp_path, feed, per_host=1), "--stats", str(report))
    state = tmp_path / "state.db"
    process = start(*args, cwd=tmp_path)
    wait_for_lines(feed, 5, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    stopped = _runs_json(state, tmp_path)
    assert [(r["id"], r["outcome"], r["exit_code"], r["resumes"]) for r in stopped] == [
        (1, "stopped", 3, 0)
    ]
    assert stopped[0]["items"] == lines(feed)
    assert "run 1 (manual): stopped" in stderr

    resumed = crawler_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "run 1 (manual, resumed 1x): finished" in resumed.stderr
    run_one = json.loads(report.read_text())
    assert run_one["run"]["id"] == 1
    assert run_one["items_scraped"] == 120 == run_one["totals"]["items_scraped"]

    rerun = crawler_cli(*args, "--trigger", "schedule", "--scheduled-for",
                        "2026-12-05T13:00:00+01:00", cwd=tmp_path)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    run_two = json.loads(report.read_text())
    assert (run_two["run"]["id"], run_two["pages_crawled"], run_two["items_scraped"]) == (2, 0, 0)
    assert run_two["totals"]["pages_crawled"] == 121 == run_one["pages_crawled"]
    assert "totals over 2 runs: 121 pages, 120 items, 0 failures" in rerun.stderr

    records = _runs_json(state, tmp_path)
    assert [
        (r["id"], r["trigger"], r["outcome"], r["exit_code"], r["resumes"]) for r in records
    ] == [
        (1, "manual", "finished", 0, 1),
        (2, "schedule", "finished", 0, 0),
    ]
    assert records[1]["scheduled_for"] == "2026-12-05T12:00:00Z"
    assert [r["pages"] for r in records] == [121, 0]
    listed = crawler_cli("runs", "--state", str(state), cwd=tmp_path)
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:3] == ["run", "trigger", "scheduled"]
    assert rows[2].split()[:4] == ["2", "schedule", "2026-12-05", "12:00:00"]
    assert rows[3].split()[:3] == ["total", "121", "120"]


@pytest.mark.slow
def test_a_sigkilled_run_does_not_block_the_next_which_continues_it(
    site: TestSite, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    args = slow_crawl(site, tmp_path, feed, per_host=1)
    state = tmp_path / "state.db"
    process = start(*args, cwd=tmp_path)
    wait_for_lines(feed, 3, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    listed = crawler_cli("runs", "--state", str(state), cwd=tmp_path)
    assert "killed" in listed.stdout.splitlines()[1].split()

    finished = crawler_cli(*args, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    records = _runs_json(state, tmp_path)
    assert [(r["id"], r["outcome"], r["resumes"]) for r in records] == [(1, "finished", 1)]
    # Counters of pages in flight at the kill may be counted again when they are redone.
    assert records[0]["items"] >= 120
    assert sorted(json.loads(line)["leaf"] for line in feed.read_text().splitlines()) == list(
        range(120)
    )


@pytest.mark.slow
def test_a_forced_stop_is_recorded_with_130(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "sleepy.py").write_text(
        "from crawler import Spider\n\n\nclass Sleepy(Spider):\n    name = 'sleepy'\n"
        f"    start_urls = ['{site.base()}/slow-links?delay=30&n=2']\n\n"
        "    async def parse(self, response):\n"
        "        for request in response.follow_all(css='a[href]'):\n            yield request\n"
    )
    state = tmp_path / "state.db"
    args = ("run", "sleepy.py", "--state", str(state), "--no-progress", "-s", "obey_robots=false")
    process = start(*args, cwd=tmp_path)
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while site.peak_concurrency(0) < 2:  # both slow pages in flight
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.01)  # polling the server's counter; not synchronisation of the crawl
    process.send_signal(signal.SIGINT)
    while "finishing requests in flight" not in (line := process.stderr.readline()):
        assert line, "the crawl ended before it said it was stopping"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    assert process.returncode == 130
    records = _runs_json(state, tmp_path)
    assert [(r["id"], r["outcome"], r["exit_code"]) for r in records] == [(1, "stopped", 130)]
    assert records[0]["finished_at"] is not None


def test_bad_runs_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = crawler_cli("runs", "--state", str(tmp_path / "none.db"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == f"error: state file {tmp_path / 'none.db'} does not exist\n"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    corrupt = crawler_cli("runs", "--state", str(junk), cwd=tmp_path)
    assert corrupt.returncode == 2
    assert corrupt.stderr.startswith(f"error: state file {junk} is not a usable crawl state")
    assert corrupt.stderr.count("\n") == 1
    assert junk.read_bytes() == b"not a database at all" * 100
    (tmp_path / "any.py").write_text(
        "from crawler import Spider\n\n\nclass Any(Spider):\n    name = 'any'\n"
    )
    late = crawler_cli("run", "any.py", "--state", str(tmp_path / "s.db"), "--scheduled-for",
                       "2026-12-05 12:00", cwd=tmp_path)  # fmt: skip
    assert late.returncode == 2
    assert "--scheduled-for '2026-12-05 12:00' has no UTC offset" in late.stderr
    assert late.stderr.count("\n") == 1
    assert not (tmp_path / "s.db").exists()
