"""The runner: the one place that builds a crawl (settings, state, fetcher, feed, engine),
runs it under signal handling and the state's lock, records the run, and tears it down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crawler import jsondata, retry
from crawler.engine import Engine
from crawler.errors import ConfigError, CrawlerError
from crawler.exporters import STDOUT, FeedExporter, exporter_for, feed_key, open_private
from crawler.fetcher import Fetcher
from crawler.frontier import Frontier
from crawler.frontier.sqlite import SqliteFrontier, read_runs
from crawler.lock import Holder, StateLock, holder, lock_path
from crawler.progress import Progress
from crawler.runs import EXIT_CODES, EXIT_FORCED, Run, RunOutcome, Trigger, iso, now, outcome_of
from crawler.runs import totals as sum_runs
from crawler.settings import Settings, load_settings, read_config_file
from crawler.signals import StopSignals
from crawler.spider import Spider, spider_settings
from crawler.stats import Stats

log = logging.getLogger("crawler.runner")


@dataclass
class CrawlJob:
    """What to crawl and where to keep it: the arguments of ``crawler run``."""

    spider: type[Spider]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    arguments: Mapping[str, str] = field(default_factory=dict)
    feed: Path | None = None
    """The feed file (``exporters.STDOUT``: standard output)."""
    overwrite_feed: bool = False
    """``-O``: start the feed anew and write every item the state holds; else (``-o``) resume
    at the feed's checkpoint, or append to a file the state has never written."""
    state: Path | None = None
    stats: Path | None = None
    config: Path | None = None
    progress: bool = True
    signals: bool = True
    """Whether SIGINT/SIGTERM stop the crawl gracefully (the CLI); a notebook keeps its own."""
    trigger: Trigger = Trigger.MANUAL
    scheduled_for: datetime | None = None


@dataclass
class CrawlResult:
    """How a crawl ended. ``stats`` are this run's; ``totals`` sum every run kept in the state,
    this one included; ``run`` is its record (id, trigger, outcome, exit code). ``items`` holds
    the items when the crawl had no feed file (a temporary one was read back), else None: they
    are in the feed."""

    stats: Stats
    stopped: bool
    state: Path | None
    run: Run
    totals: Stats
    items: list[dict[str, Any]] | None = None
    requeued: int = 0
    """Failed requests of earlier runs this run queued again (``retry_failed_on_rerun``)."""


def resolve_settings(job: CrawlJob) -> Settings:
    return load_settings(read_config_file(job.config), spider_settings(job.spider), job.overrides)


def check_outputs(job: CrawlJob) -> None:
    """Refuse, before anything is written, output paths that would destroy each other or that
    cannot be written: the feed, the state (with SQLite's -wal, -shm and -journal files and its
    .lock file beside it) and the stats file must be different files, in folders that exist,
    and not symbolic links."""
    claimed: dict[Path, str] = {}
    feed = "-O" if job.overwrite_feed else "-o"
    for option, path in (("--state", job.state), (feed, job.feed), ("--stats", job.stats)):
        if path is None or (option == feed and path == STDOUT):
            continue
        if path.is_symlink():
            raise ConfigError(f"{option} {path} is a symbolic link; give the path of its target")
        if option != feed and not path.parent.is_dir():
            raise ConfigError(f"{option} {path}: folder {path.parent} does not exist")
        if path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file's path")
        names = [path]
        if option == "--state":
            names += [path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal")]
            names.append(lock_path(path))
        for name in names:
            key = name.resolve()
            if key in claimed:
                raise ConfigError(f"{option} {path} is the same file as {claimed[key]}")
            claimed[key] = f"{option} {path}"


def _check_access(path: Path) -> None:
    """Refuse a state file this user cannot read and write, or whose folder it cannot write:
    SQLite creates the -wal and -shm files beside it, and fails late and obscurely otherwise."""
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(
            f"--state {path}: permission denied (the file must be readable and writable)"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--state {path}: permission denied: folder {path.parent} is not writable"
            f" (SQLite keeps {path.name}-wal and {path.name}-shm beside the state)"
        )


def _create_private(path: Path) -> None:
    """Create a new state file with mode 0600 before SQLite opens it (its -wal and -shm files
    take the database file's mode)."""
    _check_access(path)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot keep state in {path}: {exc.strerror}") from None


@contextlib.asynccontextmanager
async def _state_file(path: Path | None, started_at: datetime) -> AsyncIterator[Path]:
    """The state file, locked for this run; a temporary one without ``--state``."""
    if path is not None:
        _check_access(path)  # before the lock file is made beside it: the clearer message
        async with StateLock(path, iso(started_at) or ""):
            _create_private(path)
            yield path
        return
    with tempfile.TemporaryDirectory(prefix="crawler-") as folder:
        yield Path(folder) / "state.db"


async def _open_feed(
    path: Path, frontier: SqliteFrontier, settings: Settings, *, overwrite: bool
) -> FeedExporter:
    """Open the feed at its checkpoint and write the committed items it does not have yet.

    ``-O`` (``overwrite``) starts the file anew with every item the state holds. A feed the
    state never wrote (``-o`` to a new or foreign file) is appended to from the items
    committed from now on: a new run's feed holds that run's items, not every earlier run's.
    Either way the starting checkpoint is committed before an item is written, so a kill in
    between is resumed from it, never written twice."""
    exporter = exporter_for(
        path, escape_formulas=settings.csv_escape_formulas, fields=settings.feed_fields
    )
    key = feed_key(path)
    checkpoint = None
    if not overwrite:  # a state from before checkpoints were keyed by absolute path
        checkpoint = await frontier.feed(key) or await frontier.feed(str(path))
    if checkpoint is not None:
        exporter.open(*checkpoint)
    else:
        start = 0 if overwrite else (await frontier.counts()).last_item
        exporter.open(start, 0 if overwrite else None)
        frontier.save_feed(key, *await exporter.sync())
        await frontier.flush()
    batch: list[tuple[int, bytes]] = []
    async for item in frontier.items_after(exporter.last_item):
        batch.append(item)
        if len(batch) >= 1000:
            exporter.write(batch)
            batch = []
    exporter.write(batch)
    frontier.save_feed(key, *await exporter.sync())
    return exporter


async def run(job: CrawlJob, settings: Settings | None = None) -> CrawlResult:
    """Run a crawl to its end, or until SIGINT/SIGTERM: the first stops scheduling and lets
    requests in flight finish; a second stops at once. The state stays consistent either way.
    ``settings`` are the job's, when the caller resolved them already.

    A crawl kept in a state is one run in its history: a stopped (or killed) run is continued,
    else a new run starts. Another run holding the state's lock raises ``StateLocked``."""
    settings = settings or resolve_settings(job)
    if settings.frontier is not None:
        raise ConfigError(
            "the frontier setting shares a crawl between worker processes: start them with"
            " `crawler run SPIDER --frontier URL` (crawler.cluster.run in code)"
        )
    check_outputs(job)
    spider = create_spider(job)
    started_at = now()
    async with _state_file(job.state, started_at) as state_path:
        frontier = SqliteFrontier(state_path)
        saved = await frontier.open(spider.name)
        exporter: FeedExporter | None = None
        fetcher = Fetcher(settings)
        try:
            if job.feed is None and job.state is None:
                log.warning("no -o FILE and no --state FILE: the items will not be kept")
            exporter = (
                await _open_feed(job.feed, frontier, settings, overwrite=job.overwrite_feed)
                if job.feed
                else None
            )
            # Begun once nothing can refuse to start: a run on record is a run that crawled.
            serve = monitor(settings)
            current = await _begin_run(frontier, job, saved, started_at)
            if current.resumes:
                log.info("resuming run %d kept in %s", current.id, state_path)
            elif current.id > 1:
                log.info("run %d of the crawl kept in %s", current.id, state_path)
            stats = Stats.from_dict(current.stats)
            rerun = current.id > 1 or current.resumes > 0
            requeued = await _requeue_failed(frontier, settings, stats) if rerun else 0
            progress = Progress(stats, settings.progress_interval) if job.progress else None
            engine = Engine(
                spider,
                settings,
                frontier=frontier,
                fetcher=fetcher,
                stats=stats,
                exporter=exporter,
                progress=progress,
            )
            async with serve(engine):
                stopped = await _run_recorded(engine, frontier, current, job.signals)
            earlier = [run.stats for run in await frontier.runs() if run.id != current.id]
        finally:
            await fetcher.close()
            await frontier.close()
            if exporter is not None:
                exporter.close()
    totals = Stats.from_dict(sum_runs([*earlier, current.stats]))
    if job.stats is not None:
        with open_private(job.stats) as file:
            file.truncate()
            report = {**current.stats, "run": _without_stats(current), "totals": totals.to_dict()}
            file.write(jsondata.dumps(report, indent=True))
    return CrawlResult(stats, stopped, job.state, current, totals, requeued=requeued)


def monitor(settings: Settings) -> Callable[[Engine], AbstractAsyncContextManager[None]]:
    """What serves the crawl's ``/metrics`` and ``/healthz`` while it runs, its port checked
    now; nothing without ``metrics_port`` (and aiohttp's web server is not even imported)."""
    if not settings.metrics_port:
        return lambda engine: contextlib.nullcontext()
    from crawler.metrics.server import check_port, serve_metrics  # noqa: PLC0415

    check_port(settings)
    return lambda engine: serve_metrics(settings, crawl=engine)


async def _begin_run(
    frontier: SqliteFrontier, job: CrawlJob, saved: dict[str, Any], started_at: datetime
) -> Run:
    """Continue the state's unfinished run, or start a new one."""
    last = await frontier.last_run()
    if last is None and saved:
        # A state from before run records: its counters become run 1, ended if nothing is queued.
        queued = (await frontier.counts()).queued
        outcome = RunOutcome.STOPPED if queued else RunOutcome.FINISHED
        last = await frontier.start_run(Run(0, Trigger.MANUAL, outcome=outcome, stats=saved))
    if last is not None and last.resumable:
        return await frontier.resume_run(last)
    return await frontier.start_run(
        Run(0, job.trigger, started_at=started_at, scheduled_for=job.scheduled_for)
    )


async def _run_recorded(
    engine: Engine, frontier: SqliteFrontier, current: Run, signals: bool
) -> bool:
    """Run the engine and record how the run ended; returns whether a signal stopped it."""
    try:
        stopped = await _run_with_signals(engine) if signals else await _run(engine)
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _end(frontier, current, RunOutcome.STOPPED, EXIT_FORCED)
        raise
    except Exception as exc:
        await _end(frontier, current, RunOutcome.CRASHED, EXIT_CODES[RunOutcome.CRASHED])
        if isinstance(exc, CrawlerError):
            exc.exit_code = EXIT_CODES[RunOutcome.CRASHED]  # not bad input: a crawl that broke
        raise
    outcome = outcome_of(engine.stats, stopped=stopped)
    await _end(frontier, current, outcome, EXIT_CODES[outcome], engine.stats.to_dict())
    return stopped


async def _end(
    frontier: SqliteFrontier,
    current: Run,
    outcome: RunOutcome,
    exit_code: int,
    stats: dict[str, Any] | None = None,
) -> None:
    """Record the run's end. Without ``stats`` (a crash, a forced stop) the last committed ones
    stay: counts of work not committed would be counted again when the run is continued."""
    current.outcome, current.exit_code, current.finished_at = outcome, exit_code, now()
    if stats is None:
        # The state may be what broke; the original error matters more than this record.
        with contextlib.suppress(CrawlerError):
            await frontier.finish_run(current, None)
    else:
        await frontier.finish_run(current, stats)


def _without_stats(current: Run) -> dict[str, Any]:
    record = current.to_dict()
    del record["stats"]
    return record


def run_history(state: Path) -> tuple[list[Run] | None, Holder | None]:
    """The runs kept in a state file (None for a state from before run records), and the
    run that holds its lock now, if any. Opens the state read-only."""
    if not state.is_file():
        raise ConfigError(f"state file {state} does not exist")
    return read_runs(state), holder(state)


def create_spider(job: CrawlJob) -> Spider:
    """The spider, or a one-line ConfigError naming it when its ``__init__`` raises."""
    try:
        return job.spider(**job.arguments)
    except CrawlerError:
        raise  # our own one-line errors (a bad -a argument) say it already
    except Exception as exc:
        name = job.spider.name or job.spider.__name__
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ConfigError(f"spider {name!r} failed to start: {detail}") from None


async def _requeue_failed(frontier: Frontier, settings: Settings, stats: Stats) -> int:
    """A rerun gives the requests that failed in earlier runs another chance (not the
    permanent 4xx ones): they count as failures again only if they fail again."""
    if not settings.retry_failed_on_rerun:
        return 0
    count = await frontier.requeue_failed(retry.PERMANENT_STATUSES)
    if count:
        stats.requeued(count)
        log.info("re-queued %d requests that failed in earlier runs", count)
    return count


async def _run(engine: Engine) -> bool:
    await engine.run()
    return False


async def _run_with_signals(engine: Engine) -> bool:
    """Run the engine; returns whether a signal stopped it: the first stops scheduling, a
    second cancels the crawl at once."""
    task = asyncio.current_task()

    def first(signum: signal.Signals) -> None:
        log.warning(
            "%s: finishing requests in flight, then stopping (again to stop now)", signum.name
        )
        engine.stop()

    def again(signum: signal.Signals) -> None:
        if task is not None:
            task.cancel()

    with StopSignals.handled(first, again) as got:
        await engine.run()
    return got.count > 0


async def crawl_async(
    spider: type[Spider],
    *,
    settings: Mapping[str, Any] | None = None,
    feed: str | Path | None = None,
    state: str | Path | None = None,
    stats: str | Path | None = None,
    config: str | Path | None = None,
    arguments: Mapping[str, str] | None = None,
    overwrite_feed: bool = False,
) -> CrawlResult:
    """Run a crawl from a script or a notebook (which has a running loop): ``crawler run`` as
    a coroutine. ``settings`` override the config file and the spider's ``custom_settings``;
    ``arguments`` set spider attributes as ``-a key=value`` does. A ``feed`` is appended to, or
    resumed, as ``-o`` does; ``overwrite_feed=True`` starts it anew as ``-O`` does.

    Without a ``feed``, the items come back in ``result.items`` (kept in a temporary JSON
    lines file meanwhile): with a ``state``, every item it holds, earlier runs' too. With a
    feed, they are in the feed and ``result.items`` is None. With a ``state``, a crawl that
    stopped resumes, and one that finished is recrawled. Cancelling the task stops the crawl at
    once, with the state consistent, as a second Ctrl-C does.

    >>> result = await crawl_async(BooksSpider, settings={"max_pages": 20})  # doctest: +SKIP
    >>> result.stats.items_scraped, result.items[0]["title"]  # doctest: +SKIP
    """
    paths = {"feed": feed, "state": state, "stats": stats, "config": config}
    job = _job(spider, settings, arguments, paths, signals=False, overwrite_feed=overwrite_feed)
    return await _run_job(job)


def crawl(
    spider: type[Spider],
    *,
    settings: Mapping[str, Any] | None = None,
    feed: str | Path | None = None,
    state: str | Path | None = None,
    stats: str | Path | None = None,
    config: str | Path | None = None,
    arguments: Mapping[str, str] | None = None,
    overwrite_feed: bool = False,
) -> CrawlResult:
    """``crawl_async`` for a script: runs its own event loop until the crawl ends. In the main
    thread, Ctrl-C stops it as it stops ``crawler run``. Inside a running loop (a notebook,
    an async function) it refuses: ``await crawl_async(...)`` there.

    >>> result = crawl(BooksSpider, settings={"max_pages": 20})  # doctest: +SKIP
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "crawler.crawl() cannot run inside a running event loop (a notebook or an async "
            "function has one): use `await crawler.crawl_async(...)` there"
        )
    paths = {"feed": feed, "state": state, "stats": stats, "config": config}
    # Signal handlers can only be installed from the main thread.
    signals = threading.current_thread() is threading.main_thread()
    job = _job(spider, settings, arguments, paths, signals=signals, overwrite_feed=overwrite_feed)
    return asyncio.run(_run_job(job))


def _job(
    spider: type[Spider],
    settings: Mapping[str, Any] | None,
    arguments: Mapping[str, str] | None,
    paths: Mapping[str, str | Path | None],
    *,
    signals: bool,
    overwrite_feed: bool,
) -> CrawlJob:
    given = {name: Path(value) for name, value in paths.items() if value is not None}
    return CrawlJob(
        spider=spider,
        overrides=dict(settings or {}),
        arguments=dict(arguments or {}),
        feed=given.get("feed"),
        state=given.get("state"),
        stats=given.get("stats"),
        config=given.get("config"),
        progress=False,
        signals=signals,
        overwrite_feed=overwrite_feed,
    )


async def _run_job(job: CrawlJob) -> CrawlResult:
    if job.feed is not None:
        return await run(job)
    with tempfile.TemporaryDirectory(prefix="crawler-items-") as folder:
        job.feed = Path(folder) / "items.jsonl"
        job.overwrite_feed = True  # as -O: every item the state holds, earlier runs' too
        result = await run(job)
        with job.feed.open("rb") as lines:
            result.items = [jsondata.loads(line) for line in lines if line.strip()]
    return result
