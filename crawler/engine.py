"""The engine: seeds the frontier, runs one task per request under the scheduler's limits,
calls the spider, and commits outcomes, items and new links in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from crawler import items as item_processing
from crawler import lifecycle, retry
from crawler.admission import Admission
from crawler.checkpoint import Checkpoint
from crawler.errors import (
    AddressRefused,
    CrawlerError,
    FeedError,
    FetchError,
    RetryableStatus,
    RobotsUnavailable,
    SkipReason,
    StateError,
    TransientError,
    first_error,
)
from crawler.exporters import FeedExporter
from crawler.failure import Failure, HttpError
from crawler.fetcher import Fetcher
from crawler.frontier import Frontier, Outcome, RequestState, RobotsRecord
from crawler.parsing import PageParser
from crawler.progress import Progress
from crawler.recrawl import Recrawl
from crawler.request import Request
from crawler.response import Response
from crawler.robots import ROBOTS_MAX_BYTES, RobotsRules, product_token, robots_url
from crawler.robots_cache import RobotsCache
from crawler.scheduler import CrawlStopped, Scheduler
from crawler.scheduler_remote import RemoteScheduler, SharedFrontier
from crawler.scope import Scope
from crawler.settings import Settings
from crawler.spider import Spider, iterate
from crawler.spider_state import SpiderState
from crawler.stats import FetchDurations, Stats
from crawler.urls import host_of

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger("crawler.engine")

Call = tuple[str | None, Any]  # a spider method's name (None: there is none) and its argument

FLUSH_EVERY = 200  # buffered writes that trigger a commit
FLUSH_BACKLOG = 10 * FLUSH_EVERY  # buffered writes past which a finished request waits to commit
FLUSH_INTERVAL_S = 1.0
LINK_BATCH = 1000
KEEP_HOSTS = 4096  # idle hosts' politeness and robots.txt state past this many is let go
TICK_S = 0.25


class Engine:
    """One crawl of one spider. Built by the runner; ``await engine.run()``."""

    def __init__(
        self,
        spider: Spider,
        settings: Settings,
        *,
        frontier: Frontier,
        fetcher: Fetcher,
        stats: Stats,
        exporter: FeedExporter | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.spider = spider
        self.settings = settings
        self.frontier = frontier
        self.fetcher = fetcher
        self.stats = stats
        self.progress = progress
        self.scope = Scope(spider.allowed_domains, settings.max_depth)
        # A shared frontier knows which links its commits got accepted: admission drops the
        # repeats of those only (see Admission).
        committed = cast(SharedFrontier, frontier).committed if frontier.shared else None
        self.admission = Admission(spider, self.scope, stats, committed=committed)
        self.retry = retry.RetryPolicy(settings)
        # Chosen once: a shared frontier's gate decides what starts (scheduler_remote.py).
        self.scheduler: Scheduler = (
            RemoteScheduler(cast("SharedFrontier", frontier), settings, flush=self.flush)
            if frontier.shared
            else Scheduler(frontier, settings, flush=self.flush)
        )
        self.parser = PageParser(settings)
        self.recrawl = Recrawl(spider, settings, frontier, stats)
        self.robots_token = settings.robots_user_agent or product_token(settings.user_agent)
        self.robots = RobotsCache(
            frontier,
            self._fetch_robots,
            self.robots_token,
            on_rules=self._robots_loaded,
            unavailable_s=settings.retry_backoff_max,
        )
        self.state = SpiderState(spider)
        self.checkpoint = Checkpoint(
            frontier,
            stats,
            self.state,
            exporter=exporter,
            requests_sent=lambda: fetcher.requests_sent,
            hosts_added=self.scheduler.hosts_added,
        )
        self._finished = asyncio.Event()
        # A shared frontier is not asked to commit stats alone every second: an idle worker's
        # calls stay few (they are committed with its next outcomes, and at its end).
        self._commit_idle = not frontier.shared
        self.fetch_durations = FetchDurations()  # read by the metrics endpoint
        self.ticked_at: float | None = None  # when _tick last ran (monotonic): /healthz reads it
        # Read once: the per-response DEBUG line costs nothing at INFO.
        self._debug = log.isEnabledFor(logging.DEBUG)

    def __repr__(self) -> str:
        return f"<Engine spider={self.spider.name!r} queued={self.stats.queued} {self.scheduler!r}>"

    @property
    def in_flight(self) -> int:
        return self.scheduler.in_flight

    def stop(self) -> None:
        """Stop scheduling; requests in flight finish and are saved."""
        self.scheduler.stop()

    async def run(self) -> None:
        """Open the spider (``spider.state``, then the pipelines' ``open_spider``), crawl, and
        close it (``close_spider``, ``closed(reason)``) however the crawl ends."""
        self.state.load(await self.frontier.spider_state())
        await lifecycle.open_spider(self.spider, self.stats)
        try:
            await self._crawl()
        except BaseException as error:
            # A crash or a forced stop: the hooks run, but what they or the interrupted
            # callbacks changed in spider.state is not saved (the last commit holds its state).
            await lifecycle.close_spider(self.spider, lifecycle.crash_reason(error), self.stats)
            raise
        await lifecycle.close_spider(self.spider, self._close_reason(), self.stats)
        await self.flush()  # spider.state as the close hooks left it

    def _close_reason(self) -> str:
        if self.scheduler.stopping:
            return lifecycle.SHUTDOWN
        if self.scheduler.budget_spent:
            return lifecycle.PAGECOUNT
        return lifecycle.FINISHED

    async def _crawl(self) -> None:
        counts = await self.frontier.counts()
        self.stats.queued = counts.queued
        if isinstance(self.scheduler, RemoteScheduler):
            await self._seed_shared(self.scheduler)
            recrawl = False  # a shared crawl is recrawled under a new crawl id
        else:
            recrawl = self.recrawl.start()
            await self._seed(requeue=recrawl)
        if recrawl:
            await self.recrawl.count_not_due()
        # A recrawl's max_pages budget is its own; a resumed crawl's counts what it did.
        await self.scheduler.start(dispatched_before=0 if recrawl else counts.done + counts.failed)
        try:
            async with asyncio.TaskGroup() as outer:
                outer.create_task(self._tick())
                try:
                    async with asyncio.TaskGroup() as workers:
                        while (request := await self.scheduler.next_request()) is not None:
                            workers.create_task(self._handle(request))
                finally:
                    # The ticker is told, not cancelled: a flush it runs must not be cut halfway.
                    self._finished.set()
        except BaseExceptionGroup as group:
            # The state or the feed cannot be written: the crawl stops with that one error.
            if (broken := first_error(group, (StateError, FeedError))) is not None:
                raise broken from None
            raise
        finally:
            await self.parser.aclose()
            if self.progress is not None:
                self.progress.close()
        await self.flush()
        await self.flush()  # the feed checkpoint of the last batch

    async def _seed_shared(self, scheduler: RemoteScheduler) -> None:
        """On a shared frontier one worker seeds (``frontier.seeder``), and says so once its
        start requests are committed: until then the crawl cannot be finished. A worker the
        frontier makes the seeder later (its seeder died) seeds from the scheduler's loop."""
        frontier = scheduler.shared

        async def seed() -> None:
            await self._seed()  # its last flush commits the last start requests
            await frontier.seeding_done()

        scheduler.seed = seed
        # The start hosts may be private (an intranet, loopback) for every worker: the seeder
        # commits their origins with the seeds, and a grant brings them to the others.
        scheduler.exempt = self.fetcher.guard.exempt_start
        if frontier.seeder:
            scheduler.seeded = True
            await seed()

    async def _seed(self, *, requeue: bool = False) -> None:
        """Add the start requests; a recrawl ``requeue``s those already done."""
        add = self.frontier.requeue if requeue else self.frontier.add
        batch: list[Request] = []
        seeded = 0
        try:
            async for value in iterate(self.spider.start_requests()):
                if not isinstance(value, Request):
                    log.warning("start_requests yielded %r, not a Request: ignored", value)
                    continue
                seeded += 1
                self.fetcher.guard.exempt_start(value.url)  # admitted or not: a resumed crawl's
                if (admitted := self.admission.admit(value, parent=None)) is not None:
                    batch.append(admitted)
                if len(batch) >= 1000:
                    add(batch)
                    batch = []
                    await self.flush()
        except StateError:
            raise
        except Exception:
            # A spider's bug, as in a callback: what it yielded before is crawled.
            self.stats.callback_errors += 1
            log.exception("start_requests raised after %d requests; crawling those", seeded)
        add(batch)
        await self.flush()

    async def _tick(self) -> None:
        while not self._finished.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._finished.wait()
            self.ticked_at = time.monotonic()
            if time.monotonic() - self.checkpoint.last >= FLUSH_INTERVAL_S and (
                self._commit_idle or self.frontier.pending_writes
            ):
                await self.flush()
            for host in self.scheduler.evict_idle(KEEP_HOSTS):
                self.robots.forget(host)
            if self.progress is not None:
                self.progress.update(self.stats.queued, self.scheduler.in_flight)

    async def flush(self) -> None:
        """Commit what is buffered, then append the committed items to the feed."""
        await self.checkpoint.commit()

    async def _handle(self, request: Request) -> None:
        try:
            await self._settle(request)
        finally:
            self.scheduler.done(request)
        if self._flush_due():
            await self.flush()

    def _flush_due(self) -> bool:
        """Whether this task should commit now. While a commit runs, the tasks that finish go
        on: each waiting for it, then committing its few writes, would stall the crawl behind
        a queue of small commits. Past FLUSH_BACKLOG writes they wait (memory stays bounded)."""
        pending = self.frontier.pending_writes
        if pending < FLUSH_EVERY:
            return False
        return not self.checkpoint.busy or pending >= FLUSH_BACKLOG

    async def _settle(self, request: Request) -> None:
        """Fetch, then call the spider and buffer the outcome as one step for a flush."""
        try:
            outcome, call = await self._process(request)
        except CrawlStopped:
            return  # left in flight: the next run re-queues it
        except StateError:
            raise  # the state cannot be written: the crawl stops
        except Exception as error:
            # Whatever a hostile page or server provoked, it fails this request only: a request
            # that raised must not stay in flight to kill every resumed run again.
            outcome, call = self._failed(request, error), (None, None)
            log.error("failed %s: %s: %s", request.url, type(error).__name__, error, exc_info=True)
        async with self.state.gate:
            await self._run_callback(request, *call, outcome)
            self.stats.queued -= 1
            self.frontier.complete(outcome)

    def _failed(self, request: Request, error: Exception, status: int | None = None) -> Outcome:
        self.stats.failed(type(error).__name__)
        return Outcome(request, RequestState.FAILED, status=status, error=str(error) or None)

    async def _process(self, request: Request) -> tuple[Outcome, Call]:
        # Requests read back from the state meet today's scope: a resumed crawl may have
        # narrower allowed_domains or max_depth, or a state that was written by something else.
        if (reason := self.scope.check(request)) is not None:
            self.scheduler.release(request)  # dispatched with its slots taken: none is used
            self.stats.skipped(reason)
            return Outcome(request, RequestState.SKIPPED, error=reason.value), (None, None)
        try:
            result = await self._download(request)
        except FetchError as error:
            # A refused host is logged once, at WARNING, by the fetcher.
            level = logging.INFO if isinstance(error, AddressRefused) else logging.WARNING
            log.log(level, "failed %s: %s", request.url, error)
            return self._failed(request, error), (request.errback, _failure(error, request))
        if isinstance(result, SkipReason):
            self.stats.skipped(result)
            return Outcome(request, RequestState.SKIPPED, error=result.value), (None, None)
        status = result.status
        revisit = status == 304 and request.history is not None  # validators were sent
        if not (200 <= status < 300 or revisit or status in self.spider.handle_httpstatus_list):
            self.stats.failed(f"http_{status}")
            log.info("HTTP %d %s: not passed to the callback", status, request.url)
            outcome = Outcome(request, RequestState.FAILED, status=status, error=f"HTTP {status}")
            return outcome, (request.errback, Failure(HttpError(result), request))
        return await self._page(request, result)

    async def _page(self, request: Request, response: Response) -> tuple[Outcome, Call]:
        """A response for the callback, which runs unless a recrawl finds the page unchanged."""
        outcome = await self.recrawl.fetched(request, response)
        if outcome.change is not None and not outcome.change.runs_callback:
            return outcome, (None, None)
        if (failed := await self._prepare(request, response)) is not None:
            return failed
        self.stats.pages_crawled += 1
        return outcome, (request.callback or "parse", response)

    async def _prepare(self, request: Request, response: Response) -> tuple[Outcome, Call] | None:
        """Parse a large page off the loop before its callback; one over max_parse_s fails."""
        try:
            await self.parser.prepare(response)
        except FetchError as error:
            log.warning("failed %s: %s", request.url, error)
            outcome = self._failed(request, error, response.status)
            return outcome, (request.errback, Failure(error, request, response))
        return None

    async def _download(self, request: Request) -> Response | SkipReason:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            request.retries += 1
            self.stats.retries += 1
            retry_after = getattr(error, "retry_after", None)
            if retry_after:
                # the host that asked for it: a redirect's target, if the answer came from there
                response = getattr(error, "response", None)
                host = host_of(response.url) if response is not None else request.host
                self.scheduler.pause_host(host, retry_after)
            log.info("retrying %s (%s), attempt %d", request.url, error, state.attempt_number + 1)

        async def sleep(seconds: float) -> None:
            await self.scheduler.reacquire(request, seconds)

        async def attempt() -> Response | SkipReason:
            try:
                return await self._attempt(request)
            finally:
                self.scheduler.release(request)

        return await self.retry.call(attempt, sleep, before_sleep)

    async def _attempt(self, request: Request) -> Response | SkipReason:
        if self.settings.obey_robots and (skip := await self._robots_check(request.url)):
            return skip
        validators = self.recrawl.validators(request)
        try:
            result = await self.fetcher.fetch(
                request,
                self._hop_check,
                self.scheduler.turn,
                after_send=self.scheduler.landed,
                validators=validators,
            )
        except RobotsUnavailable:
            raise  # a redirect hop's site has no robots.txt for now: no failure of this host's
        except TransientError:
            self.scheduler.observe(request.url, 0.0, None)  # a timeout or a dropped connection
            raise
        if isinstance(result, Response):
            self.stats.response(result.status, len(result.body))
            if self._debug:
                log.debug(
                    "Crawled (%d) <%s %s> (referer: %s)",
                    result.status, request.method, result.url, request.referer,
                )  # fmt: skip
            retry_after = result.headers.get("retry-after")
            self.scheduler.observe(result.url, result.elapsed, result.status, retry_after)
            self.fetch_durations.observe(result.elapsed)
            self.recrawl.check(result, validators)
            try:
                retry.check_status(result.status, retry_after)
            except RetryableStatus as error:
                error.response = result
                raise
        return result

    async def _hop_check(self, url: str) -> SkipReason | None:
        if (reason := self.scope.check_url(url)) is not None:
            return reason
        if self.settings.obey_robots:
            return await self._robots_check(url)
        return None

    async def _robots_check(self, url: str) -> SkipReason | None:
        rules = await self.robots.rules(url)
        if not rules.allows(url, self.robots_token):
            return SkipReason.ROBOTS
        if (rules.crawl_delay(self.robots_token) or 0.0) > self.settings.max_crawl_delay:
            return SkipReason.CRAWL_DELAY
        return None

    async def _robots_hop_check(self, url: str) -> SkipReason | None:
        return self.scope.check_url(url)

    def _robots_loaded(self, url: str, rules: RobotsRules) -> None:
        delay = rules.crawl_delay(self.robots_token) or 0.0
        if delay > self.settings.max_crawl_delay:
            delay = 0.0  # never waited for: the site's pages are skipped (_robots_check) at once
        self.scheduler.configure_host(host_of(url), delay)

    async def _fetch_robots(self, url: str) -> RobotsRecord:
        request = Request(robots_url(url))
        try:
            response = await self.fetcher.fetch(
                request,
                self._robots_hop_check,
                self.scheduler.robots_turn,
                after_send=self.scheduler.landed,
                keep_bytes=ROBOTS_MAX_BYTES,
            )
        except AddressRefused as error:
            # As for a redirect off-site: a robots.txt that cannot be fetched, no rules.
            log.info("robots.txt %s: %s: no rules", request.url, error)
            return RobotsRecord(404, b"", time.time())
        except FetchError as error:
            raise RobotsUnavailable(f"robots.txt unreachable: {error}") from None
        if not isinstance(response, Response):
            # RFC 9309 2.3.1.2: a robots.txt that cannot be followed is "unavailable", as a
            # 4xx is: its site has no rules.
            log.info("robots.txt of %s redirects off-site: no rules", request.url)
            return RobotsRecord(404, b"", time.time())
        return RobotsRecord(response.status, response.body, time.time())

    async def _run_callback(
        self, request: Request, name: str | None, argument: Any, outcome: Outcome
    ) -> None:
        """Call a spider method and take in what it yields: requests go to the frontier,
        items through the pipelines. What came before an error in the callback is kept."""
        if name is None:
            return
        kwargs = request.cb_kwargs if name == (request.callback or "parse") else {}
        children: list[Request] = []
        links = 0
        try:
            async for value in iterate(getattr(self.spider, name)(argument, **kwargs)):
                if not isinstance(value, Request):
                    if (
                        data := await item_processing.scrape(value, self.spider, self.stats)
                    ) is not None:
                        outcome.items.append(data)
                    continue
                links += 1
                if self._too_many_links(links, request):
                    continue
                if self._debug:
                    value.referer = request.url  # for the DEBUG line; not stored at INFO
                if (admitted := self.admission.admit(value, parent=request)) is not None:
                    children.append(admitted)
                if len(children) >= LINK_BATCH:
                    # A page of many links: they go to the frontier in batches, and other
                    # requests get the loop between them.
                    self.stats.duplicates_filtered += self.frontier.add(children, parent=request)
                    children = []
                    await asyncio.sleep(0)
        except CrawlerError as error:
            self.stats.callback_errors += 1
            log.error("%s in %s(%s): %s", type(error).__name__, name, request.url, error)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("callback %s raised on %s", name, request.url)
        self.stats.duplicates_filtered += self.frontier.add(children, parent=request)

    def _too_many_links(self, links: int, request: Request) -> bool:
        limit = self.settings.max_links_per_page
        if limit is None or links <= limit:
            return False
        self.stats.links_dropped += 1
        if links == limit + 1:
            log.warning("%s: requests past max_links_per_page=%d dropped", request.url, limit)
        return True


def _failure(error: FetchError, request: Request) -> Failure:
    """What the errback gets: a status still retryable once the retries are spent reaches it
    as an HttpError with its response, as any other non-2xx status does (Scrapy's way)."""
    if isinstance(error, RetryableStatus) and isinstance(error.response, Response):
        return Failure(HttpError(error.response), request)
    return Failure(error, request)
