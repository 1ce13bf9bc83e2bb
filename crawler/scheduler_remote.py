"""The scheduler of a crawl on a shared frontier (Redis): the frontier's gate, not this process,
decides which request may start, so politeness holds for every worker together.

A worker holds only requests it may start now: ``next_request`` leases as many as it has free
global slots (``lease_ready(want)``) and hands them out at once. Besides, it keeps a small
reserve of grants on hosts with no delay (``extra``: a quarter of ``concurrency``, at most
RESERVE_MAX), started the moment a slot frees: a busy worker's lease call waits for its event
loop, and without the reserve each freed slot would stay empty for that round trip. A reserved
grant that waited longer than RESERVE_AGE_S, or whose host this worker saw paused, asks the
gate again before it starts, so a Retry-After another worker got meanwhile holds for it too.

A grant is its request's first turn on its host, if it starts within the gate's guard of the
lease call; a grant this busy process took longer to start is handed back and granted again,
spaced from its real start. A later hop on a host (the page after its robots.txt, a redirect)
waits the host's delay here, then pushes the host's next start one delay on for the whole
cluster (``pause_host``). A hop to another host (a redirect off-site, its robots.txt) is spaced
only locally: an approximation, as that host's slot is not this request's. No scheduler sees
the time between a turn and the request's bytes on the wire (a new connection, an event loop
held by a slow callback), so a host with a delay also rests it from each answer: the gate
counts it from the attempt's end, which the worker reports after the answer came in.

Autothrottle adapts only these local hops; the cluster-wide pace is ``download_delay``,
Crawl-delay and Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from crawler.dedup import SeenSet
from crawler.errors import LeaseLost
from crawler.frontier import Frontier, Grant
from crawler.request import Request
from crawler.scheduler import CrawlStopped, Scheduler
from crawler.settings import Settings
from crawler.urls import host_of

RESERVE_MAX = 16  # grants held beyond the free slots, on hosts with no delay
RESERVE_AGE_S = 0.05  # a grant older than this asks the gate again before it starts
IDLE_POLL_S = 0.3  # an idle worker asks at most ~3.3 times a second (and heartbeats)
LEASE_GAP_S = 0.005  # a few free slots wait this long for more, so that one call leases many
MIN_WAKE_S = 0.002  # a host due "now" that another worker took: never a busy loop
RUNNING, STOPPING, STOPPED = "running", "stopping", "stopped"


class SharedFrontier(Frontier, Protocol):
    """A frontier many workers use at once (``RedisFrontier``): it owns the politeness gate."""

    crawl_id: str
    worker_id: str
    state: str  # the crawl's, as this worker's last call to the frontier said
    seeder: bool
    expired: bool
    start_hosts: set[str]  # the seeds' origins, as the last grant knew them
    committed: SeenSet  # url_key()s of the links this worker's commits got accepted

    async def open(self, spider_name: str, *, crawl: bool = True) -> dict[str, Any]:
        """Join the crawl; ``crawl=False`` (an exporter that does not crawl) never seeds."""

    async def attach(self) -> None:
        """Connect without joining (``crawler status``, ``crawler stop``)."""

    async def claim_export(self) -> bool:
        """Take the crawl's one export role; False while another live worker holds it."""

    async def seeding_done(self) -> None: ...

    async def lease_ready(self, want: int, extra: int = 0) -> Grant: ...

    def attempt_ended(self, request: Request) -> None: ...

    async def reacquire(self, request: Request, *, retake: bool = False) -> float: ...

    async def pause_host(self, host: str, seconds: float) -> None: ...

    async def configure_host(self, host: str, concurrency: int, delay_s: float) -> None: ...

    async def stop_crawl(self) -> None: ...

    async def status(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class _Turn:
    """The turn a grant gives its request on its host, until the first hop there takes it.
    ``asked``: when the call that granted it was sent, ``got``: when its answer came (local
    monotonic seconds)."""

    request: Request
    host: str
    asked: float
    got: float
    used: bool = False


def guard_s(delay: float) -> float:
    """How late a grant may start and still keep the host's spacing: the gate adds this much
    to every delay (max(10 ms, 2 % of it))."""
    return max(0.010, delay * 0.02) if delay > 0 else 0.0


# Set by next_request() right before it returns a request: the engine starts the request's
# task at once, and a task starts with a copy of the context, so each request sees its own.
_turn: ContextVar[_Turn | None] = ContextVar("crawler_grant_turn", default=None)


class RemoteScheduler(Scheduler):
    """``Scheduler``'s surface over a shared frontier's gate. ``state`` is the crawl's, as the
    last grant said: "running", "stopping", "finished" or "stopped"."""

    def __init__(
        self,
        frontier: SharedFrontier,
        settings: Settings,
        flush: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(frontier, settings, flush, clock)
        self.shared = frontier
        self.state = RUNNING
        self.lease_calls = 0
        self.late_grants = 0  # grants started too late, handed back and granted again
        # Runs the start requests when the frontier makes this worker the seeder mid-crawl (its
        # seeder died before it was done); set by the engine.
        self.seed: Callable[[], Awaitable[None]] | None = None
        self.seeded = False
        # Lets this worker reach a start host even if private (the address guard's exempt_start);
        # set by the engine, called before a request there is handed out.
        self.exempt: Callable[[str], None] | None = None
        self._exempted = 0
        # each with when it was asked for and when the grant came
        self._granted: deque[tuple[Request, float, float]] = deque()
        self._pauses: dict[str, float] = {}  # Retry-After waits not sent to the gate yet
        self._limits: dict[str, tuple[int, float]] = {}  # robots.txt limits not sent yet
        self.reserve = min(RESERVE_MAX, settings.concurrency // 4)
        self._last_lease = -LEASE_GAP_S

    def __repr__(self) -> str:
        return (
            f"<RemoteScheduler state={self.state} active={self.active}/{self.settings.concurrency}"
            f" in_flight={self.in_flight} granted={len(self._granted)}"
            f" lease_calls={self.lease_calls} late_grants={self.late_grants}>"
        )

    async def start(self, dispatched_before: int = 0) -> None:
        self.dispatched = dispatched_before

    @property
    def budget_spent(self) -> bool:
        return False  # max_pages is the gate's, counted over every worker

    def _budget_left(self) -> bool:
        return True

    async def next_request(self) -> Request | None:
        """The next request the gate granted; None once the crawl is finished or stopping (or
        this worker stops). An idle worker commits what it holds, then asks again when the
        gate says something is due, or after ``IDLE_POLL_S``, or when a request of its own
        ends."""
        while not self.stopping:
            changed = self._changed
            if self._running() and self._granted and self._slots() > 0:
                return self._dispatch_granted()
            await self._send_host_changes()
            if self.state != RUNNING:
                if self.state in {STOPPING, STOPPED}:
                    self.stopping = True  # the crawl was stopped: this run ends "stopped"
                return None
            want, extra = self._wants()
            if want <= 0 and extra < max(1, self.reserve // 2):
                await self._wait(changed, IDLE_POLL_S)  # a request of its own ends first
                continue
            gap = self._last_lease + LEASE_GAP_S - self._clock()
            if gap > 0 and want < self.settings.concurrency // 2:
                await asyncio.sleep(gap)
                continue
            grant = await self._lease(want, extra)
            if self.shared.seeder and not self.seeded and self.seed is not None:
                self.seeded = True
                await self.seed()  # the seeder died before it was done: this worker seeds
            if grant.requests or grant.state != RUNNING:
                continue
            if want <= 0:  # no reserve to be had now: ask again once a slot frees
                await self._wait(changed, IDLE_POLL_S)
                continue
            if self.frontier.pending_writes:
                # Nothing to start: what this worker holds may be all the crawl has left.
                await self._flush()
                continue
            wake = IDLE_POLL_S
            if grant.wake_s is not None:
                wake = min(max(grant.wake_s, MIN_WAKE_S), IDLE_POLL_S)
            await self._wait(changed, wake)
        return None

    def _running(self) -> bool:
        """Whether the crawl runs, as the last call to the frontier said: a commit or a
        heartbeat since the last grant may have seen it stop, and then the reserve is not
        started (it goes back to the queue when this worker leaves)."""
        if self.state == RUNNING and self.shared.state != RUNNING:
            self.state = self.shared.state
        return self.state == RUNNING

    async def _lease(self, want: int, extra: int = 0) -> Grant:
        asked = self._clock()
        grant = await self.shared.lease_ready(want, extra)
        got = self._last_lease = self._clock()
        self.lease_calls += 1
        self.state = grant.state
        starts = self.shared.start_hosts
        if self.exempt is not None and len(starts) > self._exempted:
            for url in starts:
                self.exempt(url)
            self._exempted = len(starts)
        self._granted.extend((request, asked, got) for request in grant.requests)
        return grant

    def _slots(self) -> int:
        """Global slots free now."""
        return min(self.settings.concurrency - self.active, self.max_in_flight - self.in_flight)

    def _wants(self) -> tuple[int, int]:
        """(requests to start now beyond those held, grants wanted for the reserve)."""
        need = self._slots() - len(self._granted)
        return max(0, need), max(0, self.reserve - max(0, -need))

    async def _wait(self, changed: asyncio.Event, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=seconds)

    def _dispatch_granted(self) -> Request:
        request, asked, got = self._granted.popleft()
        self.active += 1
        self.in_flight += 1
        self.dispatched += 1
        _turn.set(_Turn(request, request.host, asked, got))
        return request

    def release(self, request: Request) -> None:
        """The attempt is over: the gate frees its host slot (with the next call), and this
        worker its global slot."""
        self.shared.attempt_ended(request)
        self.active -= 1
        self.wake()

    async def turn(self, url: str) -> None:
        """A hop of a dispatched attempt goes to ``url``'s host: the grant's own turn at once;
        any later hop after the host's delay, pushing the cluster's next start on that host
        (see the module's docstring)."""
        host = host_of(url)
        slot = self.slot(host)
        grant = _turn.get()
        if grant is not None and not grant.used and grant.host == host:
            grant.used = True
            now = self._clock()
            if slot.delay > 0:
                # Granted longer ago than the gate's guard (this process was busy): starting
                # now could come less than a delay before the host's next grant elsewhere.
                late = now - grant.asked > guard_s(slot.delay)
            else:  # a grant that waited (the reserve's), or on a host paused since (Retry-After)
                late = now - grant.got > RESERVE_AGE_S or slot.next_start > now
            if late:
                await self._retake(grant.request)
            slot.sent(self._clock())
            return
        await self._send_host_changes()  # robots.txt's limits and record, for the others
        await super().turn(url)
        if slot.delay > 0:
            await self.shared.pause_host(host, slot.delay + guard_s(slot.delay))

    async def _retake(self, request: Request) -> None:
        """Give a late grant's slot back and wait for the gate to grant it again, spaced from
        now, lending the global slot meanwhile. Raises CrawlStopped if this worker stops."""
        self.late_grants += 1
        await self._send_host_changes()  # a pause this worker saw, before the gate decides
        retake = True  # the first call gives the slot back; the next ones only ask for it
        lent = False
        try:
            while not self.stopping:
                try:
                    wait = await self.shared.reacquire(request, retake=retake)
                except LeaseLost:
                    raise CrawlStopped(request.url) from None
                if wait <= 0:
                    return
                retake = False
                if not lent:  # told to wait (a delay, a pause): other hosts use the slot
                    lent = True
                    self.active -= 1
                    self.wake()
                await self._wait(self._changed, wait)
            raise CrawlStopped(request.url)
        finally:
            if lent:
                self.active += 1  # taken back, as a turn's wait takes it (Scheduler.turn)

    def configure_host(self, host: str, crawl_delay: float | None) -> None:
        """robots.txt's limits for the host, here and (sent with the next call) at the gate,
        where the largest delay any worker saw wins."""
        super().configure_host(host, crawl_delay)
        delay = max(self.settings.download_delay, crawl_delay or 0.0)
        concurrency = 1 if delay > 0 else self.settings.per_host_concurrency
        self._limits[host] = (concurrency, delay)

    def pause_host(self, host: str, seconds: float) -> None:
        """Retry-After: the host waits ``seconds`` for every worker (sent before the retry)."""
        super().pause_host(host, seconds)
        self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))

    async def _send_host_changes(self) -> None:
        while self._limits:
            host, (concurrency, delay) = self._limits.popitem()
            await self.shared.configure_host(host, concurrency, delay)
        while self._pauses:
            host, seconds = self._pauses.popitem()
            await self.shared.pause_host(host, seconds)

    async def reacquire(self, request: Request, delay: float) -> None:
        """Wait ``delay`` seconds, then until the gate gives the request's host slot back (a
        retry's attempt). Raises CrawlStopped if this worker stops meanwhile (the request is
        left leased, and its lease comes back to the crawl), or if its lease was lost (this
        worker stalled: another one holds the request now)."""
        await self._send_host_changes()
        start = self._clock() + delay
        while not self.stopping:
            changed = self._changed
            now = self._clock()
            if start <= now and self.active < self.settings.concurrency:
                asked = self._clock()
                try:
                    wait = await self.shared.reacquire(request)
                except LeaseLost:
                    raise CrawlStopped(request.url) from None  # its new holder completes it
                if wait <= 0:
                    self.active += 1
                    _turn.set(_Turn(request, request.host, asked, self._clock()))
                    return
                start = self._clock() + wait
                continue
            await self._wait(changed, start - now if start > now else None)
        raise CrawlStopped(request.url)
