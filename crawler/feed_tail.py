"""The exporter of a shared crawl: one process (the one run with ``-o``) appends every item any
worker committed to the feed, with the exporters' checkpoint-and-truncate contract, until the
crawl is finished or stopped.

Items reach the item log only with their request's fenced commit, so the feed gets each one
exactly once: it is cut back to its checkpoint on start and the items after it written again.
An item leaves the log once every feed of the crawl has written it (on Redis), so a feed that
needs an earlier item (a new one, ``-O``, a file cut short) is refused before it is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from crawler.errors import ConfigError
from crawler.exporters import FeedExporter, feed_key
from crawler.frontier import ItemLog

log = logging.getLogger("crawler.feed_tail")

POLL_S = 0.25
BATCH = 1000
ENDED = ("finished", "stopped")

CrawlState = Callable[[], Awaitable[str]]


async def check_feed(items: ItemLog, exporter: FeedExporter, *, overwrite: bool) -> None:
    """Refuse, with ConfigError and before the file is touched, a feed that needs items which
    have left the item log: a feed new to the crawl, or started anew (``-O``), gets every item
    from the first; a resumed one, those after its checkpoint (every item again, if the file
    is shorter than the checkpoint says)."""
    trimmed, feeds = await items.trimmed()
    if not trimmed:
        return
    checkpoint = None if overwrite else await items.feed(feed_key(exporter.path))
    if checkpoint is None:
        start, why = 0, ("-O starts it anew" if overwrite else "it is new to this crawl")
    else:
        start = exporter.resumes_after(*checkpoint)
        why = "the file is shorter than its checkpoint: cut or replaced"
    if start < trimmed:
        raise ConfigError(
            f"feed {exporter.path} needs the crawl's items from item {start + 1} ({why}), but"
            f" items 1-{trimmed} have left Redis, written by the crawl's feeds"
            f" ({', '.join('stdout' if feed == '-' else feed for feed in feeds)}): resume one"
            " of those with -o, or crawl again under a new"
            " --crawl-id"
        )


class FeedTail:
    """``await tail.open(overwrite)``, then ``await tail.run(until)``.

    ``state()`` reads the crawl's state; ``commit()`` commits the buffered feed checkpoint
    (the engine's flush when this process crawls too, so that commits never interleave).
    """

    def __init__(
        self,
        log_: ItemLog,
        exporter: FeedExporter,
        *,
        state: CrawlState,
        commit: Callable[[], Awaitable[object]],
        poll_s: float = POLL_S,
    ) -> None:
        self.items = log_
        self.exporter = exporter
        self.key = feed_key(exporter.path)
        self._state = state
        self._commit = commit
        self.poll_s = poll_s
        self.written = 0
        self.crawl_state = "running"

    def __repr__(self) -> str:
        return (
            f"<FeedTail {self.exporter.path} state={self.crawl_state}"
            f" last_item={self.exporter.last_item} written={self.written}>"
        )

    async def open(self, *, overwrite: bool) -> None:
        """Open the feed at its checkpoint. A feed this crawl never wrote gets every item of
        the crawl (workers may have committed some before the exporter joined): ``-O`` starts
        the file anew, ``-o`` appends after what it holds. The starting checkpoint is committed
        before an item is written."""
        checkpoint = None if overwrite else await self.items.feed(self.key)
        if checkpoint is not None:
            self.exporter.open(*checkpoint)
            return
        self.exporter.open(0, 0 if overwrite else None)
        self.items.save_feed(self.key, *await self.exporter.sync())
        await self._commit()

    async def catch_up(self) -> int:
        """Append the items committed after the feed's checkpoint; returns how many."""
        batch: list[tuple[int, bytes]] = []
        count = 0
        async for item in self.items.items_after(self.exporter.last_item):
            batch.append(item)
            if len(batch) >= BATCH:
                count += await self._write(batch)
                batch = []
        if batch:
            count += await self._write(batch)
        return count

    async def _write(self, batch: list[tuple[int, bytes]]) -> int:
        self.exporter.write(batch)
        self.items.save_feed(self.key, *await self.exporter.sync())
        await self._commit()
        self.written += len(batch)
        return len(batch)

    async def run(self, until: asyncio.Event) -> str:
        """Tail the item log until the crawl is finished or stopped, or ``until`` is set (this
        process stops); the items committed by then are in the feed. Returns the last state
        read."""
        while True:
            # The state is read before the items: a crawl that ended had committed all of its
            # items, so the catch-up after seeing it gets the last of them.
            self.crawl_state = await self._state()
            stopping = until.is_set()
            await self.catch_up()
            if self.crawl_state in ENDED or stopping:
                return self.crawl_state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=self.poll_s)
