"""The checkpoint: what one commit of the crawl holds, and in what order. The stats and
``spider.state`` (snapshotted while no spider code is half-way), then the buffered outcomes,
items and links in one transaction, then the feed up to the committed items."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crawler.exporters import FeedExporter, feed_key
from crawler.frontier import Flushed, Frontier
from crawler.spider_state import SpiderState
from crawler.stats import Stats


class Checkpoint:
    """``await checkpoint.commit()``; one commit at a time."""

    def __init__(
        self,
        frontier: Frontier,
        stats: Stats,
        state: SpiderState,
        *,
        exporter: FeedExporter | None,
        requests_sent: Callable[[], int],
        hosts_added: Callable[[set[str]], None],
    ) -> None:
        self.frontier = frontier
        self.stats = stats
        self.state = state
        self.exporter = exporter
        self._requests_sent = requests_sent
        self._hosts_added = hosts_added
        self._requests_before = stats.requests_total
        self._lock = asyncio.Lock()
        self.last = time.monotonic()
        self.commits = 0  # begun, in order; a commit is numbered when it holds the lock
        self._covered = 0  # the number of the last commit that succeeded

    def __repr__(self) -> str:
        return f"<Checkpoint commits={self.commits} {self.state!r}>"

    @property
    def busy(self) -> bool:
        """Whether a commit is under way (or waited for)."""
        return self._lock.locked()

    async def commit(self) -> Flushed:
        """Commit what is buffered, then append the committed items to the feed; returns what
        the frontier committed (nothing, for a call that shared the commit of another).

        Calls that come while a commit runs share the next one: it begins after they were made,
        so it takes all they buffered. (One commit each made a queue of thousands of empty
        commits, and of tasks waiting for them, once commits took longer on a large frontier.)
        """
        wanted = self.commits + 1
        async with self._lock:
            if self._covered >= wanted:
                return Flushed()
            self.commits += 1
            number = self.commits
            self.last = time.monotonic()
            self.stats.requests_total = self._requests_before + self._requests_sent()
            self.frontier.save_stats(self.stats.to_dict())
            if self.state.in_use:
                async with self.state.gate.quiet():
                    if (snapshot := self.state.snapshot()) is not None:
                        self.frontier.save_spider_state(snapshot)
            # The spider code quiet() held back runs from this task's next await, which comes
            # after the frontier took its buffers: its outcomes and changes go to the next commit.
            flushed = await self.frontier.flush()
            self.stats.duplicates_filtered += flushed.duplicates
            self.stats.queued += flushed.added
            if flushed.added:
                self._hosts_added(flushed.hosts)
            if self.exporter is not None and flushed.items:
                self.exporter.write(flushed.items)
                last, offset = await self.exporter.sync()
                self.frontier.save_feed(feed_key(self.exporter.path), last, offset)
            self._covered = number
            return flushed
