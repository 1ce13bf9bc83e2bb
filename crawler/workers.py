"""``crawler run SPIDER --frontier URL --workers N``: N worker processes of one shared crawl on
this machine, which is how one box uses all its cores.

Each child is ``python -m crawler run SPIDER`` in its own process group, without ``-o``: the
parent writes the feed when given one (it is the crawl's exporter, and crawls nothing itself).
The frontier's URL reaches the children in their environment, never on a command line that
``ps`` shows; ``--frontier-from-env`` makes it a command-line override there, and the crawl id
is one on their command line, so a spider's ``custom_settings`` cannot send the children to
another crawl. With ``metrics_port`` P, child i serves ``/metrics`` on P + i.

The parent forwards SIGINT and SIGTERM to every child (each stops in two steps, as ``crawler
run`` does), and exits with the worst child's exit code; ``--stats`` gets the crawl's
``crawler status --json``. Each child labels its log lines and its summary (``[worker 2/3]``);
the parent ends with the crawl's totals, as Redis committed them, and where the feed is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crawler import cluster, jsondata
from crawler.errors import ConfigError, CrawlerError
from crawler.exporters import FeedExporter, open_private
from crawler.runner import CrawlJob, create_spider
from crawler.runs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_FINISHED,
    EXIT_FORCED,
    EXIT_LOCKED,
    EXIT_STOPPED,
)
from crawler.scheduler_remote import SharedFrontier
from crawler.settings import Settings
from crawler.signals import StopSignals

log = logging.getLogger("crawler.workers")

WORST_FIRST = (EXIT_FORCED, EXIT_FAILED, EXIT_LOCKED, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_FINISHED)
# A child that a stop signal ended before it could handle one (it was still starting) stopped;
# one killed by any other signal crashed.
STOPPED_BY = {-signal.SIGINT, -signal.SIGTERM}
MAX_PORT = 65535


def worst(codes: Sequence[int]) -> int:
    """The exit code of the parent: its worst child's.

    >>> worst([0, 3, 0])
    3
    >>> worst([0, -9])
    1
    """
    seen = {
        EXIT_STOPPED if code in STOPPED_BY else code if code in WORST_FIRST else EXIT_FAILED
        for code in codes
    }
    return next((code for code in WORST_FIRST if code in seen), EXIT_FINISHED)


def worker_command(
    spider: str,
    *,
    crawl_id: str,
    overrides: Mapping[str, str],
    arguments: Mapping[str, str],
    config: Path | None,
    spiders_dir: Path,
    trigger: str,
) -> list[str]:
    """The command line of the children: the parent's, without -o, --workers and the
    frontier's URL (they read it from ``CRAWLER_FRONTIER``), with the crawl id; the metrics
    port is each child's own (``child_command``)."""
    command = [sys.executable, "-m", "crawler", "run", spider, "--no-progress"]
    command += ["--spiders-dir", str(spiders_dir), "--trigger", trigger]
    command += ["--frontier-from-env", "--crawl-id", crawl_id]
    if config is not None:
        command += ["--config", str(config)]
    for key, value in overrides.items():
        if key.lower() not in ("frontier", "crawl_id", "metrics_port"):  # -s is case-blind
            command += ["-s", f"{key}={value}"]
    for key, value in arguments.items():
        command += ["-a", f"{key}={value}"]
    return command


def worker_environment(settings: Settings) -> dict[str, str]:
    assert settings.frontier is not None
    return {**os.environ, "CRAWLER_FRONTIER": settings.frontier}


def child_command(command: list[str], settings: Settings, index: int, count: int) -> list[str]:
    """Child ``index``'s command line: its label (``--worker-index 2/3``: its log lines and
    summary say ``[worker 2/3]``); with ``metrics_port`` P, its /metrics is on P + index (N
    children on one port: all but one would fail to listen)."""
    command = [*command, "--worker-index", f"{index + 1}/{count}"]
    if not settings.metrics_port:
        return command
    return [*command, "-s", f"metrics_port={settings.metrics_port + index}"]


def check_ports(settings: Settings, count: int) -> None:
    if settings.metrics_port and settings.metrics_port + count - 1 > MAX_PORT:
        raise ConfigError(
            f"metrics_port {settings.metrics_port} with --workers {count}: the workers serve"
            f" /metrics on ports {settings.metrics_port} to {settings.metrics_port + count - 1},"
            f" above {MAX_PORT}"
        )


async def run(
    job: CrawlJob, settings: Settings, command: list[str], count: int
) -> tuple[int, dict[str, Any] | None]:
    """Start ``count`` children running ``command``, export the feed meanwhile when the job has
    one; once every child has exited, return the worst child's exit code and the crawl's
    ``crawler status`` (None if it cannot be read: its keys were deleted)."""
    cluster.check_job(job)
    check_ports(settings, count)
    spider_name = create_spider(job).name
    crawl_id = cluster.crawl_id_of(settings, spider_name)
    env = worker_environment(settings)
    frontier = None
    exporter: FeedExporter | None = None
    children: list[asyncio.subprocess.Process] = []
    codes: list[int] = []
    if job.feed is not None:
        # The feed is claimed before any child starts: a second exporter is refused in one line.
        frontier = cluster.shared_frontier(settings, crawl_id)
        await frontier.open(spider_name, crawl=False)
    try:
        if frontier is not None:
            exporter = await cluster.claim_feed(frontier, job, settings, crawl_id)
        forward = _forward(children)
        with StopSignals.handled(forward, forward) as got:
            # A signal before every child is started: the rest are not started.
            while len(children) < count and not got.count:
                child = await asyncio.create_subprocess_exec(
                    *child_command(command, settings, len(children), count),
                    env=env,
                    start_new_session=True,
                )
                if settings.metrics_port:
                    port = settings.metrics_port + len(children)
                    log.info(
                        "worker %d (pid %d): /metrics on port %d", len(children), child.pid, port
                    )
                children.append(child)
            pids = " ".join(str(child.pid) for child in children)
            log.info("started %d workers of crawl %r: pids %s", len(children), crawl_id, pids)
            await _supervise(children, frontier, exporter, job)
        if got.count:
            codes.append(EXIT_STOPPED)  # even if no child was started yet
    finally:
        _forward(children)(signal.SIGTERM)  # only those still running: the parent broke
        if frontier is not None:
            await frontier.close()
        if exporter is not None:
            exporter.close()
    code = worst(codes + [child.returncode or 0 for child in children])
    try:
        found = await cluster.status(settings, crawl_id)
    except CrawlerError:
        if code == EXIT_FINISHED:
            raise
        return code, None  # the children said why (a crawl deleted under them, Redis gone)
    if job.stats is not None:
        _write_status(job.stats, found)
    return code, found


def _write_status(path: Path, found: dict[str, Any]) -> None:
    """--stats of the parent: the crawl's state, exact counters and the workers' stats."""
    with open_private(path) as file:
        file.truncate()
        file.write(jsondata.dumps(found, indent=True))


def _forward(children: list[asyncio.subprocess.Process]) -> Callable[[signal.Signals], None]:
    def forward(signum: signal.Signals) -> None:
        running = [child for child in children if child.returncode is None]
        if running:
            log.warning("%s: passed on to %d workers", signum.name, len(running))
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)

    return forward


async def _supervise(
    children: list[asyncio.subprocess.Process],
    frontier: SharedFrontier | None,
    exporter: FeedExporter | None,
    job: CrawlJob,
) -> None:
    """Wait for every child; meanwhile the feed tails the crawl, and ends with what was
    committed once the children are gone."""
    exited = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        if frontier is not None and exporter is not None:
            tail = cluster.feed_tail(frontier, exporter, None)
            await tail.open(overwrite=job.overwrite_feed)
            group.create_task(tail.run(exited))
        watched = [group.create_task(_watch(child, i)) for i, child in enumerate(children)]
        await asyncio.wait(watched)
        exited.set()


async def _watch(child: asyncio.subprocess.Process, index: int) -> None:
    """Wait for a child; say so at once when it did not end as a worker ends (finished,
    stopped): killed by another signal, or an exit code of its own."""
    code = await child.wait()
    if code in STOPPED_BY or code in (EXIT_FINISHED, EXIT_STOPPED):
        return
    if code >= 0:
        log.warning("worker %d (pid %d) exited with code %d", index, child.pid, code)
        return
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    log.warning(
        "worker %d (pid %d) was killed by %s: its leases go back to the other workers within"
        " lease_ttl_s, and the crawl goes on without it",
        index, child.pid, name,
    )  # fmt: skip
