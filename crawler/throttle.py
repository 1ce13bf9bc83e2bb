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
    delay: float  # between request starts: download_delay or Crawl-delay, or autothrottle's pace
    rest: float = 0.0  # download_delay or Crawl-delay: counted from each answer too
    active: int = 0
    next_start: float = 0.0
    last_sent: float | None = None
    last_landed: float | None = None  # when an answer last came in, one request at a time
    waiters: int = 0  # attempts waiting to take a slot here (a retry, a redirect hop): first
    queue: list[tuple[int, int, Request]] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (
            f"<HostSlot {self.host} active={self.active}/{self.concurrency} delay={self.delay}"
            f" buffered={len(self.queue)} next_start={self.next_start:.3f}>"
        )

    def configure(self, concurrency: int, delay: float) -> None:
        """New limits (robots.txt's, autothrottle's pace): the delay counts from the last
        request, robots.txt's, and ``rest`` from its answer."""
        self.concurrency = concurrency
        self.delay = delay
        if self.last_sent is not None:
            self.next_start = max(self.next_start, self.last_sent + delay)
        if self.last_landed is not None:
            self.next_start = max(self.next_start, self.last_landed + self.rest)

    def push(self, request: Request) -> None:
        heapq.heappush(self.queue, (-request.priority, next(_order), request))

    def has_room(self) -> bool:
        return self.active < self.concurrency

    def ready_at(self, now: float) -> float | None:
        """When a new request of this host may start; None if there is none or no room."""
        if not self.queue or self.waiters or not self.has_room():
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
        not between dispatches; ``landed`` counts the rest from each answer too."""
        self.last_sent = now
        self.next_start = max(self.next_start, now + self.delay)

    def landed(self, now: float) -> None:
        """A request's answer came in (or it failed): on a host served one request at a time,
        the next may start ``rest`` after this too. So a host with a delay rests it in full
        between serving one request and the next, as Nutch and Heritrix count it: time in
        transit or in a busy event loop never shortens it. Autothrottle's own pace stays a pace
        between starts (its delay tends to latency over the requests it wants in flight)."""
        if self.concurrency == 1:
            self.last_landed = now
            self.next_start = max(self.next_start, now + self.rest)

    def finish(self) -> None:
        self.active -= 1

    def pause_until(self, when: float) -> None:
        """Hold every request of this host back until ``when`` (Retry-After, rate limits)."""
        self.next_start = max(self.next_start, when)
