"""One benchmark run: a crawl as a subprocess, its wall time, CPU and peak RSS, and its checks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_KILL_GRACE_S = 5.0


@dataclass
class Measurement:
    """What the runner saw of one crawl process (``os.wait4``'s rusage, the runner's clock)."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    exit_code: int | None
    timed_out: bool = False


@dataclass
class Run:
    """One crawl of one contender: the measurement, the crawl's own stats, and what was wrong."""

    contender: str
    index: int
    measurement: Measurement
    stats: dict[str, Any] = field(default_factory=dict)
    pages: int = 0
    items: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.measurement.wall_s if self.measurement.wall_s else 0.0

    @property
    def own_pages_per_s(self) -> float | None:
        """Pages per second over the crawl's own elapsed time: start-up and imports left out."""
        elapsed = self.stats.get("elapsed_s")
        return self.pages / elapsed if isinstance(elapsed, int | float) and elapsed > 0 else None

    def summary(self) -> str:
        m = self.measurement
        verdict = "ok" if self.valid else "INVALID: " + "; ".join(self.problems)
        return (
            f"{self.contender:<8} run {self.index + 1}: {self.pages} pages in {m.wall_s:.2f} s "
            f"({self.pages_per_s:.0f} pages/s), CPU {m.cpu_s:.2f} s, "
            f"peak RSS {m.peak_rss_mib:.0f} MiB: {verdict}"
        )


class _Reaper(threading.Thread):
    """Waits for one child with ``os.wait4`` and notes when it ended."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.done = threading.Event()
        self.result: tuple[int, int, Any] | None = None
        self.ended = 0.0

    def run(self) -> None:
        self.result = os.wait4(self.pid, 0)
        self.ended = time.perf_counter()
        self.done.set()


def measure(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout_s: float
) -> Measurement:
    """Run ``argv`` to completion (or kill it at ``timeout_s``) and measure it with ``os.wait4``."""
    with log.open("wb") as out:
        started = time.perf_counter()
        # Its own session: a timeout or Ctrl-C kills the crawl's whole process group.
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
        reaper = _Reaper(process.pid)
        reaper.start()
        timed_out = False
        try:
            timed_out = not reaper.done.wait(timeout_s)
        finally:
            # Not reaped: a timeout, or the runner is being interrupted. The event decides, not
            # Thread.is_alive(), which an interrupted join() leaves False on CPython 3.11.
            if not reaper.done.is_set():
                _kill(process.pid, reaper.done)
    assert reaper.result is not None
    _, status, usage = reaper.result
    process.returncode = os.waitstatus_to_exitcode(status)  # we reaped it, not Popen
    return Measurement(
        wall_s=reaper.ended - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports kilobytes
        exit_code=process.returncode,
        timed_out=timed_out,
    )


def _kill(pid: int, done: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if done.wait(_KILL_GRACE_S):
            return


def read_stats(path: Path) -> dict[str, Any]:
    """The crawl's stats JSON, with ``status_counts`` keyed by status as a string."""
    stats: dict[str, Any] = json.loads(path.read_text())
    counts = stats.get("status_counts") or {}
    stats["status_counts"] = {str(code): int(n) for code, n in counts.items()}
    return stats


def read_items(path: Path) -> tuple[int, int, int]:
    """Items in a JSON-lines file: (lines, unique urls, unique titles)."""
    lines = 0
    urls: set[str] = set()
    titles: set[str] = set()
    with path.open("rb") as items:
        for line in items:
            if not line.strip():
                continue
            item = json.loads(line)
            lines += 1
            urls.add(str(item.get("url")))
            titles.add(str(item.get("title")))
    return lines, len(urls), len(titles)


def check_process(run: Run) -> None:
    m = run.measurement
    if m.timed_out:
        run.problems.append(f"timed out after {m.wall_s:.0f} s")
    elif m.exit_code != 0:
        run.problems.append(f"exit code {m.exit_code}")


def check_catalogue(run: Run, expected: dict[str, Any], stats_path: Path, items_path: Path) -> None:
    """Mark ``run`` invalid unless it found exactly the site's pages, 404s and items."""
    check_process(run)
    try:
        run.stats = read_stats(stats_path)
    except (OSError, ValueError, AttributeError) as exc:
        run.problems.append(f"no stats ({exc.__class__.__name__}: {exc})")
        return
    counts = run.stats["status_counts"]
    run.pages = counts.get("200", 0)
    if run.pages != expected["pages"]:
        run.problems.append(f"{run.pages} pages, expected {expected['pages']}")
    if counts.get("404", 0) != expected["not_found"]:
        run.problems.append(f"{counts.get('404', 0)} 404s, expected {expected['not_found']}")
    others = {code: n for code, n in counts.items() if code not in ("200", "404")}
    if others:
        run.problems.append(f"unexpected statuses {others}")
    try:
        lines, urls, titles = read_items(items_path)
    except (OSError, ValueError) as exc:
        run.problems.append(f"unreadable items ({exc.__class__.__name__}: {exc})")
        return
    run.items = lines
    want = expected["items"]
    if (lines, urls, titles) != (want, want, want):
        run.problems.append(
            f"{lines} items ({urls} unique urls, {titles} unique titles), expected {want}"
        )
