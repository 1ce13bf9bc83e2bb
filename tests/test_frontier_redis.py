"""The Redis frontier's own promises, on a real redis-server: leases fenced per outcome, one
politeness gate for every worker, the exact finish, durability across a Redis restart, redacted
credentials, and its memory per request. Time is a test clock the functions take in ARGV."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from crawler import Request
from crawler.errors import ConfigError, LeaseLost, StateError
from crawler.frontier import Grant, Outcome, RequestState, RobotsRecord
from crawler.frontier.redis import LIBRARY, VERSION, RedisFrontier
from crawler.frontier.redis_codec import Batch, keys, redact
from crawler.scheduler_remote import RESERVE_AGE_S, RemoteScheduler
from crawler.settings import Settings
from tests.redis_server import RedisServer

TTL_MS = 600_000  # on the test clock; the keeper beats every 200 s of real time: never


class Cluster:
    """Workers (frontier objects) on one crawl, on one test clock."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.now_ms = 5_000_000
        self.workers: list[RedisFrontier] = []

    def __repr__(self) -> str:
        return f"<Cluster {len(self.workers)} workers at {self.now_ms} ms>"

    async def join(
        self, crawl: str = "c", spider: str = "spider", **settings: Any
    ) -> RedisFrontier:
        values = {"obey_robots": False, "lease_ttl_s": TTL_MS / 1000, "heartbeat_s": 599.0}
        frontier = RedisFrontier(
            self.server.url, crawl, Settings(**(values | settings)), clock_ms=lambda: self.now_ms
        )
        await frontier.open(spider)
        self.workers.append(frontier)
        return frontier

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Cluster]:
    made = Cluster(redis_server)
    yield made
    for worker in made.workers:
        await worker.close()


async def seeded(cluster: Cluster, requests: list[Request], **settings: Any) -> RedisFrontier:
    seeder = await cluster.join(**settings)
    assert seeder.seeder
    seeder.add(requests)
    await seeder.flush()
    await seeder.seeding_done()
    return seeder


def pages(host: str, count: int) -> list[Request]:
    return [Request(f"http://{host}/{i}") for i in range(count)]


def finish(frontier: RedisFrontier, grant: Grant, *items: bytes) -> None:
    for request in grant.requests:
        frontier.attempt_ended(request)
        frontier.complete(Outcome(request, RequestState.DONE, 200, items=list(items)))


async def test_only_the_first_worker_seeds(cluster: Cluster) -> None:
    first = await cluster.join()
    second = await cluster.join()
    assert (first.seeder, second.seeder) == (True, False)


async def test_an_exporter_that_does_not_crawl_never_seeds(cluster: Cluster) -> None:
    exporter = RedisFrontier(cluster.server.url, "c", Settings(obey_robots=False))
    await exporter.open("spider", crawl=False)
    cluster.workers.append(exporter)
    assert not exporter.seeder
    assert (await cluster.join()).seeder


async def test_one_live_feed_exporter_per_crawl(cluster: Cluster) -> None:
    one, two = await cluster.join(), await cluster.join()
    assert await one.claim_export()
    assert await one.claim_export()  # idempotent for its holder
    assert not await two.claim_export()
    await one.close()
    assert await two.claim_export()
    cluster.advance(TTL_MS + 1)  # two is gone without a word
    assert await (await cluster.join()).claim_export()


async def test_status_and_stop_attach_without_joining(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    grant = await worker.lease_ready(1)
    outsider = RedisFrontier(cluster.server.url, "c", Settings(), clock_ms=lambda: cluster.now_ms)
    await outsider.attach()
    await outsider.stop_crawl()
    status = await outsider.status()
    assert (status["state"], status["workers"], status["leased"]) == ("stopping", 1, 1)
    await outsider.close()
    finish(worker, grant)
    await worker.flush()
    assert worker.state == "stopped"
    with pytest.raises(StateError, match="no crawl 'other'"):
        await RedisFrontier(cluster.server.url, "other", Settings()).attach()


def test_a_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="must be below lease_ttl_s"):
        Settings(lease_ttl_s=1.0)


async def test_a_crawl_id_belongs_to_one_spider(cluster: Cluster) -> None:
    await cluster.join(spider="books")
    with pytest.raises(StateError, match="belongs to spider 'books', not 'news'"):
        await cluster.join(spider="news")


async def test_a_stalled_workers_commit_is_refused_and_adds_no_item(cluster: Cluster) -> None:
    stalled = await seeded(cluster, pages("a.test", 1))
    grant = await stalled.lease_ready(10)
    (request,) = grant.requests
    cluster.advance(TTL_MS + 1)  # no heartbeat: its lease lapses

    other = await cluster.join()
    regrant = await other.lease_ready(10)
    assert [r.url for r in regrant.requests] == [request.url]
    stalled.add([Request("http://a.test/child")], parent=request)
    finish(stalled, grant, b'{"by":"stalled"}')
    stalled.save_stats({"pages_crawled": 1, "items_scraped": 1, "requests_total": 1})
    flushed = await stalled.flush()
    assert (flushed.refused, flushed.items, flushed.added) == (1, [], 0)

    assert stalled.add([Request("http://a.test/child")]) == 0  # not "seen": it was refused
    finish(other, regrant, b'{"by":"other"}')
    other.save_stats({"pages_crawled": 1, "items_scraped": 1, "requests_total": 1})
    assert [data for _, data in (await other.flush()).items] == [b'{"by":"other"}']
    assert [data async for _, data in other.items_after(0)] == [b'{"by":"other"}']
    status = await other.status()
    assert (status["counts"]["done"], status["counts"]["refused"], status["seen"]) == (1, 1, 1)
    # the cluster's stats are what was committed; requests sent are what was sent; the gauges
    # are Redis's own
    assert status["stats"] == {
        "pages_crawled": 1, "items_scraped": 1, "requests_total": 2,
        "queued": 0, "elapsed_s": (TTL_MS + 1) / 1000,
    }  # fmt: skip


async def test_status_lists_every_count_from_the_start(cluster: Cluster) -> None:
    worker = await cluster.join()
    status = await worker.status()
    assert status["counts"] == dict.fromkeys(
        ("done", "failed", "skipped", "items", "refused", "reclaimed"), 0
    )
    assert (status["elapsed_s"], status["stats"]) == (0.0, {"queued": 0, "elapsed_s": 0.0})


async def test_status_gives_the_crawls_wall_time_and_queue_not_the_workers_sums(
    cluster: Cluster,
) -> None:
    first = await seeded(cluster, pages("a.test", 3) + pages("b.test", 2))
    second = await cluster.join()
    cluster.advance(1_500)
    grants = [await first.lease_ready(1), await second.lease_ready(1)]
    for worker, grant in zip((first, second), grants, strict=True):
        finish(worker, grant, b"{}")
        worker.save_stats({"queued": 4, "elapsed_s": 1.5, "requests_total": 1})
        await worker.flush()  # each says 4 queued and 1.5 s: summed, 8 and 3.0

    status = await first.status()
    assert (status["queued"], status["leased"], status["elapsed_s"]) == (3, 0, 1.5)
    assert (status["stats"]["queued"], status["stats"]["elapsed_s"]) == (3, 1.5)
    assert status["stats"]["requests_total"] == 2  # a counter: summed over the workers
    assert status["counts"] == {
        "done": 2, "failed": 0, "skipped": 0, "items": 2, "refused": 0, "reclaimed": 0,
    }  # fmt: skip

    cluster.advance(2_000)
    assert (await second.status())["elapsed_s"] == 3.5  # running: until now
    for _ in range(3):
        finish(first, await first.lease_ready(1))
    await first.flush()
    assert first.state == "finished"
    cluster.advance(60_000)
    status = await second.status()
    assert (status["state"], status["elapsed_s"], status["stats"]["elapsed_s"]) == (
        "finished", 3.5, 3.5,
    )  # fmt: skip


async def test_a_stalled_worker_learns_it_expired_from_its_heartbeat(cluster: Cluster) -> None:
    worker = await cluster.join()
    cluster.advance(TTL_MS + 1)
    await cluster.join()  # reaps the dead
    assert not worker.expired
    await worker.heartbeat()
    assert worker.expired


async def test_a_lost_lease_cannot_be_reacquired_for_a_retry(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    (request,) = (await worker.lease_ready(1)).requests
    worker.attempt_ended(request)
    await worker.lease_ready(0)
    request.retries += 1  # as the engine counts a retry before it waits
    assert await worker.reacquire(request) == 0.0
    worker.attempt_ended(request)
    cluster.advance(TTL_MS + 1)
    await (await cluster.join()).lease_ready(1)
    with pytest.raises(LeaseLost):
        await worker.reacquire(request)


async def test_an_ended_attempt_frees_its_slot_without_another_call(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 2), per_host_concurrency=1)
    two = await cluster.join(per_host_concurrency=1)
    (request,) = (await one.lease_ready(16)).requests
    one.attempt_ended(request)  # one makes no call: its keeper sends it within 50 ms
    async with asyncio.timeout(5):  # polled: Redis announces no freed slot
        while not (grant := await two.lease_ready(16)).requests:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert [r.url for r in grant.requests] == ["http://a.test/1"]


async def test_a_retry_keeps_its_slot_when_its_first_attempts_end_arrives_late(
    cluster: Cluster,
) -> None:
    one = await seeded(cluster, pages("a.test", 2), per_host_concurrency=1)
    two = await cluster.join(per_host_concurrency=1)
    (request,) = (await one.lease_ready(16)).requests
    one.attempt_ended(request)  # not sent yet when the retry asks
    request.retries += 1
    assert await one.reacquire(request) == 0.0
    await one.lease_ready(0)  # the first attempt's end: the retry holds the slot on
    assert (await two.lease_ready(16)).requests == []
    one.attempt_ended(request)
    await one.lease_ready(0)
    assert len((await two.lease_ready(16)).requests) == 1


async def test_a_retry_on_a_delayed_host_rests_even_before_its_first_attempts_end_arrives(
    cluster: Cluster,
) -> None:
    one = await seeded(cluster, pages("a.test", 2), download_delay=0.5)
    two = await cluster.join(download_delay=0.5)
    (request,) = (await one.lease_ready(16)).requests
    cluster.advance(700)  # a 503 answered 0.7 s after it started
    one.attempt_ended(request)  # not sent yet when the retry asks (retry_backoff=0)
    request.retries += 1
    assert await one.reacquire(request) == pytest.approx(0.5)  # the delay, from the answer
    await one.lease_ready(0)  # the first attempt's end, late: nothing more
    cluster.advance(499)
    assert (await two.lease_ready(16)).requests == []
    assert await one.reacquire(request) == pytest.approx(0.001)
    cluster.advance(1)
    assert await one.reacquire(request) == 0.0


async def test_a_retry_waits_for_a_pause_even_before_its_first_attempts_end_arrives(
    cluster: Cluster,
) -> None:
    one = await seeded(cluster, pages("a.test", 1))
    (request,) = (await one.lease_ready(16)).requests
    one.attempt_ended(request)  # not sent yet when the retry asks
    await one.pause_host("a.test", 3.0)  # another request's Retry-After, meanwhile
    request.retries += 1
    assert await one.reacquire(request) == pytest.approx(3.0)
    cluster.advance(3000)
    assert await one.reacquire(request) == 0.0


async def test_a_retry_waits_for_its_hosts_slot(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 2), per_host_concurrency=1)
    (first,) = (await one.lease_ready(1)).requests
    assert (await one.lease_ready(1)).requests == []  # the slot is taken
    one.attempt_ended(first)
    (other,) = (await one.lease_ready(1)).requests
    first.retries += 1
    assert await one.reacquire(first) == pytest.approx(0.1)  # no room: ask again soon
    one.attempt_ended(other)
    await one.lease_ready(0)
    assert await one.reacquire(first) == 0.0


async def test_a_grant_started_late_is_retaken_and_spaced_from_then(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 3), download_delay=0.5)
    (late,) = (await one.lease_ready(16)).requests
    cluster.advance(200)  # the worker could not start it at once
    assert await one.reacquire(late, retake=True) == pytest.approx(0.31)  # 0.5 s + 10 ms
    cluster.advance(310)
    assert await one.reacquire(late) == 0.0
    one.attempt_ended(late)  # answered at once: the start spaces the next, 0.5 s + 10 ms
    await one.lease_ready(0)
    cluster.advance(509)
    assert (await one.lease_ready(16)).requests == []  # spaced from the retaken start
    cluster.advance(1)
    assert len((await one.lease_ready(16)).requests) == 1


async def test_a_reserve_is_granted_only_on_hosts_with_no_delay_and_counts_on_the_limit(
    cluster: Cluster,
) -> None:
    one = await seeded(
        cluster, pages("a.test", 9) + pages("b.test", 9) + pages("c.test", 9),
        obey_robots=True, per_host_concurrency=3,
    )  # fmt: skip
    two = await cluster.join(obey_robots=True, per_host_concurrency=3)
    await one.configure_host("a.test", 3, 0.0)
    await one.configure_host("b.test", 1, 1.0)  # a Crawl-delay: its turns are not held
    # c.test's robots.txt is not known yet: its one slot is not held either
    reserve = await one.lease_ready(0, 8)
    assert sorted(r.url for r in reserve.requests) == [f"http://a.test/{i}" for i in range(3)]
    assert {r.host for r in (await two.lease_ready(8)).requests} == {"b.test", "c.test"}
    assert (await two.lease_ready(8)).requests == []  # a.test's slots are the reserve's
    for request in reserve.requests:  # started and ended: the slots are free again
        one.attempt_ended(request)
    await one.lease_ready(0)
    assert len((await two.lease_ready(8)).requests) == 3


async def test_a_reserve_stays_within_max_pages(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 9), max_pages=4, per_host_concurrency=16)
    grant = await one.lease_ready(2, 8)
    assert len(grant.requests) == 4


async def scheduler(frontier: RedisFrontier, now: list[float]) -> RemoteScheduler:
    async def flush() -> None:
        await frontier.flush()

    made = RemoteScheduler(frontier, frontier.settings, flush, clock=lambda: now[0])
    await made.start()
    return made


async def test_a_stopped_crawl_starts_none_of_a_workers_reserve(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 9), concurrency=4, per_host_concurrency=16)
    sched = await scheduler(worker, [100.0])
    started = [await sched.next_request() for _ in range(4)]  # every slot busy, one reserved
    assert None not in started
    assert sched.reserve == 1
    stopper = await cluster.join()
    await stopper.stop_crawl()  # `crawler stop`
    first = started[0]
    assert first is not None
    sched.release(first)
    worker.complete(Outcome(first, RequestState.DONE, 200))
    await worker.flush()  # its reply says the crawl is stopping
    sched.done(first)
    assert await asyncio.wait_for(sched.next_request(), 5) is None
    assert sched.stopping
    assert (await worker.status())["leased"] == 4  # three in flight; the reserve, till it leaves
    await worker.close()
    assert (await stopper.status())["leased"] == 0  # its leases went back to the queue


async def test_a_reserved_grant_that_waited_asks_the_gate_again(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 4), concurrency=4, per_host_concurrency=4)
    now = [100.0]
    sched = await scheduler(worker, now)
    assert sched.reserve == 1
    fresh = await sched.next_request()
    assert fresh is not None
    await sched.turn(fresh.url)  # started at once: its turn is the grant's
    assert sched.late_grants == 0

    async def started_after(seconds: float) -> int:
        async def one() -> int:
            request = await sched.next_request()
            assert request is not None
            now[0] += seconds
            await sched.turn(request.url)
            return sched.late_grants

        return await asyncio.create_task(one())  # a request's own task, as the engine's

    assert await started_after(RESERVE_AGE_S / 2) == 0
    assert await started_after(RESERVE_AGE_S * 2) == 1  # retaken: the gate said yes again


async def test_a_grant_on_a_host_this_worker_saw_paused_waits_for_the_gate(
    cluster: Cluster,
) -> None:
    worker = await seeded(cluster, pages("a.test", 4), concurrency=4, per_host_concurrency=4)
    asked = asyncio.Event()
    reacquire = worker.reacquire

    async def told(request: Request, *, retake: bool = False) -> float:
        wait = await reacquire(request, retake=retake)
        asked.set()
        return wait

    worker.reacquire = told  # type: ignore[method-assign]
    now = [100.0]
    sched = await scheduler(worker, now)
    request = await sched.next_request()
    assert request is not None
    sched.pause_host("a.test", 3.0)  # a 429 of another request, after this one was granted

    async def start() -> None:
        await sched.turn(request.url)

    started = asyncio.create_task(start())
    await asyncio.wait_for(asked.wait(), 5)
    assert not started.done()  # the gate knows the pause and said wait
    record = await worker.client.hget(worker.keys[5], "a.test")  # active,limit,delay,next,known
    assert int(record.split(b",")[3]) == cluster.now_ms + 3000
    cluster.advance(3000)
    asked.clear()
    sched.wake()
    await asyncio.wait_for(started, 5)
    assert sched.late_grants == 1


async def test_a_request_granted_again_to_its_worker_ignores_the_old_grants_calls(
    cluster: Cluster,
) -> None:
    worker = await seeded(cluster, pages("a.test", 2), per_host_concurrency=1)
    (old,) = (await worker.lease_ready(1)).requests
    cluster.advance(TTL_MS + 1)  # the worker's heartbeat lapses: Redis takes the request back
    (new,) = (await worker.lease_ready(1)).requests  # and grants it to the same worker again
    assert (new.url, new is old) == (old.url, False)
    assert worker.expired  # it beat again before it was granted anything
    worker.attempt_ended(old)  # the old grant's attempt ends late: it must not free new's slot
    worker.complete(Outcome(old, RequestState.DONE, 200, items=[b'{"old":1}']))
    assert (await worker.flush()).refused == 1
    other = await cluster.join(per_host_concurrency=1)
    assert (await other.lease_ready(16)).requests == []  # the slot is new's
    worker.attempt_ended(new)
    worker.complete(Outcome(new, RequestState.DONE, 200, items=[b'{"new":1}']))
    assert [data for _, data in (await worker.flush()).items] == [b'{"new":1}']
    assert len((await other.lease_ready(16)).requests) == 1


async def test_a_link_found_again_while_its_first_finder_is_refused_enters_the_crawl(
    cluster: Cluster,
) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    (old,) = (await worker.lease_ready(1)).requests
    worker.add([Request("http://a.test/link")], parent=old)  # a callback of a grant since lost
    cluster.advance(TTL_MS + 1)  # an outage past the lease: Redis takes the request back
    (new,) = (await worker.lease_ready(1)).requests  # and the same worker redoes the page
    assert worker.add([Request("http://a.test/link")], parent=new) == 0  # not dropped as seen
    for request in (old, new):
        worker.attempt_ended(request)
        worker.complete(Outcome(request, RequestState.DONE, 200))
    flushed = await worker.flush()
    assert (flushed.refused, flushed.added) == (1, 1)
    assert worker.add([Request("http://a.test/link")]) == 1  # committed: a repeat is dropped here
    (link,) = (await worker.lease_ready(16)).requests
    assert link.url == "http://a.test/link"


async def test_the_per_host_limit_holds_across_workers(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 10), per_host_concurrency=2)
    two = await cluster.join(per_host_concurrency=2)
    first, second = await one.lease_ready(16), await two.lease_ready(16)
    assert len(first.requests) + len(second.requests) == 2
    assert (await one.lease_ready(16)).requests == []

    ended = (first.requests or second.requests)[0]
    (one if first.requests else two).attempt_ended(ended)  # a slot is free, the lease held
    await (one if first.requests else two).lease_ready(0)
    assert len((await two.lease_ready(16)).requests) == 1
    assert (await one.lease_ready(16)).requests == []


async def test_a_hungry_worker_gets_its_fair_share_of_a_full_hosts_slots(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 20), per_host_concurrency=4)
    two = await cluster.join(per_host_concurrency=4)
    first = await one.lease_ready(16)
    assert len(first.requests) == 4  # no rival yet: every free slot
    starved = await two.lease_ready(16)
    assert starved.requests == []  # two is hungry now
    for request in first.requests[:2]:
        one.attempt_ended(request)
    assert (await one.lease_ready(16)).requests == []  # held to half: its two freed slots wait
    grant = await two.lease_ready(16)
    assert len(grant.requests) == 2  # for two
    assert grant.wake_s == pytest.approx(0.02)  # still hungry while one is held: it asks soon
    held = await one.client.hgetall(one.keys[15])
    assert sorted(held.values()) == [b"2", b"2"]


async def test_without_a_hungry_rival_a_worker_takes_every_free_slot(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 20), per_host_concurrency=4)
    two = await cluster.join(per_host_concurrency=4)
    first = await one.lease_ready(4)
    assert len(first.requests) == 4
    assert (await two.lease_ready(0)).requests == []  # asked for nothing: not hungry
    for request in first.requests:
        one.attempt_ended(request)
    second = await one.lease_ready(16)
    assert len(second.requests) == 4  # two asked for none: no rival
    assert (await two.lease_ready(16)).requests == []  # now it is hungry
    cluster.advance(300)  # and stops asking: a hunger older than 250 ms is forgotten
    for request in second.requests:
        one.attempt_ended(request)
    assert len((await one.lease_ready(16)).requests) == 4


async def test_the_slots_each_worker_holds_end_at_zero(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 6) + pages("b.test", 6), per_host_concurrency=2)
    two = await cluster.join(per_host_concurrency=2)
    grants = [await one.lease_ready(3), await two.lease_ready(3)]
    assert await one.client.hlen(one.keys[15]) > 0
    await two.close()  # leaves: its leases are queued again
    while (grant := await one.lease_ready(4)).requests or one.pending_writes:
        finish(one, grant)
        await one.flush()
    finish(one, grants[0])
    await one.flush()
    while (grant := await one.lease_ready(4)).requests:
        finish(one, grant)
        await one.flush()
    assert (await one.status())["state"] == "finished"
    assert await one.client.hlen(one.keys[15]) == 0


async def test_the_delay_spaces_starts_in_server_time_across_workers(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 5), download_delay=0.5)
    two = await cluster.join(download_delay=0.5)
    grant = await one.lease_ready(16)
    assert len(grant.requests) == 1
    assert (await two.lease_ready(16)).requests == []  # one request at a time
    finish(one, grant)  # answered at once
    await one.flush()
    refused = await two.lease_ready(16)
    assert refused.requests == []
    assert refused.wake_s == pytest.approx(0.51)  # the delay and its 10 ms guard
    cluster.advance(509)
    assert (await two.lease_ready(16)).requests == []
    cluster.advance(1)
    assert len((await two.lease_ready(16)).requests) == 1


async def test_a_delayed_host_rests_its_delay_from_the_end_of_an_attempt(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 5), download_delay=0.5)
    two = await cluster.join(download_delay=0.5)
    (request,) = (await one.lease_ready(16)).requests
    cluster.advance(700)  # a slow answer: longer than the delay
    one.attempt_ended(request)
    await one.lease_ready(0)  # its end reaches the gate now
    cluster.advance(499)
    assert (await two.lease_ready(16)).requests == []
    cluster.advance(1)
    assert len((await two.lease_ready(16)).requests) == 1


async def test_a_paused_host_waits_for_every_worker(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 5) + pages("b.test", 1))
    two = await cluster.join()
    await one.pause_host("a.test", 3.0)
    grant = await two.lease_ready(16)
    assert [r.host for r in grant.requests] == ["b.test"]
    assert grant.wake_s is not None
    assert grant.wake_s <= 3.0
    finish(two, grant)
    await two.flush()
    cluster.advance(2999)
    assert (await one.lease_ready(16)).requests == []
    cluster.advance(1)
    assert {r.host for r in (await one.lease_ready(16)).requests} == {"a.test"}


async def test_an_unknown_host_has_one_slot_until_robots_configures_it(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 5), obey_robots=True, per_host_concurrency=3)
    two = await cluster.join(obey_robots=True, per_host_concurrency=3)
    assert len((await one.lease_ready(16)).requests) == 1
    assert (await two.lease_ready(16)).requests == []

    record = RobotsRecord(200, b"User-agent: *\nAllow: /\n", 1.0)
    one.save_robots("http://a.test", record)  # RobotsCache keys records by site
    await one.configure_host("a.test", 3, 0.0)
    assert await two.robots("http://a.test") == record  # there before another worker starts
    assert len((await two.lease_ready(16)).requests) == 2


async def test_the_largest_delay_any_worker_saw_wins(cluster: Cluster) -> None:
    one = await seeded(cluster, pages("a.test", 5), obey_robots=True)
    two = await cluster.join(obey_robots=True)
    await one.configure_host("a.test", 1, 2.0)
    await two.configure_host("a.test", 1, 1.0)
    grant = await one.lease_ready(16)
    assert len(grant.requests) == 1
    finish(one, grant)
    await one.flush()
    assert (await two.lease_ready(16)).wake_s == pytest.approx(2.04)


async def test_the_crawl_finishes_exactly_when_nothing_is_queued_or_leased(
    cluster: Cluster,
) -> None:
    seeder = await cluster.join()
    other = await cluster.join()
    seeder.add(pages("a.test", 1))
    await seeder.flush()
    grant = await other.lease_ready(16)
    assert grant.state == "running"
    finish(other, grant)
    await other.flush()
    assert (await other.lease_ready(16)).state == "running"  # the seeder may add more

    await seeder.seeding_done()
    assert seeder.state == "finished"
    assert (await other.lease_ready(16)).state == "finished"
    late = await cluster.join()
    assert (late.state, late.seeder) == ("finished", False)


async def test_joining_a_finished_crawl_says_a_new_crawl_id_starts_a_new_crawl(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crawler.frontier.redis"):
        worker = await seeded(cluster, pages("a.test", 1))
        finish(worker, await worker.lease_ready(16))
        await worker.flush()
        assert not [r for r in caplog.records if "finished already" in r.getMessage()]
        late = await cluster.join()
    assert late.state == "finished"
    (said,) = [r.getMessage() for r in caplog.records if "finished already" in r.getMessage()]
    assert "crawl 'c' is finished already" in said
    assert "a new --crawl-id starts a new one" in said


async def test_a_worker_is_told_which_of_its_settings_the_crawl_keeps(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    created = {"download_delay": 0.5, "max_pages": 2, "per_host_concurrency": 4}
    with caplog.at_level(logging.WARNING, logger="crawler.frontier.redis"):
        await seeded(cluster, pages("a.test", 5), **created)
        await cluster.join(**created)
        assert not [r for r in caplog.records if "created with" in r.getMessage()]
        other = await cluster.join(download_delay=0.0, max_pages=20, per_host_concurrency=4)
    (said,) = [r.getMessage() for r in caplog.records if "created with" in r.getMessage()]
    assert "created with download_delay=0.5, max_pages=2," in said
    assert "and this worker has download_delay=0, max_pages=20: give every worker" in said
    # As said: the crawl's max_pages and the host's delay, not this worker's, bound its grants.
    for _ in range(2):
        grant = await other.lease_ready(16)
        assert len(grant.requests) == 1  # the host has a delay: one at a time
        finish(other, grant)
        await other.flush()
        assert (await other.lease_ready(16)).requests == []  # resting the crawl's 0.5 s
        cluster.advance(600)
    assert (await other.lease_ready(16)).requests == []  # max_pages=2 reached
    assert other.state == "finished"


async def test_not_finished_while_a_lease_is_held(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    grant = await worker.lease_ready(16)
    assert (await (await cluster.join()).lease_ready(16)).state == "running"
    worker.add(pages("a.test", 2)[1:], parent=grant.requests[0])
    finish(worker, grant)
    await worker.flush()
    assert worker.state == "running"
    finish(worker, await worker.lease_ready(16))
    await worker.flush()
    assert worker.state == "finished"


async def test_a_dead_seeders_successor_seeds(cluster: Cluster) -> None:
    seeder = await cluster.join()
    await seeder.close()
    successor = await cluster.join()
    assert successor.seeder


async def test_a_live_worker_takes_seeding_over_from_a_seeder_that_died(cluster: Cluster) -> None:
    seeder = await cluster.join()
    other = await cluster.join()
    seeder.add(pages("a.test", 1))
    await seeder.flush()  # part of the start requests, then it dies before seeding_done
    assert (await other.lease_ready(1)).requests  # still alive: it stays the seeder
    assert not other.seeder
    cluster.advance(TTL_MS + 1)
    await other.heartbeat()
    await other.lease_ready(0)
    assert other.seeder
    await other.seeding_done()
    assert (await other.status())["state"] == "running"  # its lease is still out
    assert not (await cluster.join()).seeder


async def test_a_dead_workers_leases_are_reaped_by_a_heartbeat_and_a_stop_ends(
    cluster: Cluster,
) -> None:
    exporter = await seeded(cluster, pages("a.test", 2))
    dead = await cluster.join()
    assert len((await dead.lease_ready(2)).requests) == 2
    await exporter.stop_crawl()
    assert exporter.state == "stopping"
    cluster.advance(TTL_MS + 1)  # dead never beats again; exporter leases nothing while stopping
    await exporter.heartbeat()
    assert exporter.state == "stopped"
    assert (await exporter.status())["leased"] == 0


async def test_a_joiner_resumes_a_stop_that_waited_for_a_dead_workers_leases(
    cluster: Cluster,
) -> None:
    worker = await seeded(cluster, pages("a.test", 2), per_host_concurrency=2)
    assert len((await worker.lease_ready(2)).requests) == 2
    await worker.stop_crawl()
    cluster.advance(TTL_MS + 1)
    joiner = await cluster.join()
    assert joiner.state == "running"
    assert len((await joiner.lease_ready(2)).requests) == 2


async def test_stop_drains_leases_then_the_crawl_is_stopped_and_resumable(
    cluster: Cluster,
) -> None:
    worker = await seeded(cluster, pages("a.test", 3), per_host_concurrency=1)
    grant = await worker.lease_ready(16)
    await worker.stop_crawl()
    assert worker.state == "stopping"
    assert (await worker.lease_ready(16)).requests == []
    finish(worker, grant)
    await worker.flush()
    assert worker.state == "stopped"
    resumed = await cluster.join()
    assert resumed.state == "running"
    assert len((await resumed.lease_ready(16)).requests) == 1


async def test_max_pages_counts_committed_and_leased_requests(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 5), max_pages=3, per_host_concurrency=5)
    grant = await worker.lease_ready(16)
    assert len(grant.requests) == 3
    finish(worker, grant)
    await worker.flush()
    assert worker.state == "finished"


async def test_status_sums_what_workers_committed(cluster: Cluster) -> None:
    one = await cluster.join()
    two = await cluster.join()
    one.save_stats({"requests_total": 3, "elapsed_s": 1.5, "status_counts": {"200": 3}})
    two.save_stats({"requests_total": 4, "elapsed_s": 0.5, "status_counts": {"200": 2, "404": 1}})
    one.save_stats({"requests_total": 5, "elapsed_s": 2.0, "status_counts": {"200": 5}})
    await one.flush()
    await two.flush()
    status = await two.status()
    assert status["stats"] == {  # the gauges are not summed: the crawl's, on the test clock
        "requests_total": 9, "elapsed_s": 0.0, "queued": 0, "status_counts": {"200": 7, "404": 1},
    }  # fmt: skip
    assert (status["workers"], status["state"], status["spider"]) == (2, "running", "spider")


async def test_committed_items_survive_a_redis_kill(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 4), per_host_concurrency=4)
    finish(worker, await worker.lease_ready(16), b'{"n":1}')
    flushed = await worker.flush()
    cluster.server.kill()
    cluster.server.start()
    assert [row async for row in worker.items_after(0)] == flushed.items
    assert (await worker.counts()).done == 4


async def test_a_commit_rides_out_a_redis_outage(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    worker = await seeded(cluster, pages("a.test", 2), per_host_concurrency=2)
    finish(worker, await worker.lease_ready(16), b'{"n":1}')
    cluster.server.kill()
    with caplog.at_level(logging.WARNING, logger="crawler.frontier.redis"):
        committing = asyncio.create_task(worker.flush())
        beating = asyncio.create_task(worker.heartbeat())  # another call in the same outage
        done, _ = await asyncio.wait([committing, beating], timeout=0.3)
        assert not done  # still retrying, not failed
        cluster.server.start()
        flushed = await committing
        await beating
    assert (len(flushed.items), flushed.refused) == (2, 0)
    assert (await worker.counts()).items == 2
    said = [record.getMessage() for record in caplog.records]
    assert any("retrying for up to 60 s" in line for line in said), said
    # once for the outage, not per call nor per try
    assert sum("retrying" in line for line in said) == 1, said
    assert sum("answers again" in line for line in said) == 1, said


async def test_a_commit_waits_while_redis_is_out_of_memory(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    admin = aioredis.Redis.from_url(cluster.server.url)
    used = (await admin.info("memory"))["used_memory"]
    await admin.config_set("maxmemory", used + 100_000)
    worker.add([Request(f"http://b.test/{i}", meta={"x": "y" * 200}) for i in range(2000)])
    committing = asyncio.create_task(worker.flush())
    done, _ = await asyncio.wait([committing], timeout=0.5)
    assert not done  # noeviction refuses it: the worker waits, it does not crash or drop it
    await admin.config_set("maxmemory", 0)
    assert (await committing).added == 2000
    await admin.aclose()


async def test_a_commit_sent_again_after_a_lost_reply_applies_once(cluster: Cluster) -> None:
    worker = await seeded(cluster, pages("a.test", 1))
    (request,) = (await worker.lease_ready(1)).requests
    client = aioredis.Redis.from_url(cluster.server.url)
    lease = await client.hget(worker.keys[6], str(request.id))
    grant = lease[34:46].decode()  # flag, attempt, worker (32), grant (12): frontier.lua
    batch = Batch(outcomes=[(Outcome(request, RequestState.DONE, 200, items=[b"{}"]), [], grant)])
    batch.seeds.append(Request("http://a.test/new"))
    call = ("crawler_commit", len(worker.keys), *worker.keys, cluster.now_ms, worker.worker_id, 7)
    first = await client.fcall(*call, *batch.args())
    again = await client.fcall(*call, *batch.args())  # as a retry after a dropped connection
    await client.aclose()
    assert again == first
    counts = await worker.counts()
    assert (counts.done, counts.items, counts.queued) == (1, 1, 1)


async def test_an_older_function_library_is_replaced(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.function_load(LIBRARY.replace(VERSION, "old"), replace=True)
    frontier = RedisFrontier(redis_server.url, "c", Settings())
    await frontier.open("spider")
    assert await client.fcall_ro("crawler_version", 0) == VERSION.encode()
    await frontier.close()
    await client.aclose()


def test_urls_are_redacted() -> None:
    assert redact("redis://:s3cret@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact("rediss://user:s3cret@cache/0") == "rediss://***@cache/0"
    assert redact("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"
    assert redact("unix:///r.sock?db=1&password=s3cret") == "unix:///r.sock?db=1&password=***"
    assert (
        redact("redis://h/0?Username=u&PASSWORD=s3cret") == "redis://h/0?Username=***&PASSWORD=***"
    )
    assert "s3cret" not in repr(RedisFrontier("redis://:s3cret@cache", "c", Settings()))


def test_a_bad_url_or_crawl_id_is_one_line_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisFrontier("http://:s3cret@cache", "c", Settings())
    assert "s3cret" not in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="crawl id"):
        keys("{other}")


async def test_an_unreachable_redis_is_one_line_without_the_password(
    redis_server: RedisServer,
) -> None:
    url = f"unix://:s3cret@{redis_server.folder}/missing.sock"
    with pytest.raises(StateError) as caught:
        await RedisFrontier(url, "c", Settings()).open("spider")
    message = str(caught.value)
    assert "unreachable" in message
    assert "s3cret" not in message
    assert "\n" not in message


async def test_a_password_in_the_query_is_never_shown(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    missing = f"unix://{redis_server.folder}/missing.sock?password=s3cret"
    with pytest.raises(StateError) as unreachable:
        await RedisFrontier(missing, "c", Settings()).open("spider")
    assert "unreachable" in str(unreachable.value)
    folder = tmp_path / "locked"
    folder.mkdir()
    with (
        RedisServer(folder, "--requirepass", "right") as server,
        pytest.raises(StateError) as refused,
    ):
        await RedisFrontier(f"{server.url}?password=s3cret", "c", Settings()).open("x")
    assert "refused the credentials" in str(refused.value)
    for caught in (unreachable, refused):
        assert "s3cret" not in str(caught.value)
        assert "password=***" in str(caught.value)


async def test_a_password_protected_redis(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    with RedisServer(folder, "--requirepass", "s3cret") as server:
        url = f"unix://:s3cret@{server.socket}"
        frontier = RedisFrontier(url, "c", Settings())
        await frontier.open("spider")
        assert (await frontier.status())["workers"] == 1
        assert "s3cret" not in repr(frontier)
        await frontier.close()
        with pytest.raises(StateError) as caught:
            await RedisFrontier(f"unix://:wrong-s3cret@{server.socket}", "c", Settings()).open("x")
        assert "refused the credentials" in str(caught.value)
        assert "wrong-s3cret" not in str(caught.value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server on TLS only, with a password; yields its rediss:// URL."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "redis"
    folder.mkdir()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--requirepass", "pw1"]
    with RedisServer(folder, *tls):
        yield f"rediss://:pw1@127.0.0.1:{port}/0?ssl_ca_certs={cert}"


async def test_rediss_with_a_password(tls_redis: str) -> None:
    frontier = RedisFrontier(tls_redis, "c", Settings())
    await frontier.open("spider")
    frontier.add(pages("a.test", 3))
    assert (await frontier.flush()).added == 3
    assert "pw1" not in repr(frontier)
    await frontier.close()


async def test_an_unknown_url_option_is_a_config_error(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match="frontier URL"):
        await RedisFrontier(f"{redis_server.url}?db=x", "c", Settings()).open("spider")


@pytest.fixture
def memory_report() -> Iterator[dict[str, float]]:
    report: dict[str, float] = {}
    yield report
    print(f"\nRedis memory: {report}")


async def test_memory_per_queued_request_and_per_seen_fingerprint(
    cluster: Cluster, memory_report: dict[str, float]
) -> None:
    count = 20_000
    worker = await cluster.join()
    # 200-byte records, as the design's figures assume: a URL, a callback, some meta
    worker.add(
        [
            Request(f"http://a.test/{i:06d}", "parse_item", meta={"x": "y" * 110})
            for i in range(count)
        ]
    )
    await worker.flush()
    client = aioredis.Redis.from_url(cluster.server.url)
    names = keys("c")
    sizes = {name: await client.memory_usage(key, samples=0) for name, key in zip(
        ("q", "req", "seen"), (names[1], names[2], names[3]), strict=True)}  # fmt: skip
    await client.aclose()
    memory_report["bytes_per_queued_request"] = (sizes["q"] + sizes["req"]) / count
    memory_report["bytes_per_seen_fingerprint"] = sizes["seen"] / count
    assert memory_report["bytes_per_queued_request"] <= 600
    assert memory_report["bytes_per_seen_fingerprint"] <= 64


async def test_a_redis_that_may_lose_commits_is_named_at_join(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(obey_robots=False)
    with RedisServer(tmp_path, "--appendfsync", "everysec") as server:
        frontier = RedisFrontier(server.url, "c", settings)
        with caplog.at_level(logging.WARNING, logger="crawler.frontier.redis"):
            await frontier.open("spider")
        await frontier.close()
    (warning,) = [r.getMessage() for r in caplog.records if "may lose" in r.getMessage()]
    assert "appendfsync everysec" in warning


async def test_a_redis_that_asks_for_a_password_says_where_it_goes(tmp_path: Path) -> None:
    with RedisServer(tmp_path, "--requirepass", "s3cret") as server:
        for url in (server.url, server.url.replace("unix://", "unix://:wrong@")):
            with pytest.raises(StateError) as caught:
                await RedisFrontier(url, "c", Settings()).open("spider")
            message = str(caught.value)
            assert "refused the credentials" in message
            assert "its password goes in the frontier URL: redis://:PASSWORD@" in message
            assert "\n" not in message
            assert "wrong" not in message


async def test_a_redis_as_the_readme_asks_gives_no_warning(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    frontier = RedisFrontier(redis_server.url, "c", Settings(obey_robots=False))
    with caplog.at_level(logging.WARNING, logger="crawler.frontier.redis"):
        await frontier.open("spider")
    await frontier.close()
    assert not [r for r in caplog.records if "may lose" in r.getMessage()]


async def test_a_grant_waiting_out_a_pause_lends_its_global_slot_to_other_hosts(
    cluster: Cluster,
) -> None:
    seeds = [Request("http://a.test/0"), Request("http://b.test/0")]
    worker = await seeded(cluster, seeds, concurrency=1)
    sched = await scheduler(worker, [100.0])
    first = await sched.next_request()
    assert first is not None
    assert first.host == "a.test"
    sched.pause_host("a.test", 30.0)  # a Retry-After of a.test, after this one was granted
    waiting = asyncio.create_task(sched.turn(first.url))
    other = await asyncio.wait_for(sched.next_request(), 5)  # the one slot goes on meanwhile
    assert other is not None
    assert other.host == "b.test"
    assert not waiting.done()
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
