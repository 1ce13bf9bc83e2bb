"""Politeness per host: how many requests may be in flight, and when the next may start."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from crawler.request import Request

_order = itertools.count()


@dataclass
class HostSlot:
    """One host's politeness state and its buffer of leased requests (best priority first).

    A slot starts at concurrency 1 while the host's robots.txt (and so its Crawl-delay) is not
    known yet; ``configure`` sets the real limits.
    """

    host: str
    concurrency: int
    delay: float
    active: int = 0
    next_start: float = 0.0
    last_seen: float | None = None  # when a request here last went out or its answer came in
    retry_waiters: int = 0
    queue: list[tuple[int, int, Request]] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (
            f"<HostSlot {self.host} active={self.active}/{self.concurrency} delay={self.delay}"
            f" buffered={len(self.queue)} next_start={self.next_start:.3f}>"
        )

    def configure(self, concurrency: int, delay: float) -> None:
        self.concurrency = concurrency
        self.delay = delay
        if self.last_seen is not None:  # a new delay counts from the last request, robots.txt's
            self.next_start = max(self.next_start, self.last_seen + delay)

    def push(self, request: Request) -> None:
        heapq.heappush(self.queue, (-request.priority, next(_order), request))

    def has_room(self) -> bool:
        return self.active < self.concurrency

    def ready_at(self, now: float) -> float | None:
        """When a new request of this host may start; None if there is none or no room."""
        if not self.queue or self.retry_waiters or not self.has_room():
            return None
        return max(now, self.next_start)

    def start(self) -> None:
        self.active += 1

    def take(self) -> Request:
        self.start()
        return heapq.heappop(self.queue)[2]

    def sent(self, now: float) -> None:
        """A request went on the wire to this host: the next may start ``delay`` later.

        The delay is measured between real requests (robots.txt and redirect hops included),
        not between dispatches; ``landed`` counts it from each answer too."""
        self.last_seen = now
        self.next_start = max(self.next_start, now + self.delay)

    def landed(self, now: float) -> None:
        """A request's answer came in (or it failed): on a host served one request at a time,
        the next may start ``delay`` after this too. So the host rests a full delay between
        serving one request and the next, as Nutch and Heritrix count it: time in transit or in
        a busy event loop never shortens it. (Autothrottle's delay on a host it lets have more
        requests in flight is a pace between starts.)"""
        if self.concurrency == 1:
            self.sent(now)

    def finish(self) -> None:
        self.active -= 1

    def pause_until(self, when: float) -> None:
        """Hold every request of this host back until ``when`` (Retry-After, rate limits)."""
        self.next_start = max(self.next_start, when)
