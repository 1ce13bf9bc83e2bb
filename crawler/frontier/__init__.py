"""The frontier: the queue of requests to fetch, the seen set, and the rest of a crawl's state.

``Frontier`` is the protocol every backend implements; nothing above it speaks SQL.
``SqliteFrontier`` (aiosqlite) is the embedded default.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from crawler.freshness import Change, History, Revisit
from crawler.request import Request


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


class Frontier(Protocol):
    """A crawl's persistent state. Writes are buffered and committed together by ``flush``,
    so a request's outcome, its items and its new links land in one transaction or not at all."""

    async def open(self, spider_name: str) -> dict[str, Any]:
        """Open (creating or resuming) and return the saved stats; in-flight work is re-queued."""

    async def close(self) -> None: ...

    @property
    def finished(self) -> bool:
        """Whether the state held a finished crawl when it was opened: nothing queued or in
        flight, something done. Running it again is a recrawl."""

    def requeue(self, requests: Sequence[Request]) -> None:
        """Buffer requests as ``add`` does, and queue again those already done (a recrawl's
        start requests)."""

    def requeue_due(self, now: float, policy: Revisit) -> None:
        """At the next flush, in its transaction, queue again every done request whose revisit
        is due at ``now`` (unix seconds); ``Flushed.requeued`` counts them and the seeds."""

    async def last_items(self, request_id: int) -> list[bytes]:
        """The items the request's last callback emitted (for ``on_unchanged = "reemit"``)."""

    def add(self, requests: Sequence[Request]) -> int:
        """Buffer new requests; returns how many were dropped at once as seen duplicates."""

    def complete(self, outcome: Outcome) -> None: ...

    def save_robots(self, host: str, record: RobotsRecord) -> None: ...

    def save_stats(self, stats: dict[str, Any]) -> None: ...

    def save_feed(self, path: str, last_item: int, offset: int) -> None: ...

    @property
    def pending_writes(self) -> int: ...

    @property
    def pending_hosts(self) -> set[str]:
        """Hosts of the new requests buffered since the last flush."""

    async def flush(self) -> Flushed: ...

    async def lease(self, host: str, limit: int) -> list[Request]:
        """Up to ``limit`` queued requests of one host, best priority first, marked in flight."""

    async def queued_hosts(self) -> set[str]: ...

    async def robots(self, host: str) -> RobotsRecord | None: ...

    async def feed(self, path: str) -> tuple[int, int]:
        """(last exported item id, byte offset) of a feed file; (0, 0) for a new feed."""

    def items_after(self, item_id: int) -> AsyncIterator[tuple[int, bytes]]: ...

    async def counts(self) -> Counts: ...
