"""The Redis frontier's buffered writes: what the next ``crawler_commit`` sends. New links wait
with their parent until its outcome is complete, so that they are fenced by its lease."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crawler import jsondata
from crawler.dedup import SEEN_URLS, RecentSet, SeenSet
from crawler.frontier import Outcome, RobotsRecord
from crawler.frontier import redis_codec as codec
from crawler.request import Request

# Fingerprints of links a commit of this worker's got accepted, to skip sending most duplicates.
# Only accepted ones: a link of an outcome still buffered may yet be refused with it (its lease
# lost), and a copy of that link dropped meanwhile from another page would be lost for good.
RECENT = 65_536


class CommitBuffer:
    """A mixin of ``RedisFrontier``: ``add``, ``complete`` and the ``save_*`` of the Frontier
    protocol; ``flush`` takes ``_batch``."""

    def __init__(self) -> None:
        self.pending_hosts: set[str] = set()
        self._batch = codec.Batch()
        # links of a running callback, by its Request object: a request granted again while an
        # older grant's callback still runs is another object, with links of its own
        self._children: dict[int, list[Request]] = {}
        self._recent = RecentSet(RECENT)
        # The same links by url_key(), for admission: it drops their repeats before any work.
        self.committed = SeenSet(SEEN_URLS)
        self._sent_stats: dict[str, float] = {}
        # request id -> (the Request granted, its grant number): a request Redis took back and
        # granted again is a new Request object, and only that one's calls name the new grant
        self._grants: dict[int, tuple[Request, str]] = {}
        self.start_hosts: set[str] = set()  # the seeds' origins: see RedisLog.read_start_hosts
        self.starts_size = 0  # how long meta starts was when last read

    def __repr__(self) -> str:
        return f"<CommitBuffer pending={self.pending_writes}>"

    def add(self, requests: Sequence[Request], *, parent: Request | None = None) -> int:
        duplicates = 0
        fresh = []
        for request in requests:
            if not request.dont_filter and request.fingerprint in self._recent:
                duplicates += 1
                continue
            fresh.append(request)
            self.pending_hosts.add(request.host)
        if parent is not None and parent.id is not None:
            self._children.setdefault(id(parent), []).extend(fresh)
        else:
            self._batch.seeds.extend(fresh)
            self._share_start_hosts(requests)
        return duplicates

    def _share_start_hosts(self, seeds: Sequence[Request]) -> None:
        """The seeds' origins go in the commit that adds the seeds (duplicates too: a resumed
        crawl's), so a worker granted a request on one has them in the same reply."""
        origins = {codec.origin(seed.url) for seed in seeds} - self.start_hosts
        if origins:
            self.start_hosts |= origins
            self._batch.meta["starts"] = jsondata.dumps(sorted(self.start_hosts))

    def requeue(self, requests: Sequence[Request]) -> None:
        self.add(requests)

    def complete(self, outcome: Outcome) -> None:
        assert outcome.request.id is not None
        children = self._children.pop(id(outcome.request), [])
        grant = self._grant_of(outcome.request)
        if grant is not None:
            del self._grants[outcome.request.id]
        self._batch.outcomes.append((outcome, children, grant or "0"))
        self._batch.size += 1 + len(children)

    def _grant_of(self, request: Request) -> str | None:
        """The grant number of this very Request object; None for a stale one."""
        assert request.id is not None
        entry = self._grants.get(request.id)
        return entry[1] if entry is not None and entry[0] is request else None

    def save_robots(self, host: str, record: RobotsRecord) -> None:
        self._batch.robots[host] = codec.encode_robots(record)

    def save_stats(self, stats: dict[str, Any]) -> None:
        for name, value in codec.flat_stats(stats):
            if name in codec.COUNTED_BY_COMMIT:
                continue
            delta = value - self._sent_stats.get(name, 0)
            if delta:
                self._batch.stats[name] = self._batch.stats.get(name, 0) + delta
            self._sent_stats[name] = value

    def save_feed(self, path: str, last_item: int, offset: int) -> None:
        self._batch.feeds[path] = f"{last_item},{offset}".encode()

    def save_spider_state(self, data: bytes) -> None:
        self._batch.meta["spider_state"] = data

    @property
    def pending_writes(self) -> int:
        return self._batch.size + len(self._batch.seeds)
