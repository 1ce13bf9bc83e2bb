"""The Frontier contract, which every backend passes: SQLite on a file, Redis on a real
redis-server. Each test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler import Request
from crawler.frontier import Frontier, Outcome, RequestState, RobotsRecord
from crawler.frontier.redis import RedisFrontier
from crawler.frontier.sqlite import SqliteFrontier
from crawler.settings import Settings
from tests.redis_server import RedisServer

# The gate never holds a Redis lease back in these tests: the contract is about the queue.
SETTINGS = Settings(
    obey_robots=False, per_host_concurrency=1000, lease_ttl_s=600.0, heartbeat_s=599.0
)


class Backend:
    """Opens frontiers on one store; ``crash`` leaves one as a killed process would, and
    ``expire`` lets its leases run out (Redis: a test clock moved past the lease TTL)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.server: RedisServer | None = None
        self.now_ms = 1_000_000
        self.opened: list[Frontier] = []

    def __repr__(self) -> str:
        return f"<Backend {self.kind} {len(self.opened)} opened>"

    async def open(self) -> Frontier:
        frontier: Frontier
        if self.kind == "sqlite":
            frontier = SqliteFrontier(self.tmp_path / "state.db")
        else:
            if self.server is None:
                (self.tmp_path / "redis").mkdir()
                self.server = RedisServer(self.tmp_path / "redis")
                self.server.start()
            frontier = RedisFrontier(
                self.server.url, "contract", SETTINGS, clock_ms=lambda: self.now_ms
            )
        await frontier.open("spider")  # in Redis, the seeder: the crawl cannot finish under it
        self.opened.append(frontier)
        return frontier

    async def crash(self, frontier: Frontier) -> None:
        if isinstance(frontier, RedisFrontier):
            await frontier.close(release=False)
        else:
            await frontier.close()  # no commit: what was leased stays in flight

    def expire(self) -> None:
        self.now_ms += round(SETTINGS.lease_ttl_s * 1000) + 1

    async def aclose(self) -> None:
        for frontier in self.opened:
            await frontier.close()
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "redis":
        from tests.redis_server import redis_binary

        redis_binary()  # skips (or fails under CI) without redis-server
    made = Backend(request.param, tmp_path)
    yield made
    await made.aclose()


def urls(requests: list[Request]) -> list[str]:
    return [r.url for r in requests]


async def test_new_requests_are_deduplicated_in_a_batch_across_batches_and_reopens(
    backend: Backend,
) -> None:
    frontier = await backend.open()
    dropped = frontier.add([Request("http://a.test/x?b=1&a=2"), Request("http://a.test/x?a=2&b=1")])
    flushed = await frontier.flush()
    assert dropped + flushed.duplicates == 1
    assert flushed.added == 1
    frontier.add([Request("http://a.test/x?a=2&b=1"), Request("http://a.test/y")])
    flushed = await frontier.flush()
    assert flushed.added == 1
    assert flushed.hosts == {"a.test"}
    await frontier.close()

    again = await backend.open()
    again.add([Request("HTTP://A.TEST:80/y#frag"), Request("http://a.test/z")])
    flushed = await again.flush()
    assert (flushed.added, flushed.duplicates) == (1, 1)
    assert (await again.counts()).queued == 3


async def test_dont_filter_requests_are_always_queued(backend: Backend) -> None:
    frontier = await backend.open()
    frontier.add([Request("http://a.test/x"), Request("http://a.test/x", dont_filter=True)])
    assert (await frontier.flush()).added == 2


async def test_a_host_is_leased_best_priority_first_then_in_order_and_only_once(
    backend: Backend,
) -> None:
    frontier = await backend.open()
    frontier.add([Request(f"http://a.test/{i}", priority=i % 3) for i in range(9)])
    frontier.add([Request("http://b.test/other", priority=-5)])
    await frontier.flush()

    first = await frontier.lease("a.test", 4)
    rest = await frontier.lease("a.test", 10)
    assert [r.priority for r in first] == [2, 2, 2, 1]
    assert urls(first[:3]) == ["http://a.test/2", "http://a.test/5", "http://a.test/8"]
    assert [r.priority for r in rest] == [1, 1, 0, 0, 0]
    assert await frontier.lease("a.test", 10) == []
    assert await frontier.queued_hosts() == {"b.test"}
    (other,) = await frontier.lease("b.test", 10)
    assert (other.url, other.priority) == ("http://b.test/other", -5)


async def test_a_leased_request_comes_back_as_it_was_stored(backend: Backend) -> None:
    frontier = await backend.open()
    sent = Request(
        "http://a.test/form", "parse_item", method="POST", body=b"\x00\xffbinary\x00",
        meta={"page": 2, "tags": ["x"]}, cb_kwargs={"n": 1}, depth=3, priority=7,
        headers={"X-Token": "t"}, cookies={"c": "1"},
    )  # fmt: skip
    frontier.add([sent])
    await frontier.flush()
    (got,) = await frontier.lease("a.test", 1)
    assert got.id is not None
    assert (got.url, got.method, got.body, got.callback, got.depth, got.priority) == (
        sent.url, sent.method, sent.body, sent.callback, sent.depth, sent.priority,
    )  # fmt: skip
    assert (got.meta, got.cb_kwargs, got.headers, got.cookies) == (
        sent.meta, sent.cb_kwargs, sent.headers, sent.cookies,
    )  # fmt: skip


async def test_an_outcome_its_items_and_its_new_links_land_together(backend: Backend) -> None:
    frontier = await backend.open()
    frontier.add([Request("http://a.test/")])
    await frontier.flush()
    (page,) = await frontier.lease("a.test", 1)
    frontier.add([Request("http://a.test/1"), Request("http://b.test/2")], parent=page)
    frontier.complete(Outcome(page, RequestState.DONE, 200, items=[b'{"n":1}', b'{"n":2}']))
    assert (await frontier.counts()).items == 0  # buffered: nothing is committed yet

    flushed = await frontier.flush()
    assert flushed.added == 2
    assert flushed.hosts == {"a.test", "b.test"}
    assert [data for _, data in flushed.items] == [b'{"n":1}', b'{"n":2}']
    counts = await frontier.counts()
    assert (counts.queued, counts.done, counts.items) == (2, 1, 2)
    assert counts.last_item == flushed.items[-1][0]
    assert [r.url for r in await frontier.lease("b.test", 5)] == ["http://b.test/2"]


async def test_failed_and_skipped_outcomes_are_counted_apart(backend: Backend) -> None:
    frontier = await backend.open()
    frontier.add([Request(f"http://a.test/{i}") for i in range(3)])
    await frontier.flush()
    one, two, three = await frontier.lease("a.test", 3)
    frontier.complete(Outcome(one, RequestState.DONE, 200))
    frontier.complete(Outcome(two, RequestState.FAILED, 500, error="HTTP 500"))
    frontier.complete(Outcome(three, RequestState.SKIPPED, error="robots"))
    await frontier.flush()
    counts = await frontier.counts()
    assert (counts.queued, counts.done, counts.failed) == (0, 1, 1)


async def test_items_after_and_feed_checkpoints(backend: Backend) -> None:
    frontier = await backend.open()
    frontier.add([Request(f"http://a.test/{i}") for i in range(3)])
    await frontier.flush()
    for n, page in enumerate(await frontier.lease("a.test", 3)):
        items = [f'{{"page":{n},"i":{i}}}'.encode() for i in range(2)]
        frontier.complete(Outcome(page, RequestState.DONE, 200, items=items))
    flushed = await frontier.flush()
    ids = [item_id for item_id, _ in flushed.items]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6

    assert [row async for row in frontier.items_after(0)] == flushed.items
    assert [row async for row in frontier.items_after(ids[2])] == flushed.items[3:]
    assert [row async for row in frontier.items_after(ids[-1])] == []

    assert await frontier.feed("out.jsonl") is None
    frontier.save_feed("out.jsonl", ids[2], 123)
    await frontier.flush()
    assert await frontier.feed("out.jsonl") == (ids[2], 123)
    # what a feed still needs stays (Redis lets go of what every feed has written)
    assert [row async for row in frontier.items_after(ids[2])] == flushed.items[3:]
    trimmed, feeds = await frontier.trimmed()
    assert trimmed <= ids[2]
    assert feeds in ([], ["out.jsonl"])


async def test_robots_records_and_spider_state_are_kept(backend: Backend) -> None:
    frontier = await backend.open()
    record = RobotsRecord(200, b"User-agent: *\nDisallow: /private\n", 1_700_000_000.5)
    assert await frontier.robots("a.test") is None
    assert await frontier.spider_state() is None
    frontier.save_robots("a.test", record)
    frontier.save_spider_state(b'{"pages": 3}')
    await frontier.flush()
    await frontier.close()

    again = await backend.open()
    assert await again.robots("a.test") == record
    assert await again.robots("b.test") is None
    assert await again.spider_state() == b'{"pages": 3}'


async def test_reopening_after_a_crash_brings_back_what_was_in_flight(backend: Backend) -> None:
    frontier = await backend.open()
    frontier.add([Request(f"http://a.test/{i}") for i in range(3)])
    await frontier.flush()
    done, *unfinished = await frontier.lease("a.test", 3)
    frontier.complete(Outcome(done, RequestState.DONE, status=200, items=[b'{"n":1}']))
    await frontier.flush()
    await backend.crash(frontier)  # two requests were in flight

    again = await backend.open()
    backend.expire()
    assert set(urls(await again.lease("a.test", 10))) == set(urls(unfinished))
    counts = await again.counts()
    assert (counts.queued, counts.done, counts.items) == (2, 1, 1)
