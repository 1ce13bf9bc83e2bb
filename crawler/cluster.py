"""A crawl shared by many workers on a Redis frontier: one process's part in it (crawling,
exporting the feed, or both), and ``crawler status`` and ``crawler stop``.

Every worker process runs ``crawler run SPIDER --frontier URL``; the one given ``-o FEED`` also
writes the feed, from the items every worker committed (``crawler.feed_tail``). There is no
state file and no lock: the frontier's leases keep workers apart. A worker ends when the crawl
is finished (exit 0, a late joiner at once), stopped by ``crawler stop`` (exit 3), or when it
gets a stop signal itself (exit 3; the others go on).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from crawler import jsondata
from crawler.engine import Engine
from crawler.errors import ConfigError, CrawlerError, first_error
from crawler.exporters import FeedExporter, exporter_for, open_private
from crawler.feed_tail import FeedTail, check_feed
from crawler.fetcher import Fetcher
from crawler.frontier.redis_codec import redact
from crawler.progress import Progress
from crawler.runner import CrawlJob, CrawlResult, check_outputs, create_spider, monitor
from crawler.runs import EXIT_CODES, Run, RunOutcome, outcome_of
from crawler.runs import now as utc_now
from crawler.scheduler_remote import RemoteScheduler, SharedFrontier
from crawler.settings import Settings
from crawler.signals import StopSignals
from crawler.spider import Spider
from crawler.stats import Stats

if TYPE_CHECKING:
    import signal

log = logging.getLogger("crawler.cluster")

CLAIM_POLL_S = 0.25  # how often a new exporter asks for the role its holder may have left
# A state only a live worker moves on (its heartbeats reap dead workers' leases and settle the
# crawl), said so when none is live.
UNATTENDED = {  # what a state means when no worker is live
    "running": ", but no worker is live (`crawler run` on this id goes on with it)",
    "stopping": ", but no worker is live to end the stop (`crawler run` on this id resumes"
    " the crawl)",
}


def crawl_id_of(settings: Settings, spider_name: str) -> str:
    return settings.crawl_id or spider_name


def shared_frontier(settings: Settings, crawl_id: str) -> SharedFrontier:
    """The crawl's frontier at ``settings.frontier`` (not opened yet)."""
    if settings.frontier is None:
        raise ConfigError("no frontier: give --frontier redis://host:port/db (or unix:///path)")
    # Imported here: a crawl on SQLite never loads redis.
    from crawler.frontier.redis import RedisFrontier  # noqa: PLC0415

    return RedisFrontier(settings.frontier, crawl_id, settings)


def check_job(job: CrawlJob) -> None:
    """Refuse what a shared crawl cannot take, before anything starts."""
    if job.state is not None:
        raise ConfigError("--state and --frontier: a shared crawl is kept in its frontier only")
    check_outputs(job)


async def run(job: CrawlJob, settings: Settings, *, crawl: bool = True) -> CrawlResult:
    """This process's part in the shared crawl: crawl (unless ``crawl=False``: the parent of
    ``--workers`` only exports), and export the feed when ``job.feed`` is given. Returns this
    process's stats; ``totals`` are the crawl's, as committed by every worker."""
    check_job(job)
    stopper = _Stopper()
    # From the start: a stop signal while this worker joins is a graceful stop too.
    signals = StopSignals.handled(stopper.first, stopper.again) if job.signals else nullcontext()
    with signals:
        spider = create_spider(job)
        crawl_id = crawl_id_of(settings, spider.name)
        frontier = shared_frontier(settings, crawl_id)
        started_at = utc_now()
        if settings.autothrottle and crawl:
            log.info(
                "autothrottle on a shared frontier paces this worker's extra hops only; the"
                " cluster's pace is download_delay, Crawl-delay and Retry-After"
            )
        stats, stopped, totals = await _join(job, settings, spider, frontier, stopper, crawl=crawl)
    outcome = outcome_of(stats, stopped=stopped)
    record = Run(0, job.trigger, started_at=started_at, scheduled_for=job.scheduled_for)
    record.outcome, record.exit_code, record.finished_at = outcome, EXIT_CODES[outcome], utc_now()
    record.stats = stats.to_dict()
    if job.stats is not None:
        _write_stats(job, record, totals, crawl_id)
    return CrawlResult(stats, stopped, None, record, totals)


async def _join(
    job: CrawlJob,
    settings: Settings,
    spider: Spider,
    frontier: SharedFrontier,
    stopper: _Stopper,
    *,
    crawl: bool,
) -> tuple[Stats, bool, Stats]:
    """Join the crawl, take part until it ends or this process stops, and leave; returns this
    process's stats, whether it was stopped, and the crawl's committed totals."""
    serve = monitor(settings)  # a taken metrics_port is refused before joining
    await frontier.open(spider.name, crawl=crawl)
    stats = Stats()
    exporter: FeedExporter | None = None
    fetcher: Fetcher | None = None
    try:
        await _say_resumed(frontier)
        if job.feed is not None:
            exporter = await claim_feed(frontier, job, settings, frontier.crawl_id)
        engine = None
        if crawl:
            fetcher = Fetcher(settings)
            progress = Progress(stats, settings.progress_interval) if job.progress else None
            engine = Engine(
                spider, settings, frontier=frontier, fetcher=fetcher, stats=stats, progress=progress
            )
            stopper.attach(engine)
        try:
            if engine is None:
                stopped = await _run(frontier, engine, exporter, job, stopper.until)
            else:
                async with serve(engine):  # /metrics and /healthz, with metrics_port
                    stopped = await _run(frontier, engine, exporter, job, stopper.until)
        except BaseExceptionGroup as group:  # the crawl and the feed run side by side
            if (error := first_error(group)) is None:
                raise
            error.exit_code = EXIT_CODES[RunOutcome.CRASHED]  # not bad input: a crawl that broke
            raise error from None
        except CrawlerError as error:
            error.exit_code = EXIT_CODES[RunOutcome.CRASHED]
            raise
        totals = Stats.from_dict(dict((await frontier.status()).get("stats") or {}))
    finally:
        if fetcher is not None:
            await fetcher.close()
        await frontier.close()
        if exporter is not None:
            exporter.close()
    return stats, stopped, totals


async def _say_resumed(frontier: SharedFrontier) -> None:
    """A line when this worker joins a crawl with committed work, as a resumed SQLite state
    says: resuming (no other worker is live) or joining it."""
    found = await frontier.status()
    counts = found["counts"]
    if found["state"] != "running" or not any(counts[k] for k in ("done", "failed", "skipped")):
        return
    done = f"{counts['done']} pages done, {found['queued']} queued"
    if found["workers"] > 1:  # this one counts
        log.info(
            "joining crawl %r (%s; %d workers live)", frontier.crawl_id, done, found["workers"]
        )
    else:
        log.info("resuming crawl %r (%s)", frontier.crawl_id, done)


def totals_line(crawl_id: str, totals: Stats) -> str:
    """The crawl's totals as Redis committed them, after a worker's own summary."""
    return (
        f"crawl {crawl_id!r}, every worker: {totals.pages_crawled} pages,"
        f" {totals.items_scraped} items, {totals.failures} failures in {totals.elapsed_s:.1f}s"
    )


def resume_hint(settings: Settings, crawl_id: str) -> str:
    """What a stopped worker says: how to resume, as SQLite's ``--state`` hint does; the
    frontier's URL without its password."""
    assert settings.frontier is not None
    url, crawl = shlex.quote(redact(settings.frontier)), shlex.quote(crawl_id)
    return f"stopped; run again with --frontier {url} --crawl-id {crawl} to resume"


class _Stopper:
    """SIGINT/SIGTERM for a worker's whole run: the first stops scheduling (the engine's, once
    there is one) and ends the feed with what is committed; a second cancels at once."""

    def __init__(self) -> None:
        self.until = asyncio.Event()
        self.engine: Engine | None = None
        self.task = asyncio.current_task()

    def __repr__(self) -> str:
        return f"<_Stopper stopping={self.until.is_set()} engine={self.engine is not None}>"

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        if self.until.is_set():
            engine.stop()

    def first(self, signum: signal.Signals) -> None:
        log.warning(
            "%s: finishing requests in flight, then stopping (again to stop now)", signum.name
        )
        self.until.set()
        if self.engine is not None:
            self.engine.stop()

    def again(self, signum: signal.Signals) -> None:
        if self.task is not None:
            self.task.cancel()


async def claim_feed(
    frontier: SharedFrontier, job: CrawlJob, settings: Settings, crawl_id: str
) -> FeedExporter:
    """Take the crawl's export role. Its holder may have died a moment ago (an exporter killed
    and restarted at once): it holds the role until its heartbeat lapses, so this waits up to
    ``lease_ttl_s`` for it before refusing. A feed that needs items which have left Redis is
    refused too (``check_feed``)."""
    assert job.feed is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.lease_ttl_s + CLAIM_POLL_S
    if not await frontier.claim_export():
        log.info(
            "crawl %r has an exporter: waiting up to lease_ttl_s=%s s in case it died",
            crawl_id,
            settings.lease_ttl_s,
        )
        while not await frontier.claim_export():
            if loop.time() >= deadline:
                raise ConfigError(
                    f"crawl {crawl_id!r} has an exporter already (alive for lease_ttl_s="
                    f"{settings.lease_ttl_s} s more): only one process writes its feed; run this"
                    " worker without -o"
                )
            await asyncio.sleep(CLAIM_POLL_S)
    exporter = exporter_for(
        job.feed, escape_formulas=settings.csv_escape_formulas, fields=settings.feed_fields
    )
    await check_feed(frontier, exporter, overwrite=job.overwrite_feed)
    return exporter


async def _run(
    frontier: SharedFrontier,
    engine: Engine | None,
    exporter: FeedExporter | None,
    job: CrawlJob,
    until: asyncio.Event,
) -> bool:
    """Crawl and tail the feed side by side until the crawl ends or ``until`` is set (this
    process stops); returns whether this run was stopped (here, or by ``crawler stop``)."""
    tail = None
    if exporter is not None:
        tail = feed_tail(frontier, exporter, engine)
        await tail.open(overwrite=job.overwrite_feed)
    stopped = await _together(engine, tail, until)
    scheduler = engine.scheduler if engine is not None else None
    return stopped or until.is_set() or (scheduler is not None and scheduler.stopping)


async def _together(engine: Engine | None, tail: FeedTail | None, until: asyncio.Event) -> bool:
    ended = "running"
    async with asyncio.TaskGroup() as group:
        if tail is not None:
            exported = group.create_task(tail.run(until))
        if engine is not None:
            await engine.run()
            assert isinstance(engine.scheduler, RemoteScheduler)
            if engine.scheduler.state == "running":
                until.set()  # this worker stopped, the crawl goes on: the feed ends here
    if tail is not None:
        ended = exported.result()
    elif engine is not None:
        assert isinstance(engine.scheduler, RemoteScheduler)
        ended = engine.scheduler.state
    return ended in {"stopped", "stopping"}


def feed_tail(frontier: SharedFrontier, exporter: FeedExporter, engine: Engine | None) -> FeedTail:
    async def state() -> str:
        return str((await frontier.status())["state"])

    async def commit() -> None:
        if engine is not None:
            await engine.flush()  # one commit at a time, the engine's outcomes with it
        else:
            await frontier.flush()

    return FeedTail(frontier, exporter, state=state, commit=commit)


def _write_stats(job: CrawlJob, record: Run, totals: Stats, crawl_id: str) -> None:
    assert job.stats is not None
    report: dict[str, Any] = dict(record.stats)
    run = record.to_dict()
    del run["stats"]
    report.update(run=run, crawl_id=crawl_id, totals=totals.to_dict())
    with open_private(job.stats) as file:
        file.truncate()
        file.write(jsondata.dumps(report, indent=True))


async def status(settings: Settings, crawl_id: str) -> dict[str, Any]:
    """The crawl's state, queue, leases, live workers and committed stats."""
    frontier = shared_frontier(settings, crawl_id)
    await frontier.attach()
    try:
        found = await frontier.status()
    finally:
        await frontier.close()
    if not found.get("spider"):
        raise ConfigError(f"no crawl {crawl_id!r} on this frontier")
    return found


def describe(crawl_id: str, found: dict[str, Any]) -> list[str]:
    """``crawler status``'s lines: the state and wall time, the frontier's exact counters (what
    was committed), and the workers' summed stats; the numbers of ``crawler status --json``."""
    counts, stats = found.get("counts") or {}, found.get("stats") or {}
    state, live = found.get("state"), found.get("workers", 0)
    elapsed = float(found.get("elapsed_s", 0.0))
    ended = state in {"finished", "stopped"}
    unattended = "" if live else UNATTENDED.get(str(state), "")
    state = f"{state} {'after' if ended else 'for'} {elapsed:.1f}s{unattended}"
    return [
        f"crawl {crawl_id} ({found.get('spider')}): {state}; {found.get('queued', 0)}"
        f" queued, {found.get('leased', 0)} leased, {found.get('seen', 0)} seen;"
        f" {live} {'worker' if live == 1 else 'workers'} live",
        f"committed: {counts.get('done', 0)} done, {counts.get('failed', 0)} failed,"
        f" {counts.get('skipped', 0)} skipped, {counts.get('items', 0)} items;"
        f" {counts.get('refused', 0)} outcomes refused (stale leases),"
        f" {counts.get('reclaimed', 0)} leases reclaimed",
        f"workers' stats: {stats.get('pages_crawled', 0)} pages, {stats.get('requests_total', 0)}"
        f" requests, {stats.get('retries', 0)} retries, {stats.get('bytes_received', 0)} bytes",
    ]


async def stop(settings: Settings, crawl_id: str) -> dict[str, Any]:
    """Stop the crawl for every worker: no new leases, requests in flight finish and are
    committed, then it is "stopped" (resumable: ``crawler run`` on the same id continues)."""
    await status(settings, crawl_id)  # no such crawl: one line, nothing created
    frontier = shared_frontier(settings, crawl_id)
    await frontier.attach()
    try:
        await frontier.stop_crawl()
        return await frontier.status()
    finally:
        await frontier.close()
