"""A shared crawl on Redis when a worker dies at the wrong moment, and the ``--workers`` parent's
children: the crawl still ends, every item reaches the feed once. A dead worker is a frontier
that joined and stopped beating without leaving (as after SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from crawler import Request, Spider
from crawler import cluster as shared
from crawler.frontier.redis import RedisFrontier
from crawler.runner import CrawlJob, resolve_settings
from crawler.settings import Settings
from tests.redis_server import RedisServer
from tests.site import TestSite
from tests.test_redis_crawl import (
    BASE,
    LEAVES,
    SPIDER_FILE,
    cli_worker,
    crawler_cli,
    leaves_spider,
    read_feed,
    wait_for_items,
    worker,
)

ENDS_WITHIN_S = 30  # the crawl takes a few seconds; a hang fails here, not at pytest's timeout


async def dead_worker(redis: RedisServer, *, crawl: bool = True) -> RedisFrontier:
    """A worker that joins the crawl; ``close(release=False)`` and it died without a word (its
    heartbeat stops). ``crawl=False``: an exporter that does not crawl."""
    frontier = RedisFrontier(redis.url, "leaves", Settings(**BASE))
    await frontier.open("leaves", crawl=crawl)
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


async def test_an_exporter_restarted_at_once_takes_over_its_dead_predecessors_feed(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    killed = await dead_worker(redis_server, crawl=False)
    assert await killed.claim_export()
    await killed.close(release=False)  # SIGKILLed; its replacement starts at once
    feed = tmp_path / "items.jsonl"
    async with asyncio.timeout(ENDS_WITHIN_S):
        result = await worker(leaves_spider(site), redis_server, feed)
    assert result.stopped is False
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


async def test_only_the_seeder_runs_start_requests_and_others_reach_private_start_hosts(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    runs: list[int] = []

    class Counted(leaves_spider(site)):  # type: ignore[misc, valid-type]
        async def start_requests(self) -> AsyncIterator[Request]:
            runs.append(1)  # a side effect (or a long list) of the spider's, once per crawl
            async for request in super().start_requests():
                yield request

    feed = tmp_path / "items.jsonl"
    # The start host is loopback and private addresses are refused: only start hosts pass.
    guarded = {"allow_private_addresses": False, "concurrency": 2, "per_host_concurrency": 4}
    first, second = await asyncio.gather(
        worker(Counted, redis_server, feed, **guarded), worker(Counted, redis_server, **guarded)
    )

    assert runs == [1]
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    assert first.stats.failures == second.stats.failures == 0
    assert first.stats.pages_crawled > 0
    assert second.stats.pages_crawled > 0


def spider_file(site: TestSite, folder: Path, custom: str = "") -> Path:
    """The leaves spider as a file, with ``custom`` as its custom_settings' body."""
    code = SPIDER_FILE.format(base=site.base(), n=LEAVES, delay=0.02)
    if custom:
        code = code.replace(
            '    name = "leaves"', f'    name = "leaves"\n    custom_settings = {{{custom}}}'
        )
    path = folder / "leaves.py"
    path.write_text(code)
    return path


PRIVATE = ("-s", "obey_robots=false", "-s", "allow_private_addresses=true")


@pytest.mark.slow
@pytest.mark.parametrize("frontier_too", [False, True])
def test_workers_join_the_parents_crawl_whatever_the_spiders_custom_settings(
    site: TestSite, redis_server: RedisServer, tmp_path: Path, frontier_too: bool
) -> None:
    custom = '"crawl_id": "fromspider"'
    if frontier_too:
        custom += f', "frontier": "unix://{tmp_path / "no-such-redis.sock"}"'
    spider_file(site, tmp_path, custom)
    feed = tmp_path / "items.jsonl"
    ran = crawler_cli(
        "run", "leaves.py", "--frontier", redis_server.url, "--crawl-id", "fromcli",
        "--workers", "2", "-o", str(feed), *PRIVATE, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on loopback (held while probing)."""
    for _ in range(50):
        with ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                for offset in range(1, count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise AssertionError(f"no {count} consecutive free ports")


@pytest.mark.slow
def test_workers_with_a_metrics_port_each_serve_their_own(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    spider_file(site, tmp_path)
    feed = tmp_path / "items.jsonl"
    port = free_ports(3)
    ran = crawler_cli(
        "run", "leaves.py", "--frontier", redis_server.url, "--workers", "3", "-o", str(feed),
        "-s", f"metrics_port={port}", *PRIVATE, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Address already in use" not in ran.stderr
    assert f"/metrics on port {port + 2}" in ran.stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


@pytest.mark.parametrize("command", [["run", "leaves.py"], ["status", "x"], ["stop", "x"]])
def test_a_frontier_without_the_redis_extra_is_one_line_and_exit_2(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "leaves.py").write_text(SPIDER_FILE.format(base="http://127.0.0.1:9", n=1, delay=0))
    # As if redis-py were not installed: importing it fails.
    code = "import sys; sys.modules['redis'] = None; from crawler.cli import main; main()"
    ran = subprocess.run(
        [sys.executable, "-c", code, *command, "--frontier", "redis://:s3cret@127.0.0.1:9/0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert "pip install 'crawler[redis]'" in ran.stderr
    assert "s3cret" not in ran.stderr


def joined(redis_server: RedisServer, crawl_id: str, count: int) -> None:
    """Block until ``count`` workers of the crawl are live in Redis."""
    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    deadline = time.monotonic() + ENDS_WITHIN_S
    try:
        while client.zcard(f"{{crawl:{crawl_id}}}:workers") < count:
            assert time.monotonic() < deadline, f"{count} workers never joined"
            time.sleep(0.01)  # polling another process's state; not synchronisation
    finally:
        client.close()


def delete_crawl(redis_server: RedisServer, crawl_id: str) -> int:
    """What an operator's ``redis-cli --scan ... | xargs redis-cli unlink`` does mid-crawl."""
    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    try:
        names = list(client.scan_iter(match=f"{{crawl:{crawl_id}}}:*"))
        return int(client.unlink(*names)) if names else 0
    finally:
        client.close()


@pytest.mark.slow
def test_every_worker_of_a_crawl_whose_keys_are_deleted_exits_1_with_one_line(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    exporter = cli_worker(site, redis_server, tmp_path, feed)
    wait_for_items(feed, exporter)
    plain = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "leaves.py", "--frontier", redis_server.url,
         "--crawl-id", "slow", "--no-progress", *PRIVATE, "-s", "per_host_concurrency=1",
         "-s", "heartbeat_s=0.5", "-s", "lease_ttl_s=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    joined(redis_server, "slow", 2)  # else it could start the crawl anew after the deletion
    assert delete_crawl(redis_server, "slow") > 0

    gone = f"error: crawl 'slow' at {redis_server.url} is gone: its keys were deleted while it ran"
    for process in (exporter, plain):
        _, stderr = process.communicate(timeout=ENDS_WITHIN_S)
        assert process.returncode == 1, stderr
        assert stderr.strip().splitlines()[-1] == gone, stderr
        # that one line: no traceback, no other error
        assert "Traceback" not in stderr
        assert stderr.lower().count("error") == 1, stderr
    leaves = [item["leaf"] for item in read_feed(feed)]  # every line whole
    assert 3 <= len(leaves) < LEAVES
    assert len(set(leaves)) == len(leaves)
    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    try:
        assert list(client.scan_iter(match="{crawl:slow}:*")) == []  # nothing written back
    finally:
        client.close()


@pytest.mark.slow
def test_the_parent_of_workers_and_its_children_exit_1_when_the_crawl_is_deleted(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    parent = cli_worker(site, redis_server, tmp_path, feed, "--workers", "2")
    wait_for_items(feed, parent)
    joined(redis_server, "slow", 3)  # the parent (the exporter) and its two children
    assert delete_crawl(redis_server, "slow") > 0

    _, stderr = parent.communicate(timeout=ENDS_WITHIN_S)
    assert parent.returncode == 1, stderr
    gone = f"error: crawl 'slow' at {redis_server.url} is gone: its keys were deleted while it ran"
    assert stderr.count(gone) == 3, stderr  # each child's line, then the parent's
    assert "Traceback" not in stderr
    leaves = [item["leaf"] for item in read_feed(feed)]
    assert len(set(leaves)) == len(leaves) < LEAVES


@pytest.mark.slow
def test_the_parent_of_workers_names_a_killed_worker_and_says_how_the_crawl_ended(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    parent = cli_worker(site, redis_server, tmp_path, feed, "--workers", "2")
    assert parent.stderr is not None
    started = parent.stderr.readline()  # the parent's first line: its children's pids
    assert "started 2 workers of crawl 'slow': pids" in started, started
    victim = int(started.split()[-1])
    wait_for_items(feed, parent)
    os.kill(victim, signal.SIGKILL)
    _, stderr = parent.communicate(timeout=60)

    assert f"worker 1 (pid {victim}) was killed by SIGKILL" in stderr
    assert parent.returncode == 1, stderr  # the worst child's: a worker crashed
    last = stderr.splitlines()[-1]
    assert last.startswith(f"crawl 'slow', every worker: {LEAVES + 1} pages, {LEAVES} items"), last
    assert last.endswith(f"items written to {feed}"), last
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


async def test_crawler_stop_ends_at_once_when_the_only_worker_died_holding_leases(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Its clock is a minute slow: its heartbeat and its lease lapsed long ago, as if it had been
    # SIGKILLed a minute before, and no live worker is left to reap them.
    dead = RedisFrontier(
        redis_server.url, "leaves", Settings(**BASE), clock_ms=lambda: time_ms() - 60_000
    )
    await dead.open("leaves")
    dead.add([Request(site.url(f"/slow-links?delay=0.05&n={LEAVES}"))])
    await dead.flush()
    await dead.seeding_done()
    assert (await dead.lease_ready(1)).requests
    await dead.close(release=False)

    stop = crawler_cli("stop", "leaves", "--frontier", redis_server.url, cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert stop.stderr == "crawl leaves: stopped\n"
    settings = resolve_settings(CrawlJob(spider=Spider, overrides={"frontier": redis_server.url}))
    status = await shared.status(settings, "leaves")
    assert (status["leased"], status["counts"]["reclaimed"]) == (0, 1)
    feed = tmp_path / "items.jsonl"
    async with asyncio.timeout(ENDS_WITHIN_S):
        resumed = await worker(leaves_spider(site), redis_server, feed)
    assert resumed.stopped is False
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


def time_ms() -> int:
    return time.time_ns() // 1_000_000
