"""A shared crawl on Redis when a worker dies at the wrong moment, and the ``--workers`` parent's
children: the crawl still ends, every item reaches the feed once. A dead worker is a frontier
that joined and stopped beating without leaving (as after SIGKILL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crawler import cluster as shared
from crawler.frontier.redis import RedisFrontier
from crawler.runner import CrawlJob, resolve_settings
from crawler.settings import Settings
from tests.redis_server import RedisServer
from tests.site import TestSite
from tests.test_redis_crawl import BASE, LEAVES, leaves_spider, read_feed, worker

ENDS_WITHIN_S = 30  # the crawl takes a few seconds; a hang fails here, not at pytest's timeout


async def dead_worker(redis: RedisServer, crawl_id: str = "leaves") -> RedisFrontier:
    """A worker that joined the crawl, then died without a word (its heartbeat stops)."""
    frontier = RedisFrontier(redis.url, crawl_id, Settings(**BASE))
    await frontier.open("leaves")
    return frontier


async def test_a_seeder_killed_before_it_seeded_is_replaced_by_a_live_worker(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    seeder = await dead_worker(redis_server)
    assert seeder.seeder
    await seeder.close(release=False)  # killed before it seeded anything
    feed = tmp_path / "items.jsonl"
    async with asyncio.timeout(ENDS_WITHIN_S):
        result = await worker(leaves_spider(site), redis_server, feed)
    assert result.stopped is False
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


async def test_crawler_stop_ends_while_a_dead_worker_holds_leases(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    started = asyncio.Event()
    spider = leaves_spider(site, started)
    running = asyncio.create_task(
        worker(spider, redis_server, feed, concurrency=1, per_host_concurrency=4)
    )
    await started.wait()
    dead = await dead_worker(redis_server)
    assert (await dead.lease_ready(3)).requests
    await dead.close(release=False)
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    await shared.stop(settings, "leaves")
    async with asyncio.timeout(ENDS_WITHIN_S):
        stopped = await running

    status = await shared.status(settings, "leaves")
    assert stopped.stopped is True
    assert (status["state"], status["leased"]) == ("stopped", 0)
    assert status["counts"]["reclaimed"] >= 3
    resumed = await worker(spider, redis_server, feed)
    assert resumed.stopped is False
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
