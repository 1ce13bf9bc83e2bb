"""The shared frontier: one crawl's state in Redis, used by many worker processes at once.

The only module that imports redis (redis-py's asyncio client, hiredis parser). Every change
goes through the ``crawler_v1`` FUNCTION library in ``frontier.lua``; Redis server time is the
only clock. A Redis outage: each call retries with backoff for up to ``OUTAGE_S``, then raises
StateError; outcomes not yet committed then die with the worker, their leases expire, and other
workers redo them (nothing was committed, so nothing is duplicated). A commit whose reply was
lost is sent again with its batch number, and Redis answers it from its record of that batch.

Durability: Redis acknowledges a commit once it is in its append-only file. With
``appendonly yes`` and ``appendfsync always`` it is on disk first, so a crash of redis-server
or of its machine loses no acknowledged commit: exactly once. ``everysec`` survives a killed
redis-server as a rule, but loses up to about 2 s of commits when the machine crashes (or when
a slow disk held the write back), and those items may already be in the feed: duplicates on
the rerun. Without an append-only file, or with eviction, state is lost: use
``maxmemory-policy noeviction``, so a full Redis refuses commits instead of dropping requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Collection
from importlib import resources
from typing import Any, ClassVar

import redis.asyncio as aioredis
import redis.exceptions
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from crawler.dedup import url_key
from crawler.errors import ConfigError, CrawlGone, LeaseLost, StateError
from crawler.freshness import Revisit
from crawler.frontier import Flushed, Grant
from crawler.frontier import redis_codec as codec
from crawler.frontier.redis_buffer import CommitBuffer
from crawler.frontier.redis_log import RedisLog
from crawler.request import Request
from crawler.settings import Settings

log = logging.getLogger("crawler.frontier.redis")

OUTAGE_S = 60.0  # how long a call rides out a Redis outage before the worker gives up
OPEN_PATIENCE_S = 3.0  # at start-up: an unreachable Redis is reported soon
ENDED_DELAY_S = 0.05  # ended attempts wait this long for a lease call to carry them
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_LUA = resources.files("crawler.frontier").joinpath("frontier.lua").read_text(encoding="utf-8")
VERSION = hashlib.sha1(_LUA.encode(), usedforsecurity=False).hexdigest()[:12]
LIBRARY = _LUA.replace("@VERSION@", VERSION)


class RedisFrontier(CommitBuffer, RedisLog):
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
        self.created_ms = b""  # when the crawl this worker joined was created: its identity
        self._clock_ms = clock_ms
        self._client: aioredis.Redis | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._ended: list[str] = []  # 'id:attempt digit'
        self._ended_soon = asyncio.Event()
        CommitBuffer.__init__(self)
        self._batches = 0  # commit numbers: a commit sent again is known by its number
        self._outage = False  # an outage was reported and Redis has not answered since

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
                retry=retry_if_exception(_outage),
                stop=stop_after_delay(patience),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                before_sleep=lambda state: self._outage_began(state, patience),
                reraise=True,
            ):
                with attempt:
                    result = await call()
                outcome = attempt.retry_state.outcome
                if outcome is not None and not outcome.failed:
                    if self._outage and attempt.retry_state.attempt_number > 1:
                        self._outage = False  # the first call through says so, for all of them
                        log.warning("Redis at %s answers again", self._where)
                    return result
        except redis.exceptions.AuthenticationError as exc:
            raise StateError(
                f"Redis at {self._where} refused the credentials: {self._clean(exc).rstrip('.')};"
                " its password goes in the frontier URL: redis://:PASSWORD@host:port/db, or"
                " ?password=PASSWORD"
            ) from None
        except _OUTAGE as exc:
            raise StateError(f"Redis at {self._where} unreachable: {self._clean(exc)}") from None
        except redis.exceptions.ResponseError as exc:
            raise StateError(f"Redis at {self._where} refused a call: {self._clean(exc)}") from None
        except redis.exceptions.RedisError as exc:
            raise StateError(f"Redis at {self._where} failed: {self._clean(exc)}") from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _outage_began(self, state: RetryCallState, patience: float) -> None:
        # Once per outage, not per call or attempt; not while joining, whose failure is its own
        # line.
        if not self._outage and patience > OPEN_PATIENCE_S:
            self._outage = True
            error = state.outcome.exception() if state.outcome is not None else None
            why = self._clean(error) if error is not None else "no answer"
            log.warning("Redis at %s: %s; retrying for up to %.0f s", self._where, why, patience)

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

    async def attach(self) -> None:
        """Connect to an existing crawl without joining it (``crawler status``, ``stop``)."""
        await self._connect()
        if not await self._read("exists", self.keys[0]):
            await self.close()
            raise StateError(f"no crawl {self.crawl_id!r} at {self._where}")

    async def _connect(self) -> None:
        try:
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
            )
            await self._load_library()
        except (TypeError, ValueError) as exc:  # an option in the URL's query is not one
            await self.close()
            raise ConfigError(f"frontier URL {self._where}: {self._clean(exc)}") from None
        except BaseException:
            await self.close()
            raise

    async def open(self, spider_name: str, *, crawl: bool = True) -> dict[str, Any]:
        """Join the crawl: load the function library if it is not this version, register this
        worker (a heartbeat keeps it alive), and claim seeding if nobody has it (unless not
        ``crawl``: an exporter that only tails the items)."""
        await self._connect()
        try:
            reply = await self._fcall(
                "join", self._now(), self.worker_id, _ms(self.settings.lease_ttl_s), spider_name,
                *codec.crawl_settings(self.settings), int(crawl), patience=OPEN_PATIENCE_S,
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
        self.state, self.seeder, self.created_ms = reply[0].decode(), bool(reply[1]), reply[2]
        self._keeper = asyncio.create_task(self._keep(), name=f"heartbeat {self.worker_id[:8]}")
        await self.say_what_holds()
        if weak := await self.weak_durability():
            log.warning(
                "Redis at %s has %s: a crash of Redis may lose or repeat items (see the README,"
                " 'Many machines')", self._where, ", ".join(weak),
            )  # fmt: skip
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
        interval = min(self.settings.heartbeat_s, self.settings.lease_ttl_s / 3)
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, beat_at - loop.time())):
                    await self._ended_soon.wait()
            self._ended_soon.clear()  # before the awaits: an attempt ending meanwhile sets it
            try:
                if self._ended:
                    await asyncio.sleep(ENDED_DELAY_S)
                    if self._ended:
                        await self.lease_ready(0)
                if loop.time() >= beat_at:
                    beat_at = loop.time() + interval
                    await self.heartbeat()
            except CrawlGone:
                return  # the crawl's next call (lease, commit, the feed's) ends this worker
            except StateError as error:
                log.error("heartbeat: %s", error)  # the next call tries again

    async def heartbeat(self) -> None:
        """Renew this worker's leases (every ``heartbeat_s``, by the task ``open`` starts);
        ``expired`` turns True if they had lapsed meanwhile."""
        reply = await self._fcall(
            "heartbeat", self._now(), self.worker_id, _ms(self.settings.lease_ttl_s)
        )
        self._saw(reply[0])
        if reply[2] != self.created_ms:  # deleted, and created anew by a worker joining since
            raise self.gone()
        if reply[1] and not self.expired:
            self.expired = True
            log.warning("worker %s expired: its leases may be others' now", self.worker_id[:8])

    def _saw(self, state: bytes | None) -> None:
        """A call's reply said the crawl's state. Replies on separate connections may arrive out
        of order, and Redis never leaves finished (nor stopped, but by a join): neither does
        this worker's view. None: the crawl's keys are gone (CrawlGone)."""
        if state is None:
            raise self.gone()
        if self.state not in {"finished", "stopped"}:
            self.state = state.decode()

    async def claim_export(self) -> bool:
        """Whether this worker is now the crawl's one feed exporter (held while it lives)."""
        claimed = int(await self._fcall("claim_export", self._now(), self.worker_id))
        if claimed < 0:
            raise self.gone()
        return bool(claimed)

    async def seeding_done(self) -> None:
        self._saw(await self._fcall("seeding_done", self._now(), self.worker_id))

    async def stop_crawl(self) -> None:
        self._saw(await self._fcall("stop", self._now()))

    async def close(self, *, release: bool = True) -> None:
        """Leave: this worker's leases are queued again at once, for the others (unless not
        ``release``: then they come back when they expire, as a killed worker's do)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._client is None:
            return
        try:
            if release and self.state != "new":
                await self._fcall("leave", self._now(), self.worker_id, patience=OPEN_PATIENCE_S)
        except StateError as error:
            log.warning("leaving the crawl: %s", error)
        finally:
            client, self._client = self._client, None
            await client.aclose()

    # -- the gate ----------------------------------------------------------------------------

    async def lease_ready(self, want: int, extra: int = 0) -> Grant:
        """Up to ``want`` requests that may start now, and up to ``extra`` more from hosts with
        no delay (a reserve, started as slots free); their host slots are taken."""
        return await self._lease(want, "", extra)

    async def _lease(self, want: int, host: str, extra: int = 0) -> Grant:
        ended, self._ended = self._ended, []
        now, worker = self._now(), self.worker_id
        reply = await self._fcall("lease", now, worker, want, host, extra, *ended)
        if int(reply[1]) == -2:  # this worker's heartbeat lapsed: it beats, then asks again
            await self.heartbeat()
            reply = await self._fcall("lease", self._now(), worker, want, host, extra)
        self._saw(reply[0])
        if int(reply[2]) and not self.seeder:
            self.seeder = True
            log.warning("the seeder left before it was done: worker %s seeds", self.worker_id[:8])
        if int(reply[3]) != self.starts_size:
            await self.read_start_hosts()
        wake = int(reply[1])
        requests = []
        for i in range(4, len(reply), 3):
            request = codec.decode_request(reply[i], reply[i + 2])
            self._grants[int(reply[i])] = (request, reply[i + 1].decode())
            requests.append(request)
        return Grant(self.state, requests, None if wake < 0 else wake / 1000)

    def attempt_ended(self, request: Request) -> None:
        if (grant := self._grant_of(request)) is None:
            return  # an earlier grant of the request, which Redis took back: its slot went with it
        self._ended.append(f"{request.id}:{request.retries % 10}:{grant}")
        self._ended_soon.set()

    async def reacquire(self, request: Request, *, retake: bool = False) -> float:
        """0.0: the request's host slot is taken now; else seconds to wait, then ask again.
        ``retake``: a granted request that could not start in time gives its slot back first,
        so the host's delay counts from its real start. Raises LeaseLost when another worker
        holds the request now."""
        attempt = request.retries % 10  # the engine counts the retry before it asks
        reply = int(
            await self._fcall(
                "reacquire",
                self._now(),
                self.worker_id,
                request.id,
                attempt,
                int(retake),
                self._grant_of(request) or "0",
            )
        )
        if reply < 0:
            raise LeaseLost(f"the lease on {request.url} expired")
        return reply / 1000

    async def pause_host(self, host: str, seconds: float) -> None:
        await self._fcall("pause_host", self._now(), host, _ms(seconds))

    async def configure_host(self, host: str, concurrency: int, delay_s: float) -> None:
        """Robots.txt's limits for the host, for every worker; the robots.txt record buffered
        for it goes along, before any other worker may hit the host with more than one slot."""
        records: list[str | bytes] = []
        for site in (f"http://{host}", f"https://{host}"):  # RobotsCache's keys
            if (record := self._batch.robots.pop(site, None)) is not None:
                records += [site, record]
        await self._fcall("configure_host", self._now(), host, concurrency, _ms(delay_s), *records)

    async def lease(self, host: str, limit: int) -> list[Request]:
        """Up to ``limit`` requests of one host, as far as its gate allows now."""
        return (await self._lease(limit, host)).requests

    async def queued_hosts(self) -> set[str]:
        """Hosts with queued work and a free slot."""
        return {host.decode() for host in await self._read("zrange", self.keys[4], 0, -1)}

    async def _read(self, command: str, *args: Any) -> Any:
        return await self._retrying(lambda: getattr(self.client, command)(*args))

    # -- the commit ------------------------------------------------------------------------

    async def flush(self) -> Flushed:
        """One ``crawler_commit``: each outcome is fenced by its lease (a refused one drops its
        items and children). Shielded: a cancelled caller does not cut the call in half."""
        batch, self._batch = self._batch, codec.Batch()
        batch.ended, self._ended = self._ended, []
        self.pending_hosts = set()
        self._batches += 1
        args = batch.args()
        call = asyncio.ensure_future(
            self._fcall("commit", self._now(), self.worker_id, self._batches, *args)
        )
        # A caller cancelled meanwhile (its crawl is ending on another error) has gone: the
        # call's own error is then read here, not reported as "never retrieved".
        call.add_done_callback(_retrieved)
        reply = await asyncio.shield(call)
        self._saw(reply[0])
        result = Flushed(added=int(reply[2]), duplicates=int(reply[3]), hosts=batch.hosts)
        result.refused = int(reply[1])
        accepted = list(batch.seeds)
        for (outcome, children, _), first in zip(batch.outcomes, reply[4:], strict=True):
            if first < 0:
                continue  # refused: whoever redoes the page adds its links again
            if first > 0:
                result.items += [(first + i, data) for i, data in enumerate(outcome.items)]
            accepted += children
        for request in accepted:
            self._recent.add(request.fingerprint)
            if not request.dont_filter and not request.body:
                self.committed.add(url_key(request.method, request.url))
        if result.refused:
            log.warning("%d outcomes refused: their leases had expired", result.refused)
        return result

    async def last_items(self, request_id: int) -> list[bytes]:
        return []  # recrawls are not in the Redis frontier: a new crawl id crawls again

    async def requeue_failed(self, permanent: Collection[int]) -> int:
        return 0

    def requeue_due(self, now: float, policy: Revisit) -> None:
        return None


def _retrieved(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()


def _outage(error: BaseException) -> bool:
    """Worth waiting out: the server is down, restarting, out of reach or out of memory (not
    a refusal of the credentials or of the call)."""
    if isinstance(error, redis.exceptions.ResponseError):
        # noeviction: a full Redis refuses each write as a whole, until it has room again
        return isinstance(error, redis.exceptions.OutOfMemoryError)
    auth = redis.exceptions.AuthenticationError
    return isinstance(error, _OUTAGE) and not isinstance(error, auth)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
