"""The scheduler: hands out the next request whose host may be hit now.

It keeps a small buffer of leased requests per host, refilled from the frontier, and enforces
global ``concurrency``, ``per_host_concurrency`` and per-host delays. A host that is slow, failing
or rate-limited only holds back its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from crawler import autothrottle
from crawler.autothrottle import Bounds, Pace
from crawler.errors import CrawlerError
from crawler.frontier import Frontier
from crawler.request import Request
from crawler.retry import parse_retry_after
from crawler.settings import Settings
from crawler.throttle import HostSlot
from crawler.urls import host_of


class CrawlStopped(CrawlerError):
    """The crawl is stopping: the request is left for the next run."""


@dataclass(slots=True)
class _Held:
    """The host whose slot a dispatched attempt holds: its own, or the one a redirect took it
    to (a hop to another host gives its slot back and takes one there)."""

    host: str


# Set by _dispatch() right before next_request() returns: the engine starts the request's task
# at once, and a task starts with a copy of the context, so each attempt sees its own.
_held: ContextVar[_Held | None] = ContextVar("crawler_held_slot", default=None)


class Scheduler:
    """``next_request()`` until it returns None; ``release`` after each attempt, ``done`` after
    each request."""

    def __init__(
        self,
        frontier: Frontier,
        settings: Settings,
        flush: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frontier = frontier
        self.settings = settings
        self._flush = flush
        self._clock = clock
        self.slots: dict[str, HostSlot] = {}
        self.paces: dict[str, tuple[Pace, Bounds]] = {}  # autothrottle's state, per host
        self._backlog: set[str] = set()
        self._changed = asyncio.Event()
        self.active = 0
        self.in_flight = 0
        self.dispatched = 0
        self.stopping = False
        self.lease_size = max(32, 4 * settings.per_host_concurrency)
        self.max_buffered = max(1024, 8 * settings.concurrency)
        # Requests past their download (being parsed, or waiting to retry) hold memory too.
        self.max_in_flight = 2 * settings.concurrency
        self.buffered = 0  # leased requests waiting in the slots' buffers

    def __repr__(self) -> str:
        return (
            f"<Scheduler active={self.active}/{self.settings.concurrency}"
            f" in_flight={self.in_flight} hosts={len(self.slots)} buffered={self.buffered}"
            f" backlog={len(self._backlog)}>"
        )

    async def start(self, dispatched_before: int = 0) -> None:
        self.dispatched = dispatched_before
        self._backlog = await self.frontier.queued_hosts()

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    def slot(self, host: str) -> HostSlot:
        slot = self.slots.get(host)
        if slot is None:
            # one request at a time until robots.txt is known, and on a host with a delay
            delayed = self.settings.obey_robots or self.settings.download_delay > 0
            limit = 1 if delayed else self.settings.per_host_concurrency
            delay = self.settings.download_delay
            slot = self.slots[host] = HostSlot(host, limit, delay, rest=delay)
            if self.settings.autothrottle:
                bounds = self._bounds(self.settings.download_delay, limit)
                pace = autothrottle.start(bounds, self.settings.autothrottle_start_delay)
                self._pace(slot, pace, bounds)
        return slot

    def configure_host(self, host: str, crawl_delay: float | None) -> None:
        """Apply what robots.txt said: the host's real concurrency and delay (autothrottle's
        bounds, when it is on)."""
        delay = max(self.settings.download_delay, crawl_delay or 0.0)
        concurrency = 1 if delay > 0 else self.settings.per_host_concurrency
        slot = self.slot(host)
        slot.rest = delay  # autothrottle's pace never goes under it
        if (paced := self.paces.get(host)) is not None:
            bounds = self._bounds(delay, concurrency)
            self._pace(slot, autothrottle.bound(paced[0], bounds), bounds)
        else:
            slot.configure(concurrency, delay)
        self.wake()

    def observe(
        self, url: str, latency_s: float, status: int | None, retry_after: str | None = None
    ) -> None:
        """A response came back from ``url``'s host (``status=None``: none came, the attempt
        failed on the way): autothrottle adapts the host's pace."""
        if not self.settings.autothrottle:
            return
        host = host_of(url)
        slot = self.slot(host)
        pace, bounds = self.paces[host]
        wait = parse_retry_after(retry_after) if status in autothrottle.RATE_LIMITED else None
        if wait is not None:
            wait = min(wait, self.settings.max_retry_after)  # a longer one fails the page anyway
        now = self._clock()
        pace = autothrottle.observe(pace, bounds, now, latency_s, status, retry_after_s=wait)
        self._pace(slot, pace, bounds)
        slot.pause_until(pace.resume_at)
        self.wake()

    def _bounds(self, min_delay: float, max_concurrency: int) -> Bounds:
        return Bounds(
            min_delay=min_delay,
            max_delay=self.settings.autothrottle_max_delay,
            max_concurrency=max_concurrency,
            target_concurrency=self.settings.autothrottle_target_concurrency,
        )

    def _pace(self, slot: HostSlot, pace: Pace, bounds: Bounds) -> None:
        self.paces[slot.host] = pace, bounds
        slot.configure(pace.concurrency, pace.delay)

    def hosts_added(self, hosts: set[str]) -> None:
        """The frontier committed new requests for these hosts."""
        self._backlog |= hosts
        self.wake()

    def _budget_left(self) -> bool:
        limit = self.settings.max_pages
        return limit is None or self.dispatched < limit

    @property
    def budget_spent(self) -> bool:
        """Whether ``max_pages`` requests were dispatched (which ends the crawl)."""
        return not self._budget_left()

    async def next_request(self) -> Request | None:
        """The next request to fetch, its host slot taken; None when the crawl is over."""
        while not self.stopping and self._budget_left():
            changed = self._changed
            now = self._clock()
            wait: float | None = None
            if self.active < self.settings.concurrency and self.in_flight < self.max_in_flight:
                slot, wait = self._pick(now)
                if slot is not None:
                    return self._dispatch(slot, now)
            if self._refill_wanted():
                await self._refill()
                continue
            if self._flush_wanted():
                await self._flush()
                continue
            if wait is None and not self.buffered and not self._backlog:
                if self.frontier.pending_writes:
                    await self._flush()
                    continue
                if self.in_flight == 0:
                    # A flush started elsewhere (a worker's, the ticker's) may be committing new
                    # requests right now: wait it out behind the flush lock before calling the end.
                    await self._flush()
                    if not self._backlog and not self.frontier.pending_writes:
                        return None
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=wait)
        return None

    def _pick(self, now: float) -> tuple[HostSlot | None, float | None]:
        best: HostSlot | None = None
        soonest: float | None = None
        for slot in self.slots.values():
            at = slot.ready_at(now)
            if at is None:
                continue
            if at <= now:
                if best is None or slot.queue[0] < best.queue[0]:
                    best = slot
            elif soonest is None or at < soonest:
                soonest = at
        return best, (None if soonest is None else soonest - now)

    def _dispatch(self, slot: HostSlot, now: float) -> Request:
        request = slot.take()
        self.buffered -= 1
        self.active += 1
        self.in_flight += 1
        self.dispatched += 1
        _held.set(_Held(slot.host))
        return request

    def _refill_wanted(self) -> bool:
        if self.buffered >= self.max_buffered:
            return False
        low = self.lease_size // 2
        return any(len(self.slot(host).queue) < low for host in self._backlog)

    def _flush_wanted(self) -> bool:
        """Whether uncommitted new requests could start now: their host has room and an
        empty buffer. Committing then keeps a host busy without a commit per response."""
        if self.active >= self.settings.concurrency:
            return False
        low = self.lease_size // 2
        for host in self.frontier.pending_hosts:
            slot = self.slot(host)
            if slot.has_room() and len(slot.queue) < low:
                return True
        return False

    async def _refill(self) -> None:
        low = self.lease_size // 2
        budget = self.max_buffered - self.buffered
        for host in list(self._backlog):
            slot = self.slot(host)
            want = min(self.lease_size - len(slot.queue), budget)
            if len(slot.queue) >= low or want <= 0:
                continue
            leased = await self.frontier.lease(host, want)
            for request in leased:
                slot.push(request)
            self.buffered += len(leased)
            budget -= len(leased)
            if len(leased) < want:
                self._backlog.discard(host)

    def release(self, request: Request) -> None:
        """The attempt is over: its host slot (where its last hop went) and global slot are
        free again."""
        held = _held.get()
        if held is None:
            self.slot(request.host).finish()
        elif held.host:  # "": a hop that was waiting for a slot elsewhere holds none
            self.slot(held.host).finish()
        self.active -= 1
        self.wake()

    def done(self, request: Request) -> None:
        """The request is finished for good (its outcome is buffered in the frontier)."""
        self.in_flight -= 1
        self.wake()

    async def turn(self, url: str) -> None:
        """A page request of a dispatched attempt is about to go on the wire to ``url``'s host
        (its first hop or a redirect hop): wait until that host's delay since its last request
        has passed, then mark the start. A hop to another host first gives the attempt's host
        slot back and waits for one there, so a host with a delay gets one request at a time
        whichever host's page redirected to it.

        While it waits, the attempt lends its global slot to other hosts, and takes it back when
        its turn comes even if they filled every slot meanwhile (the dispatcher then holds back
        until the count is under ``concurrency`` again): waiting for a global slot here could
        wait on requests that wait for this one. Raises CrawlStopped if the crawl stops
        meanwhile.
        """
        host = host_of(url)
        held = _held.get()
        if held is not None and held.host != host:
            await self._hop(held, host, url)
            return
        await self._space(url)

    async def robots_turn(self, url: str) -> None:
        """``turn`` for robots.txt, which holds its site's lock while fetched: spaced by the
        host's delay, with no slot taken there (its slot holders wait for that lock, so none of
        them is on the wire meanwhile; waiting for their slot could wait for ever)."""
        await self._space(url)

    async def _space(self, url: str) -> None:
        slot = self.slot(host_of(url))
        now = self._clock()
        if slot.next_start > now:
            now = await self._wait_turn(slot, url)
        slot.sent(now)

    async def _hop(self, held: _Held, host: str, url: str) -> None:
        """Move the attempt's host slot from ``held.host`` to ``host``: waiting for room there
        and its delay, ahead of that host's own buffered requests."""
        self.slot(held.host).finish()
        held.host = ""  # holds no host slot while it waits
        self.wake()
        slot = self.slot(host)
        slot.waiters += 1  # the dispatcher holds the host's own requests back meanwhile
        self.active -= 1
        try:
            while not self.stopping:
                changed = self._changed
                now = self._clock()
                if slot.has_room() and slot.next_start <= now:
                    slot.start()
                    held.host = host
                    slot.sent(now)
                    return
                timeout = slot.next_start - now if slot.next_start > now else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=timeout)
            raise CrawlStopped(url)
        finally:
            slot.waiters -= 1
            self.active += 1  # the attempt holds its global slot again; release() frees it

    def landed(self, url: str) -> None:
        """A request to ``url``'s host was answered, or failed: its delay runs from now too."""
        self.slot(host_of(url)).landed(self._clock())

    async def _wait_turn(self, slot: HostSlot, url: str) -> float:
        self.active -= 1
        self.wake()
        try:
            while not self.stopping:
                changed = self._changed
                now = self._clock()
                if slot.next_start <= now:
                    return now
                timeout = slot.next_start - now if slot.next_start > now else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=timeout)
            raise CrawlStopped(url)
        finally:
            self.active += 1  # the attempt holds its global slot again; release() frees it

    def evict_idle(self, keep: int) -> list[str]:
        """Past ``keep`` hosts, let go of the slots of hosts with nothing to do (nothing buffered,
        in flight or waiting, no delay still running); returns their names. A slot made again
        later starts as a new host does, until robots.txt configures it."""
        if len(self.slots) <= keep:
            return []
        now = self._clock()
        idle = [
            host
            for host, slot in self.slots.items()
            if not slot.queue and not slot.active and not slot.waiters
            and slot.next_start <= now and host not in self._backlog
        ]  # fmt: skip
        for host in idle:
            del self.slots[host]
            self.paces.pop(host, None)
        return idle

    def pause_host(self, host: str, seconds: float) -> None:
        self.slot(host).pause_until(self._clock() + seconds)

    async def reacquire(self, request: Request, delay: float) -> None:
        """Wait ``delay`` seconds, then until the request's host slot is free again, and take it.

        Used between retries: while it waits, the request holds no slot, so other requests
        (and other hosts) go on. Raises CrawlStopped if the crawl stops meanwhile.
        """
        slot = self.slot(request.host)
        slot.waiters += 1
        try:
            deadline = self._clock() + delay
            while not self.stopping:
                changed = self._changed
                now = self._clock()
                start = max(deadline, slot.next_start)
                if start <= now and slot.has_room() and self.active < self.settings.concurrency:
                    slot.start()
                    self.active += 1
                    if (held := _held.get()) is not None:
                        held.host = slot.host  # the retry starts on its own host again
                    return
                timeout = start - now if start > now else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=timeout)
            raise CrawlStopped(request.url)
        finally:
            slot.waiters -= 1
