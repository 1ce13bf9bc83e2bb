"""The runner: the one place that builds a crawl (settings, state, fetcher, feed, engine),
runs it under signal handling, and tears it down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler import jsondata
from crawler.engine import Engine
from crawler.errors import ConfigError
from crawler.exporters import FeedExporter, exporter_for, open_private
from crawler.fetcher import Fetcher
from crawler.frontier.sqlite import SqliteFrontier
from crawler.progress import Progress
from crawler.settings import Settings, load_settings, read_config_file
from crawler.spider import Spider
from crawler.stats import Stats

log = logging.getLogger("crawler.runner")


@dataclass
class CrawlJob:
    """What to crawl and where to keep it: the arguments of ``crawler run``."""

    spider: type[Spider]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    arguments: Mapping[str, str] = field(default_factory=dict)
    feed: Path | None = None
    state: Path | None = None
    stats: Path | None = None
    config: Path | None = None
    progress: bool = True
    signals: bool = True
    """Whether SIGINT/SIGTERM stop the crawl gracefully (the CLI); a notebook keeps its own."""


@dataclass
class CrawlResult:
    """How a crawl ended. ``items`` holds the items when the crawl had no feed file (a
    temporary one was read back), else None: they are in the feed."""

    stats: Stats
    stopped: bool
    state: Path | None
    items: list[dict[str, Any]] | None = None


def resolve_settings(job: CrawlJob) -> Settings:
    return load_settings(read_config_file(job.config), job.spider.custom_settings, job.overrides)


def check_outputs(job: CrawlJob) -> None:
    """Refuse, before anything is written, output paths that would destroy each other or that
    cannot be written: the feed, the state (with SQLite's -wal, -shm and -journal files beside it)
    and the stats file must be different files, in folders that exist, and not symbolic links."""
    claimed: dict[Path, str] = {}
    for option, path in (("--state", job.state), ("-o", job.feed), ("--stats", job.stats)):
        if path is None:
            continue
        if path.is_symlink():
            raise ConfigError(f"{option} {path} is a symbolic link; give the path of its target")
        if option != "-o" and not path.parent.is_dir():
            raise ConfigError(f"{option} {path}: folder {path.parent} does not exist")
        names = [path]
        if option == "--state":
            names += [path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal")]
        for name in names:
            key = name.resolve()
            if key in claimed:
                raise ConfigError(f"{option} {path} is the same file as {claimed[key]}")
            claimed[key] = f"{option} {path}"


def _create_private(path: Path) -> None:
    """Create a new state file with mode 0600 before SQLite opens it (its -wal and -shm files
    take the database file's mode)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot keep state in {path}: {exc.strerror}") from None


@contextlib.asynccontextmanager
async def _state_file(path: Path | None) -> AsyncIterator[Path]:
    if path is not None:
        _create_private(path)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="crawler-") as folder:
        yield Path(folder) / "state.db"


async def _open_feed(path: Path, frontier: SqliteFrontier, settings: Settings) -> FeedExporter:
    """Open the feed at its checkpoint and write the committed items it does not have yet."""
    exporter = exporter_for(path, escape_formulas=settings.csv_escape_formulas)
    last, offset = await frontier.feed(str(path))
    if frontier.finished and offset == 0:
        # A recrawl's new feed holds this run's items, not every earlier run's too.
        last = (await frontier.counts()).last_item
    exporter.open(last, offset)
    batch: list[tuple[int, bytes]] = []
    async for item in frontier.items_after(exporter.last_item):
        batch.append(item)
        if len(batch) >= 1000:
            exporter.write(batch)
            batch = []
    exporter.write(batch)
    frontier.save_feed(str(path), *await exporter.sync())
    return exporter


async def run(job: CrawlJob) -> CrawlResult:
    """Run a crawl to its end, or until SIGINT/SIGTERM: the first stops scheduling and lets
    requests in flight finish; a second stops at once. The state stays consistent either way."""
    settings = resolve_settings(job)
    check_outputs(job)
    spider = job.spider(**job.arguments)
    async with _state_file(job.state) as state_path:
        frontier = SqliteFrontier(state_path)
        saved = await frontier.open(spider.name)
        exporter: FeedExporter | None = None
        fetcher = Fetcher(settings)
        try:
            if saved:
                log.info("resuming the crawl kept in %s", state_path)
            if job.feed is None and job.state is None:
                log.warning("no -o FILE and no --state FILE: the items will not be kept")
            stats = Stats.from_dict(saved)
            exporter = await _open_feed(job.feed, frontier, settings) if job.feed else None
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
            stopped = await _run_with_signals(engine) if job.signals else await _run(engine)
        finally:
            await fetcher.close()
            await frontier.close()
            if exporter is not None:
                exporter.close()
    stats.tick()
    if job.stats is not None:
        with open_private(job.stats) as file:
            file.truncate()
            file.write(jsondata.dumps(stats.to_dict(), indent=True))
    return CrawlResult(stats, stopped, job.state)


async def _run(engine: Engine) -> bool:
    await engine.run()
    return False


async def _run_with_signals(engine: Engine) -> bool:
    """Run the engine; returns whether a signal stopped it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning(
                "%s: finishing requests in flight, then stopping (again to stop now)",
                signal.Signals(signum).name,
            )
            engine.stop()
        elif task is not None:
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await engine.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return signals > 0


async def crawl_async(
    spider: type[Spider],
    *,
    settings: Mapping[str, Any] | None = None,
    feed: str | Path | None = None,
    state: str | Path | None = None,
    stats: str | Path | None = None,
    config: str | Path | None = None,
    arguments: Mapping[str, str] | None = None,
) -> CrawlResult:
    """Run a crawl from a script or a notebook (which has a running loop): ``crawler run`` as
    a coroutine. ``settings`` override the config file and the spider's ``custom_settings``;
    ``arguments`` set spider attributes as ``-a key=value`` does.

    Without a ``feed``, the items come back in ``result.items`` (kept in a temporary JSON
    lines file meanwhile); with one, they are in the feed and ``result.items`` is None. With a
    ``state``, a crawl that stopped resumes. Cancelling the task stops the crawl at once, with
    the state consistent, as a second Ctrl-C does.

    >>> result = await crawl_async(BooksSpider, settings={"max_pages": 20})  # doctest: +SKIP
    >>> result.stats.items_scraped, result.items[0]["title"]  # doctest: +SKIP
    """
    paths = {"feed": feed, "state": state, "stats": stats, "config": config}
    return await _run_job(_job(spider, settings, arguments, paths, signals=False))


def crawl(
    spider: type[Spider],
    *,
    settings: Mapping[str, Any] | None = None,
    feed: str | Path | None = None,
    state: str | Path | None = None,
    stats: str | Path | None = None,
    config: str | Path | None = None,
    arguments: Mapping[str, str] | None = None,
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
    return asyncio.run(_run_job(_job(spider, settings, arguments, paths, signals=signals)))


def _job(
    spider: type[Spider],
    settings: Mapping[str, Any] | None,
    arguments: Mapping[str, str] | None,
    paths: Mapping[str, str | Path | None],
    *,
    signals: bool,
) -> CrawlJob:
    given = {name: Path(value) for name, value in paths.items() if value is not None}
    return CrawlJob(
        spider=spider,
        overrides=dict(settings or {}),
        arguments=dict(arguments or {}),
        progress=False,
        signals=signals,
        **given,
    )


async def _run_job(job: CrawlJob) -> CrawlResult:
    if job.feed is not None:
        return await run(job)
    with tempfile.TemporaryDirectory(prefix="crawler-items-") as folder:
        job.feed = Path(folder) / "items.jsonl"
        result = await run(job)
        with job.feed.open("rb") as lines:
            result.items = [jsondata.loads(line) for line in lines if line.strip()]
    return result
