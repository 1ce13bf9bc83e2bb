"""The shared frontier: one crawl's state in Redis, used by many worker processes at once.

The only module that imports redis (redis-py's asyncio client, hiredis parser). Every change
goes through the ``crawler_v1`` FUNCTION library in ``frontier.lua``; Redis server time is the
only clock. A Redis outage: each call retries with backoff for up to ``OUTAGE_S``, then raises
StateError; outcomes not yet committed then die with the worker, their leases expire, and other
workers redo them (nothing was committed, so nothing is duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from importlib import resources
from typing import Any, ClassVar

import redis.asyncio as aioredis
import redis.exceptions
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from crawler import jsondata
from crawler.dedup import RecentSet
from crawler.errors import LeaseLost, StateError
from crawler.freshness import Revisit
from crawler.frontier import Counts, Flushed, Grant, Outcome, RobotsRecord
from crawler.frontier import redis_codec as codec
from crawler.request import Request
from crawler.runs import Run, RunOutcome, Trigger, iso, parse_time
from crawler.settings import Settings

log = logging.getLogger("crawler.frontier.redis")

OUTAGE_S = 60.0  # how long a call rides out a Redis outage before the worker gives up
OPEN_PATIENCE_S = 3.0  # at start-up: an unreachable Redis is reported soon
ENDED_DELAY_S = 0.05  # ended attempts wait this long for a lease call to carry them
_RECENT = 65_536
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_LUA = resources.files("crawler.frontier").joinpath("frontier.lua").read_text(encoding="utf-8")
VERSION = hashlib.sha1(_LUA.encode(), usedforsecurity=False).hexdigest()[:12]
LIBRARY = _LUA.replace("@VERSION@", VERSION)


class RedisFrontier:
    """A crawl's state in Redis, shared by its workers. ``RedisFrontier(url, crawl_id,
    settings)``; ``await open(spider_name)``; ``lease_ready(want)`` hands out requests whose
    host may be hit now, ``flush()`` commits outcomes fenced by their leases."""

    shared: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        crawl_id: str,
        settings: Settings,
        *,
        clock_ms: Callable[[], int] | None = None,  # tests only: a clock in place of TIME
    ) -> None:
        self.url = codec.check_url(url)
        self.crawl_id = crawl_id
        self.keys = codec.keys(crawl_id)
        self.settings = settings
        self.worker_id = uuid.uuid4().hex
        self.seeder = False
        self.expired = False
        self.state = "new"
        self.finished = False  # a finished crawl is not recrawled: a new crawl id is
        self.pending_hosts: set[str] = set()
        self._clock_ms = clock_ms
        self._client: aioredis.Redis | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._ended: list[int] = []
        self._ended_soon = asyncio.Event()
        self._batch = codec.Batch()
        self._children: dict[int, list[Request]] = {}
        self._recent = RecentSet(_RECENT)
        self._sent_stats: dict[str, float] = {}
        self._batches = 0
        self._run_id: int | None = None

    def __repr__(self) -> str:
        return (
            f"<RedisFrontier {codec.redact(self.url)} crawl={self.crawl_id!r} worker="
            f"{self.worker_id[:8]} state={self.state} seeder={self.seeder}"
            f" expired={self.expired} pending={self.pending_writes}>"
        )

    # -- calls -----------------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StateError("the frontier is not open")
        return self._client

    def _now(self) -> str:
        return "" if self._clock_ms is None else str(self._clock_ms())

    async def _fcall(self, name: str, *args: Any, patience: float = OUTAGE_S) -> Any:
        return await self._retrying(
            lambda: self.client.fcall(f"crawler_{name}", len(self.keys), *self.keys, *args),
            patience,
        )

    async def _retrying(self, call: Callable[[], Any], patience: float = OUTAGE_S) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_OUTAGE),
                stop=stop_after_delay(patience),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                reraise=True,
            ):
                with attempt:
                    return await call()
        except _OUTAGE as exc:
            raise StateError(f"Redis at {self._where} unreachable: {self._clean(exc)}") from None
        except redis.exceptions.RedisError as exc:
            raise StateError(f"Redis at {self._where} failed: {self._clean(exc)}") from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    @property
    def _where(self) -> str:
        return codec.redact(self.url)

    def _clean(self, exc: BaseException) -> str:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        password = (
            self._client.connection_pool.connection_kwargs.get("password")
            if (self._client is not None)
            else None
        )
        return text.replace(password, "***") if password else text

    # -- joining and leaving ---------------------------------------------------------------

    async def open(self, spider_name: str) -> dict[str, Any]:
        """Join the crawl: load the function library if it is not this version, register this
        worker (a heartbeat keeps it alive), and claim seeding if nobody has it."""
        self._client = aioredis.Redis.from_url(
            self.url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            await self._load_library()
            settings = self.settings
            reply = await self._fcall(
                "join", self._now(), self.worker_id, _ms(settings.lease_ttl_s), spider_name,
                settings.per_host_concurrency, _ms(settings.download_delay),
                int(settings.obey_robots), settings.max_pages or 0, patience=OPEN_PATIENCE_S,
            )  # fmt: skip
        except BaseException:
            await self.close()
            raise
        if reply[0] == b"wrong_spider":
            await self.close()
            raise StateError(
                f"crawl {self.crawl_id!r} at {self._where} belongs to spider"
                f" {reply[1].decode()!r}, not {spider_name!r}"
            )
        self.state, self.seeder = reply[0].decode(), bool(reply[1])
        self._keeper = asyncio.create_task(self._keep(), name=f"heartbeat {self.worker_id[:8]}")
        return {}

    async def _load_library(self) -> None:
        try:
            loaded = await self._retrying(
                lambda: self.client.fcall_ro("crawler_version", 0), OPEN_PATIENCE_S
            )
        except StateError as error:
            if "Function not found" not in str(error):
                raise
            loaded = None
        if loaded != VERSION.encode():
            await self._retrying(
                lambda: self.client.function_load(LIBRARY, replace=True), OPEN_PATIENCE_S
            )

    async def _keep(self) -> None:
        """Heartbeats, and ended attempts no lease call carried within ENDED_DELAY_S."""
        interval = self.settings.heartbeat_s
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, beat_at - loop.time())):
                    await self._ended_soon.wait()
            try:
                if self._ended:
                    await asyncio.sleep(ENDED_DELAY_S)
                    if self._ended:
                        await self.lease_ready(0)
                if loop.time() >= beat_at:
                    beat_at = loop.time() + interval
                    await self._heartbeat()
            except StateError as error:
                log.error("heartbeat: %s", error)  # the next call tries again
            self._ended_soon.clear()

    async def _heartbeat(self) -> None:
        reply = await self._fcall(
            "heartbeat", self._now(), self.worker_id, _ms(self.settings.lease_ttl_s)
        )
        self.state = reply[0].decode()
        if reply[1] and not self.expired:
            self.expired = True
            log.warning("worker %s expired: its leases may be others' now", self.worker_id[:8])

    async def seeding_done(self) -> None:
        self.state = (await self._fcall("seeding_done", self._now(), self.worker_id)).decode()

    async def stop_crawl(self) -> None:
        self.state = (await self._fcall("stop", self._now())).decode()

    async def close(self) -> None:
        """Leave: this worker's leases are queued again at once, for the others."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._client is None:
            return
        try:
            if self.state != "new":
                await self._fcall("leave", self._now(), self.worker_id, patience=OPEN_PATIENCE_S)
        except StateError as error:
            log.warning("leaving the crawl: %s", error)
        finally:
            client, self._client = self._client, None
            await client.aclose()

    # -- the gate ----------------------------------------------------------------------------

    async def lease_ready(self, want: int) -> Grant:
        """Up to ``want`` requests that may start now; their host slots are taken."""
        return await self._lease(want, "")

    async def _lease(self, want: int, host: str) -> Grant:
        ended, self._ended = self._ended, []
        reply = await self._fcall("lease", self._now(), self.worker_id, want, host, *ended)
        self.state = reply[0].decode()
        wake = int(reply[1])
        requests = [codec.decode_request(reply[i], reply[i + 1]) for i in range(2, len(reply), 2)]
        return Grant(self.state, requests, None if wake < 0 else wake / 1000)

    def attempt_ended(self, request: Request) -> None:
        assert request.id is not None
        self._ended.append(request.id)
        self._ended_soon.set()

    async def reacquire(self, request: Request) -> float:
        """0.0: the request's host slot is taken now; else seconds to wait, then ask again.
        Raises LeaseLost when another worker holds the request now."""
        reply = int(await self._fcall("reacquire", self._now(), self.worker_id, request.id))
        if reply < 0:
            raise LeaseLost(f"the lease on {request.url} expired")
        return reply / 1000

    async def pause_host(self, host: str, seconds: float) -> None:
        await self._fcall("pause_host", self._now(), host, _ms(seconds))

    async def configure_host(self, host: str, concurrency: int, delay_s: float) -> None:
        """Robots.txt's limits for the host, for every worker; the robots.txt record buffered
        for it goes along, before any other worker may hit the host with more than one slot."""
        record = self._batch.robots.pop(host, b"")
        await self._fcall("configure_host", self._now(), host, concurrency, _ms(delay_s), record)

    async def lease(self, host: str, limit: int) -> list[Request]:
        """Up to ``limit`` requests of one host, as far as its gate allows now."""
        return (await self._lease(limit, host)).requests

    async def queued_hosts(self) -> set[str]:
        """Hosts with queued work and a free slot."""
        return {host.decode() for host in await self._read("zrange", self.keys[4], 0, -1)}

    async def _read(self, command: str, *args: Any) -> Any:
        return await self._retrying(lambda: getattr(self.client, command)(*args))

    # -- buffered writes and the commit --------------------------------------------------------

    def add(self, requests: Sequence[Request], *, parent: Request | None = None) -> int:
        duplicates = 0
        fresh = []
        for request in requests:
            if not request.dont_filter and self._recent.seen(request.fingerprint):
                duplicates += 1
                continue
            fresh.append(request)
            self.pending_hosts.add(request.host)
        if parent is not None and parent.id is not None:
            self._children.setdefault(parent.id, []).extend(fresh)
        else:
            self._batch.seeds.extend(fresh)
        return duplicates

    def requeue(self, requests: Sequence[Request]) -> None:
        self.add(requests)

    def complete(self, outcome: Outcome) -> None:
        assert outcome.request.id is not None
        children = self._children.pop(outcome.request.id, [])
        self._batch.outcomes.append((outcome, children))

    def save_robots(self, host: str, record: RobotsRecord) -> None:
        self._batch.robots[host] = codec.encode_robots(record)

    def save_stats(self, stats: dict[str, Any]) -> None:
        for name, value in codec.flat_stats(stats):
            delta = value - self._sent_stats.get(name, 0)
            if delta:
                self._batch.stats[name] = delta
            self._sent_stats[name] = value

    def save_feed(self, path: str, last_item: int, offset: int) -> None:
        self._batch.feeds[path] = f"{last_item},{offset}".encode()

    def save_spider_state(self, data: bytes) -> None:
        self._batch.meta["spider_state"] = data

    @property
    def pending_writes(self) -> int:
        batch = self._batch
        return len(batch.outcomes) + len(batch.seeds) + sum(map(len, self._children.values()))

    async def flush(self) -> Flushed:
        """One ``crawler_commit``: each outcome is fenced by its lease (a refused one drops its
        items and children). Shielded: a cancelled caller does not cut the call in half."""
        batch, self._batch = self._batch, codec.Batch()
        batch.ended, self._ended = self._ended, []
        self.pending_hosts = set()
        self._batches += 1
        args = batch.args()
        reply = await asyncio.shield(
            self._fcall("commit", self._now(), self.worker_id, self._batches, *args)
        )
        self.state = reply[0].decode()
        result = Flushed(added=int(reply[2]), duplicates=int(reply[3]), hosts=batch.hosts)
        result.refused = int(reply[1])
        for (outcome, _), first in zip(batch.outcomes, reply[4:], strict=True):
            if first > 0:
                result.items += [(first + i, data) for i, data in enumerate(outcome.items)]
        if result.refused:
            log.warning("%d outcomes refused: their leases had expired", result.refused)
        return result

    async def spider_state(self) -> bytes | None:
        data: bytes | None = await self._read("hget", self.keys[0], "spider_state")
        return data

    async def last_items(self, request_id: int) -> list[bytes]:
        return []  # recrawls are not in the Redis frontier: a new crawl id crawls again

    async def requeue_failed(self, permanent: Collection[int]) -> int:
        return 0

    def requeue_due(self, now: float, policy: Revisit) -> None:
        return None

    # -- hosts, items, counts ------------------------------------------------------------------

    async def robots(self, host: str) -> RobotsRecord | None:
        data = await self._read("hget", self.keys[12], host)
        return None if data is None else codec.decode_robots(data)

    async def feed(self, path: str) -> tuple[int, int] | None:
        data = await self._read("hget", self.keys[13], path)
        if data is None:
            return None
        last, offset = data.split(b",")
        return int(last), int(offset)

    async def items_after(self, item_id: int) -> AsyncIterator[tuple[int, bytes]]:
        while entries := await self._read("xrange", self.keys[9], f"({item_id}-0", "+", 1000):
            for entry_id, entry in entries:
                item_id = int(entry_id.split(b"-")[0])
                yield item_id, entry[b"d"]

    async def status(self) -> dict[str, Any]:
        """The crawl as Redis has it: state, queued, leased, seen, items, live workers,
        the frontier's exact counts and the workers' committed stats summed."""
        reply = await self._retrying(
            lambda: self.client.fcall_ro("crawler_status", len(self.keys), *self.keys, "")
        )
        spider, state, queued, leased, seen, workers, items, counts, stats = reply
        return {
            "crawl_id": self.crawl_id, "spider": spider.decode(), "state": state.decode(),
            "queued": queued, "leased": leased, "seen": seen, "items": items,
            "workers": workers, "counts": _pairs(counts), "stats": codec.nested_stats(
                (k.decode(), v.decode()) for k, v in zip(stats[::2], stats[1::2], strict=True)
            ),
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


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _pairs(flat: list[bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def _run(run_id: int, record: list[Any]) -> Run:
    trigger, started, scheduled, finished, outcome, exit_code, resumes, stats = record
    return Run(
        run_id, Trigger(trigger), parse_time(started), parse_time(scheduled),
        parse_time(finished), RunOutcome(outcome), exit_code, resumes, stats,
    )  # fmt: skip
