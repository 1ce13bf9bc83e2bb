"""The frontier: the queue of requests to fetch, the seen set, and the rest of a crawl's state.

``Frontier`` is what every backend implements; nothing above it speaks SQL or Redis. It is
made of the parts that differ between backends: ``RequestQueue`` (requests handed out under
leases that expire), ``Commit`` (outcomes, items and new links, landing together), ``HostStore``
(robots.txt per host), ``ItemLog`` (the committed items a feed exporter tails) and ``RunLog``.
``SqliteFrontier`` (aiosqlite) is the embedded default; ``RedisFrontier`` is shared by many
workers (``shared = True``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from crawler.freshness import Change, History, Revisit
from crawler.request import Request
from crawler.runs import Run


class RequestState(enum.IntEnum):
    QUEUED = 0
    IN_FLIGHT = 1
    DONE = 2
    FAILED = 3
    SKIPPED = 4


@dataclass(slots=True)
class Outcome:
    """What became of one request: committed in the same transaction as its items and the
    requests added while it was processed."""

    request: Request
    state: RequestState
    status: int | None = None
    error: str | None = None
    items: list[bytes] = field(default_factory=list)
    history: History | None = None  # the fetch's validators and signature, to keep
    change: Change | None = None  # what the fetch found; None when nothing was fetched


@dataclass(slots=True)
class Flushed:
    """What one flush committed."""

    added: int = 0
    duplicates: int = 0
    requeued: int = 0  # done requests queued again (a recrawl's due pages and seeds)
    hosts: set[str] = field(default_factory=set)
    items: list[tuple[int, bytes]] = field(default_factory=list)
    refused: int = 0  # outcomes a shared frontier refused: their leases had expired


@dataclass(slots=True)
class RobotsRecord:
    status: int
    body: bytes
    fetched_at: float


@dataclass(slots=True)
class Counts:
    queued: int = 0
    done: int = 0
    failed: int = 0
    items: int = 0
    last_item: int = 0  # the highest item id


@dataclass(slots=True)
class Grant:
    """What a shared frontier's ``lease_ready`` hands out: requests that may start now."""

    state: str  # "running" | "stopping" | "finished" | "stopped"
    requests: list[Request]  # each may start NOW: its host slot is already taken
    wake_s: float | None  # ask again at the latest after this many seconds; None: nothing due


class RequestQueue(Protocol):
    """The requests to fetch. A leased request belongs to its holder until its outcome is
    committed, or until the lease expires and the request is queued again."""

    async def open(self, spider_name: str) -> dict[str, Any]:
        """Open (creating or resuming), bringing back the requests whose lease expired.
        Returns the stats a state from before run records kept (else {}): the counters of its
        only run. In SQLite every in-flight row is expired: the state lock (crawler/lock.py)
        guarantees that the run that leased it is gone."""

    async def close(self) -> None: ...

    @property
    def finished(self) -> bool:
        """Whether the state held a finished crawl when it was opened: nothing queued or in
        flight, something done. Running it again is a recrawl."""

    async def requeue_failed(self, permanent: Collection[int]) -> int:
        """Queue the failed requests again, but those whose status is in ``permanent``;
        returns how many. One transaction; nothing else is buffered meanwhile (call it right
        after ``open``)."""

    def requeue_due(self, now: float, policy: Revisit) -> None:
        """At the next flush, in its transaction, queue again every done request whose revisit
        is due at ``now`` (unix seconds); ``Flushed.requeued`` counts them and the seeds."""

    async def lease(self, host: str, limit: int) -> list[Request]:
        """Up to ``limit`` queued requests of one host, best priority first, leased."""

    async def queued_hosts(self) -> set[str]: ...

    async def counts(self) -> Counts: ...


class Commit(Protocol):
    """Buffered writes, committed together by ``flush``: a request's outcome, its items and
    its new links land in one transaction or not at all."""

    def add(self, requests: Sequence[Request], *, parent: Request | None = None) -> int:
        """Buffer new requests; returns how many were dropped at once as seen duplicates.
        ``parent``: the request whose callback found them; a shared frontier commits them with
        its outcome, and drops them with it when its lease was lost."""

    def requeue(self, requests: Sequence[Request]) -> None:
        """Buffer requests as ``add`` does, and queue again those already done (a recrawl's
        start requests)."""

    def complete(self, outcome: Outcome) -> None: ...

    def save_stats(self, stats: dict[str, Any]) -> None:
        """Buffer the current run's stats (see ``start_run``), committed by the next flush."""

    def save_spider_state(self, data: bytes) -> None:
        """Buffer ``spider.state`` (JSON) to be committed by the next flush."""

    @property
    def pending_writes(self) -> int: ...

    @property
    def pending_hosts(self) -> set[str]:
        """Hosts of the new requests buffered since the last flush."""

    async def flush(self) -> Flushed:
        """Commit what is buffered. The buffers are taken before the first await: what is
        buffered once ``flush()`` was entered belongs to the next one (the engine relies on it
        to commit ``spider.state`` with exactly the outcomes whose changes it holds)."""

    async def spider_state(self) -> bytes | None:
        """The last committed ``spider.state`` (JSON), or None."""

    async def last_items(self, request_id: int) -> list[bytes]:
        """The items the request's last callback emitted (for ``on_unchanged = "reemit"``)."""


class HostStore(Protocol):
    """What is known of each host: its robots.txt."""

    def save_robots(self, host: str, record: RobotsRecord) -> None: ...

    async def robots(self, host: str) -> RobotsRecord | None: ...


class ItemLog(Protocol):
    """The committed items in commit order, with integer ids, and each feed's checkpoint: a
    feed exporter appends ``items_after(last)`` and saves (last id, byte offset)."""

    def items_after(self, item_id: int) -> AsyncIterator[tuple[int, bytes]]: ...

    async def feed(self, path: str) -> tuple[int, int] | None:
        """(last exported item id, byte offset) of a feed file; None for a feed this state has
        never written."""

    def save_feed(self, path: str, last_item: int, offset: int) -> None: ...

    async def trimmed(self) -> tuple[int, list[str]]:
        """The last item that has left the log (0: none), as every feed had written it, and
        those feeds: a feed that needs an item up to it cannot be written from here."""


class RunLog(Protocol):
    """The runs of the crawl, with their outcome and stats."""

    async def last_run(self) -> Run | None: ...

    async def runs(self) -> list[Run]:
        """Every run recorded, oldest first."""

    async def start_run(self, run: Run) -> Run:
        """Record a new run and give it its id; ``save_stats`` then writes its stats."""

    async def resume_run(self, run: Run) -> Run:
        """Mark an unfinished run running again; ``save_stats`` then writes its stats."""

    async def finish_run(self, run: Run, stats: dict[str, Any] | None) -> None:
        """Record the run's outcome, exit code and end, and its final stats unless None."""


class Frontier(RequestQueue, Commit, HostStore, ItemLog, RunLog, Protocol):
    """A crawl's persistent state: every part above. ``shared``: whether other worker
    processes use the same frontier at once (then it also has ``lease_ready`` and the rest of
    ``RedisFrontier``'s surface)."""

    shared: ClassVar[bool]
