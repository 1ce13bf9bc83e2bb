"""The Redis frontier's committed state, read back: the item log a feed exporter tails, feed
checkpoints, robots.txt records, ``spider.state``, the crawl's status and counts, and the run
log (one record per worker). A mixin of ``RedisFrontier``, which makes the calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from crawler import jsondata
from crawler.errors import CrawlGone, StateError
from crawler.frontier import Counts, RobotsRecord
from crawler.frontier import redis_codec as codec
from crawler.runs import Run, RunOutcome, Trigger, iso, parse_time
from crawler.settings import Settings

log = logging.getLogger("crawler.frontier.redis")  # RedisFrontier's: the mixin speaks for it

# The frontier's exact counters, listed even while 0 (a key Redis has not made yet).
COUNTS = ("done", "failed", "skipped", "items", "refused", "reclaimed")


class RedisLog:
    """What ``RedisFrontier`` reads back; it provides the calls below."""

    keys: list[str]
    crawl_id: str
    settings: Settings
    state: str
    worker_id: str
    created_ms: bytes  # the joined crawl's creation time (b"": not joined): its identity
    start_hosts: set[str]
    starts_size: int

    def __repr__(self) -> str:
        return f"<RedisLog crawl={self.crawl_id!r}>"

    def _now(self) -> str:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        raise NotImplementedError

    def gone(self) -> CrawlGone:
        """The error of a worker whose crawl's keys were deleted under it."""
        return CrawlGone(
            f"crawl {self.crawl_id!r} at {self._where} is gone: its keys were deleted while it ran"
        )

    async def _read(self, command: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _fcall(self, name: str, *args: Any, patience: float = 0.0) -> Any:
        raise NotImplementedError

    async def weak_durability(self) -> list[str]:
        """What in the server's configuration weakens exactly-once across a Redis crash (the
        README asks for ``appendonly yes``, ``appendfsync always``, ``maxmemory-policy
        noeviction``); empty when all is so, or when the server does not allow CONFIG."""
        try:
            found = await self._read("config_get", "appendonly", "appendfsync", "maxmemory-policy")
        except StateError:
            return []
        config = {_text(key): _text(value) for key, value in dict(found).items()}
        wanted = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
        return [
            f"{name} {config[name]}"
            for name, value in wanted.items()
            if name in config and config[name] != value
        ]

    async def say_what_holds(self) -> None:
        """At join, warn when this worker's crawl settings are not those the crawl was created
        with (the gate keeps the first max_pages, and each host the limits it was first given),
        and when the crawl is finished already: a new crawl id is a new crawl."""
        fields = [field for _, field in codec.CRAWL_SETTINGS]
        created = await self._read("hmget", self.keys[0], *fields)
        theirs, ours = codec.ignored_settings(created, codec.crawl_settings(self.settings))
        if theirs:
            log.warning(
                "crawl %r was created with %s, and this worker has %s: give every worker of a"
                " crawl the same values (the crawl keeps its max_pages, and a host the limits"
                " it was first given); a new --crawl-id starts a crawl with new values",
                self.crawl_id, theirs, ours,
            )  # fmt: skip
        if self.state == "finished":
            log.warning(
                "crawl %r is finished already: nothing to do (a shared crawl is not crawled"
                " again; a new --crawl-id starts a new one)",
                self.crawl_id,
            )

    async def read_start_hosts(self) -> None:
        """The seeds' origins the seeder committed (``start_hosts``): a worker that did not seed
        may reach them too, private or not, as the seeder may."""
        data: bytes = await self._read("hget", self.keys[0], "starts") or b"[]"
        self.start_hosts.update(jsondata.loads(data))
        self.starts_size = len(data)

    async def spider_state(self) -> bytes | None:
        data: bytes | None = await self._read("hget", self.keys[0], "spider_state")
        return data

    async def robots(self, host: str) -> RobotsRecord | None:
        data = await self._read("hget", self.keys[12], host)
        return None if data is None else codec.decode_robots(data)

    async def feed(self, path: str) -> tuple[int, int] | None:
        data = await self._read("hget", self.keys[13], path)
        if data is None:
            return None
        last, offset = data.split(b",")
        return int(last), int(offset)

    async def trimmed(self) -> tuple[int, list[str]]:
        fields = await self._read("hgetall", self.keys[13])
        feeds = sorted(key.decode() for key in fields if not key.startswith(b"@"))
        return int(fields.get(b"@trimmed", 0)), feeds

    async def items_after(self, item_id: int) -> AsyncIterator[tuple[int, bytes]]:
        while entries := await self._read("xrange", self.keys[9], f"({item_id}-0", "+", 1000):
            for entry_id, entry in entries:
                item_id = int(entry_id.split(b"-")[0])
                yield item_id, entry[b"d"]

    async def status(self) -> dict[str, Any]:
        """The crawl as Redis has it: state, queued, leased, seen, items, live workers, its
        wall time (``elapsed_s``: from the first join to its end, or to now while it runs), the
        frontier's exact counts and the workers' committed stats summed. The stats' gauges
        (``queued``, ``elapsed_s``) are Redis's own figures: a sum of each worker's means
        nothing. Raises CrawlGone, once this worker joined, if the crawl's keys were deleted."""
        reply = await self._read(
            "fcall_ro", "crawler_status", len(self.keys), *self.keys, self._now()
        )
        spider, state, queued, leased, seen, workers, items, counts, stats, elapsed, created = reply
        if self.created_ms and created != self.created_ms:
            raise self.gone()
        summed = codec.nested_stats(
            (k.decode(), v.decode()) for k, v in zip(stats[::2], stats[1::2], strict=True)
        )
        elapsed_s = elapsed / 1000
        return {
            "crawl_id": self.crawl_id, "spider": spider.decode(), "state": state.decode(),
            "queued": queued, "leased": leased, "seen": seen, "items": items,
            "workers": workers, "elapsed_s": elapsed_s,
            "counts": dict.fromkeys(COUNTS, 0) | _pairs(counts),
            "stats": summed | {"queued": queued, "elapsed_s": elapsed_s},
        }  # fmt: skip

    async def counts(self) -> Counts:
        status = await self.status()
        counts = status["counts"]
        return Counts(
            queued=status["queued"] + status["leased"],
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            items=counts.get("items", 0),
            last_item=status["items"],
        )

    # -- the run log: one record per worker ---------------------------------------------------

    async def runs(self) -> list[Run]:
        fields = await self._read("hgetall", self.keys[0])
        records = [jsondata.loads(v) for k, v in fields.items() if k.startswith(b"run:")]
        records.sort(key=lambda r: r[1] or "")
        return [_run(i, record) for i, record in enumerate(records, 1)]

    async def last_run(self) -> Run | None:
        runs = await self.runs()
        return runs[-1] if runs else None

    async def start_run(self, run: Run) -> Run:
        run.id = 1
        await self._put_run(run)
        return run

    async def resume_run(self, run: Run) -> Run:
        run.outcome, run.finished_at, run.exit_code = RunOutcome.RUNNING, None, None
        await self._put_run(run)
        return run

    async def finish_run(self, run: Run, stats: dict[str, Any] | None) -> None:
        if stats is not None:
            run.stats = stats
        await self._put_run(run)

    async def _put_run(self, run: Run) -> None:
        record = [
            str(run.trigger), iso(run.started_at), iso(run.scheduled_for),
            iso(run.finished_at), str(run.outcome), run.exit_code, run.resumes, run.stats,
        ]  # fmt: skip
        await self._fcall("put", self._now(), f"run:{self.worker_id}", jsondata.dumps(record))


def _pairs(flat: list[bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def _run(run_id: int, record: list[Any]) -> Run:
    trigger, started, scheduled, finished, outcome, exit_code, resumes, stats = record
    return Run(
        run_id, Trigger(trigger), parse_time(started), parse_time(scheduled),
        parse_time(finished), RunOutcome(outcome), exit_code, resumes, stats,
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
