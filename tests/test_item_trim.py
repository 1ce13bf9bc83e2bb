"""Redis memory for items stays flat: an item leaves the crawl's ``items`` stream once every feed
of the crawl has checkpointed past it, and never before. Judged from Redis (the stream, the
``export`` hash), the feeds and the exit codes, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from crawler import Request, Response, Spider
from crawler import cluster as shared
from crawler.errors import ConfigError
from crawler.frontier import Outcome, RequestState
from crawler.frontier.redis import LIBRARY, VERSION, RedisFrontier
from crawler.frontier.redis_codec import keys
from crawler.runner import CrawlJob, resolve_settings
from crawler.settings import Settings
from tests.redis_server import RedisServer
from tests.site import TestSite
from tests.test_redis_crawl import (
    BASE,
    LEAVES,
    cli_worker,
    crawler_cli,
    leaves_spider,
    read_feed,
    wait_for_items,
    worker,
)

TTL_MS = 600_000  # on the test clock: no lease lapses unless a test moves it


class Crawl:
    """Frontier objects on one crawl ("c"), on a test clock, and a plain client on its keys."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.now_ms = 5_000_000
        self.opened: list[RedisFrontier] = []
        self.client = aioredis.Redis.from_url(server.url)
        self.items_key, self.export_key = keys("c")[9], keys("c")[13]
        self.pages = 0

    def __repr__(self) -> str:
        return f"<Crawl c {len(self.opened)} frontiers at {self.now_ms} ms>"

    async def join(self) -> RedisFrontier:
        settings = Settings(obey_robots=False, lease_ttl_s=TTL_MS / 1000, heartbeat_s=599.0)
        frontier = RedisFrontier(self.server.url, "c", settings, clock_ms=lambda: self.now_ms)
        await frontier.open("spider")
        self.opened.append(frontier)
        return frontier

    async def commit_items(self, frontier: RedisFrontier, count: int) -> list[int]:
        """One page with ``count`` items, crawled and committed; their item ids."""
        self.pages += 1
        frontier.add([Request(f"http://a.test/{self.pages}")])
        await frontier.flush()
        (page,) = (await frontier.lease_ready(1)).requests
        frontier.attempt_ended(page)
        items = [b'{"n":%d}' % i for i in range(count)]
        frontier.complete(Outcome(page, RequestState.DONE, 200, items=items))
        return [item_id for item_id, _ in (await frontier.flush()).items]

    async def checkpoint(self, frontier: RedisFrontier, path: str, last_item: int) -> None:
        frontier.save_feed(path, last_item, last_item * 10)
        await frontier.flush()

    async def stream(self) -> list[int]:
        """The ids of the items still in Redis."""
        entries = await self.client.xrange(self.items_key)
        return [int(entry_id.split(b"-")[0]) for entry_id, _ in entries]


@pytest.fixture
async def crawl(redis_server: RedisServer) -> AsyncIterator[Crawl]:
    made = Crawl(redis_server)
    yield made
    for frontier in made.opened:
        await frontier.close()
    await made.client.aclose()


async def test_items_stay_while_no_feed_has_a_checkpoint(crawl: Crawl) -> None:
    crawling = await crawl.join()
    ids = await crawl.commit_items(crawling, 5)
    ids += await crawl.commit_items(crawling, 5)
    assert await crawl.stream() == ids  # the stream is their only copy
    assert await crawling.trimmed() == (0, [])


async def test_several_feeds_trim_only_below_the_slowest_checkpoint(crawl: Crawl) -> None:
    crawling, exporter = await crawl.join(), await crawl.join()
    await crawl.checkpoint(exporter, "/feeds/a.jsonl", 0)
    await crawl.checkpoint(exporter, "/feeds/b.csv", 0)
    ids = await crawl.commit_items(crawling, 10)

    await crawl.checkpoint(exporter, "/feeds/a.jsonl", ids[7])
    assert await crawl.stream() == ids  # b.csv has written none of them
    await crawl.checkpoint(exporter, "/feeds/b.csv", ids[2])
    assert await crawl.stream() == ids[3:]
    assert [item_id async for item_id, _ in exporter.items_after(ids[2])] == ids[3:]
    await crawl.checkpoint(exporter, "/feeds/b.csv", ids[9])
    assert await crawl.stream() == ids[8:]  # a.jsonl still needs them
    assert await exporter.trimmed() == (ids[7], ["/feeds/a.jsonl", "/feeds/b.csv"])
    await crawl.checkpoint(exporter, "/feeds/a.jsonl", ids[9])
    assert await crawl.stream() == []

    more = await crawl.commit_items(crawling, 3)
    assert await crawl.stream() == more  # new items wait for the feeds again
    status = await crawling.status()  # counted by the commits, not by the stream's length
    assert (status["items"], status["counts"]["items"]) == (13, 13)


async def test_a_crawl_checkpointed_before_trimming_existed_is_trimmed_after_the_upgrade(
    crawl: Crawl,
) -> None:
    crawling = await crawl.join()
    ids = await crawl.commit_items(crawling, 6)
    # What the library before this one left: a feed checkpoint, and every item still there.
    await crawl.client.hset(crawl.export_key, "/feeds/a.jsonl", f"{ids[2]},30")
    await crawl.client.function_load(LIBRARY.replace(VERSION, "old"), replace=True)

    exporter = await crawl.join()  # loads this version of the library again
    assert await crawl.client.fcall_ro("crawler_version", 0) == VERSION.encode()
    assert await exporter.trimmed() == (0, ["/feeds/a.jsonl"])
    assert await exporter.feed("/feeds/a.jsonl") == (ids[2], 30)
    await crawl.checkpoint(exporter, "/feeds/a.jsonl", ids[4])
    assert await crawl.stream() == ids[5:]
    await crawl.commit_items(crawling, 1)  # an older worker's commit would look the same
    assert len(await crawl.stream()) == 2


# -- whole crawls ------------------------------------------------------------------------------


async def stream_of(server: RedisServer, crawl_id: str) -> tuple[int, int]:
    """(entries, bytes) of the crawl's items stream."""
    client = aioredis.Redis.from_url(server.url)
    try:
        key = keys(crawl_id)[9]
        return await client.xlen(key), await client.memory_usage(key, samples=0) or 0
    finally:
        await client.aclose()


def wordy_spider(site: TestSite) -> type[Spider]:
    """LEAVES slow leaves (50 ms) of ITEMS items each, about 200 bytes apiece."""

    class Wordy(Spider):
        name = "wordy"
        start_urls = (site.url(f"/slow-links?delay=0.05&n={LEAVES}"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
                yield request

        async def parse_leaf(self, response: Response) -> AsyncIterator[Any]:
            leaf = int(response.url.rsplit("=", 1)[1])
            for n in range(ITEMS):
                yield {"leaf": leaf, "n": n, "text": "x" * 160}

    return Wordy


ITEMS = 25


@pytest.fixture
def memory_report() -> Iterator[dict[str, float]]:
    report: dict[str, float] = {}
    yield report
    print(f"\nRedis items stream: {report}")


async def test_a_crawl_with_a_feed_ends_with_an_empty_stream_and_one_without_keeps_every_item(
    site: TestSite, redis_server: RedisServer, tmp_path: Path, memory_report: dict[str, float]
) -> None:
    spider = wordy_spider(site)
    total = LEAVES * ITEMS
    await worker(spider, redis_server, crawl_id="kept", per_host_concurrency=2)
    site.reset()
    feed = tmp_path / "items.jsonl"
    peak = [0, 0]
    crawled = asyncio.Event()

    async def sample() -> None:  # a figure only: the stream's largest size while it is tailed
        while not crawled.is_set():
            peak[:] = map(max, peak, await stream_of(redis_server, "fed"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(crawled.wait(), timeout=0.01)

    async def crawl() -> None:
        await worker(spider, redis_server, feed, crawl_id="fed", per_host_concurrency=2)
        crawled.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(sample())
        group.create_task(crawl())

    kept, fed = await stream_of(redis_server, "kept"), await stream_of(redis_server, "fed")
    memory_report.update(
        items=total, without_feed_bytes=kept[1], with_feed_bytes=fed[1],
        with_feed_peak_items=peak[0], with_feed_peak_bytes=peak[1],
    )  # fmt: skip
    assert kept[0] == total  # no feed: Redis is where the items are
    assert fed[0] == 0  # the exporter caught up at the finish: all of them left
    assert fed[1] < kept[1] / 20
    assert sorted((item["leaf"], item["n"]) for item in read_feed(feed)) == sorted(
        (leaf, n) for leaf in range(LEAVES) for n in range(ITEMS)
    )
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    for crawl_id in ("kept", "fed"):
        found = await shared.status(settings, crawl_id)
        assert (found["items"], found["counts"]["items"]) == (total, total)
        assert found["stats"]["items_scraped"] == total


async def test_a_feed_that_needs_trimmed_items_is_refused_before_its_file_is_touched(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    started = asyncio.Event()
    spider = leaves_spider(site, started)
    feed = tmp_path / "a.jsonl"
    running = asyncio.create_task(worker(spider, redis_server, feed, per_host_concurrency=1))
    await started.wait()
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    await shared.stop(settings, "leaves")
    await running
    written = feed.read_bytes()
    assert 0 < len(read_feed(feed)) < LEAVES

    other = tmp_path / "b.jsonl"
    with pytest.raises(ConfigError, match=r"it is new to this crawl.* new --crawl-id"):
        await worker(spider, redis_server, other)
    assert not other.exists()
    with pytest.raises(ConfigError, match=r"-O starts it anew"):
        await overwrite(spider, redis_server, feed)
    feed.write_bytes(written[: len(written) // 2])  # cut short behind the crawl's back
    with pytest.raises(ConfigError, match=r"shorter than its checkpoint"):
        await worker(spider, redis_server, feed)
    assert feed.read_bytes() == written[: len(written) // 2]

    feed.write_bytes(written)
    await worker(spider, redis_server, feed)  # the old feed resumes
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    assert (await stream_of(redis_server, "leaves"))[0] == 0


async def overwrite(spider: type[Spider], server: RedisServer, feed: Path) -> None:
    """A worker run with ``-O feed``."""
    overrides = {**BASE, "frontier": server.url}
    job = CrawlJob(spider=spider, overrides=overrides, feed=feed, overwrite_feed=True,
                   progress=False, signals=False)  # fmt: skip
    await shared.run(job, resolve_settings(job))


def wait_for_trim(server: RedisServer, crawl_id: str) -> None:
    """Block until an item has left the crawl's stream (a feed checkpoint was committed)."""
    client = redis.Redis(unix_socket_path=str(server.socket))
    deadline = time.monotonic() + 30
    with client:
        while time.monotonic() < deadline:
            if int(client.hget(keys(crawl_id)[13], "@trimmed") or 0):
                return
            time.sleep(0.005)  # polling what another process commits; not synchronisation
    raise AssertionError("no item left the stream")


@pytest.mark.slow
def test_a_new_feed_is_refused_with_exit_2_and_a_killed_exporter_resumes_exactly_once(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "a.jsonl"
    first = cli_worker(site, redis_server, tmp_path, feed)
    wait_for_items(feed, first, count=10)
    wait_for_trim(redis_server, "slow")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)

    other = tmp_path / "b.csv"
    refused = cli_worker(site, redis_server, tmp_path, other)
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode == 2, stderr
    # one line of error (after a line saying it waited for the killed exporter's role)
    (error,) = [line for line in stderr.splitlines() if not line[:2].isdigit()]
    assert "b.csv needs the crawl's items from item 1 (it is new to this crawl)" in error
    assert str(feed.resolve()) in error  # the feed that can resume
    assert not other.exists()
    written = feed.read_bytes()
    # -O with --workers: refused before any worker process starts, the feed as it was
    workers = crawler_cli(
        "run", "leaves.py", "--frontier", redis_server.url, "--crawl-id", "slow", "--workers",
        "2", "-O", str(feed), "-s", "obey_robots=false", "-s", "allow_private_addresses=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert workers.returncode == 2, workers.stderr
    assert "-O starts it anew" in workers.stderr
    assert feed.read_bytes() == written

    resumed = cli_worker(site, redis_server, tmp_path, feed)
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    status = crawler_cli("status", "slow", "--frontier", redis_server.url, cwd=tmp_path)
    assert f"{LEAVES} items" in status.stdout, status.stdout
    with redis.Redis(unix_socket_path=str(redis_server.socket)) as client:
        assert client.xlen(keys("slow")[9]) == 0
