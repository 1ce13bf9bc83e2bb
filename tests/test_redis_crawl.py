"""A crawl on a shared Redis frontier, in-process and from the command line: the same items as
on SQLite, every item exactly once with two workers and one exporter, status and stop, the
finish, and a late joiner. Judged from the test site's log, the feed and Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from crawler import Response, Spider, workers
from crawler import cluster as shared
from crawler.errors import ConfigError
from crawler.frontier.redis import RedisFrontier
from crawler.runner import CrawlJob, CrawlResult, resolve_settings
from tests.crawling import crawl
from tests.redis_server import RedisServer
from tests.site import GRAPH_SIZE, TestSite

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "obey_robots": False,
    "allow_private_addresses": True,
    "lease_ttl_s": 2.0,
    "heartbeat_s": 0.5,
}
LEAVES = 60
SPIDER_FILE = """
from crawler import Response, Spider


class Leaves(Spider):
    name = "leaves"
    start_urls = ["{base}/slow-links?delay={delay}&n={n}"]

    async def parse(self, response: Response):
        for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
            yield request

    async def parse_leaf(self, response: Response):
        yield {{"leaf": int(response.url.rsplit("=", 1)[1])}}
"""


def graph_spider(site: TestSite) -> type[Spider]:
    class Graph(Spider):
        name = "graph"
        start_urls = (site.url("/graph/0"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            node = response.css_first("h1.n")
            yield {"n": int(node.text()) if node else -1, "url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    return Graph


def leaves_spider(site: TestSite, started: asyncio.Event | None = None) -> type[Spider]:
    """A page of slow links to LEAVES leaves; ``started`` is set once the first leaf is in."""

    class Leaves(Spider):
        name = "leaves"
        start_urls = (site.url(f"/slow-links?delay=0.05&n={LEAVES}"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
                yield request

        async def parse_leaf(self, response: Response) -> AsyncIterator[Any]:
            if started is not None:
                started.set()
            yield {"leaf": int(response.url.rsplit("=", 1)[1])}

    return Leaves


def fan_spider(site: TestSite, n: int) -> type[Spider]:
    """One page of ``n`` links on each host of the site; an item per leaf."""

    class Fan(Spider):
        name = "fan"
        start_urls = tuple(site.url(f"/fan/{n}", i) for i in range(len(site.hosts)))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
                yield request

        async def parse_leaf(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Fan


async def worker(
    spider: type[Spider], redis: RedisServer, feed: Path | None = None, **settings: Any
) -> CrawlResult:
    overrides = {**BASE, "frontier": redis.url, **settings}
    job = CrawlJob(spider=spider, overrides=overrides, feed=feed, progress=False, signals=False)
    return await shared.run(job, resolve_settings(job))


def read_feed(feed: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in feed.read_text().splitlines()]


async def test_a_crawl_on_redis_gives_the_items_of_a_crawl_on_sqlite(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    spider = graph_spider(site)
    on_sqlite = await crawl(spider, tmp_path, **BASE)
    site.reset()
    feed = tmp_path / "redis.jsonl"
    result = await worker(spider, redis_server, feed)

    items = read_feed(feed)
    assert sorted(items, key=str) == sorted(on_sqlite.items, key=str)
    assert len(items) > GRAPH_SIZE  # host 0's graph and host 1's
    assert len({item["url"] for item in items}) == len(items)
    assert all(count == 1 for count in _hits_per_url(site).values())  # none fetched twice
    assert result.stopped is False
    assert result.stats.pages_crawled == result.totals.pages_crawled == len(items)
    assert result.totals.items_scraped == len(items)


async def test_two_workers_and_one_exporter_write_every_item_once(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    spider = leaves_spider(site)
    first, second = await asyncio.gather(
        worker(spider, redis_server, feed, concurrency=4),
        worker(spider, redis_server, concurrency=4),
    )

    leaves = [item["leaf"] for item in read_feed(feed)]
    assert sorted(leaves) == list(range(LEAVES))
    assert first.stats.pages_crawled + second.stats.pages_crawled == LEAVES + 1
    assert first.totals.pages_crawled == LEAVES + 1
    assert first.totals.items_scraped == LEAVES
    assert (first.stopped, second.stopped) == (False, False)
    assert all(count == 1 for count in _hits_per_url(site).values())


async def test_two_workers_keep_the_delay_between_any_two_requests_to_a_host(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    site.robots = "User-agent: *\nAllow: /\n"
    delay = 0.2
    spider = fan_spider(site, n=6)
    settings = {"obey_robots": True, "download_delay": delay, "concurrency": 8}
    await asyncio.gather(
        worker(spider, redis_server, tmp_path / "items.jsonl", **settings),
        worker(spider, redis_server, **settings),
    )

    for host in site.hosts:
        starts = sorted(hit.started for hit in site.log if hit.host == host)
        assert len(starts) == 1 + 1 + 6  # robots.txt, the fan page, its leaves
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert min(gaps) >= delay - 0.02, (host, gaps)  # robots.txt and the page included
        assert site.hits("/robots.txt", host) == 1


async def test_every_worker_returns_within_a_second_of_the_finish(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    returned: list[float] = []

    async def timed(feed: Path | None) -> None:
        await worker(leaves_spider(site), redis_server, feed, concurrency=4)
        returned.append(time.time())

    await asyncio.gather(timed(tmp_path / "items.jsonl"), timed(None), timed(None))

    client = redis.Redis(unix_socket_path=str(redis_server.socket))
    try:
        finished_ms = float(client.hget("{crawl:leaves}:meta", "ended_ms") or 0)
    finally:
        client.close()
    # Redis's clock is this machine's: the finish was decided at the last commit.
    assert all(0 <= at - finished_ms / 1000 < 1.0 for at in returned), (finished_ms, returned)
    assert sorted(item["leaf"] for item in read_feed(tmp_path / "items.jsonl")) == list(
        range(LEAVES)
    )


async def test_every_worker_may_reach_the_start_hosts_on_loopback(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    spider = leaves_spider(site)
    # Two slots each, four for the host: both workers take part.
    guarded = {"allow_private_addresses": False, "concurrency": 2, "per_host_concurrency": 4}
    first, second = await asyncio.gather(
        worker(spider, redis_server, feed, **guarded), worker(spider, redis_server, **guarded)
    )

    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    assert first.stats.failures == second.stats.failures == 0
    assert first.stats.pages_crawled > 0  # both did some
    assert second.stats.pages_crawled > 0


async def test_a_second_exporter_is_refused_in_one_line(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    exporter = RedisFrontier(
        redis_server.url, "leaves", resolve_settings(CrawlJob(spider=Spider, overrides=BASE))
    )
    await exporter.open("leaves", crawl=False)
    assert await exporter.claim_export()  # a live exporter: it beats all along
    began = time.monotonic()
    with pytest.raises(ConfigError, match="has an exporter already"):
        await worker(leaves_spider(site), redis_server, tmp_path / "b.jsonl")
    assert time.monotonic() - began >= BASE["lease_ttl_s"]  # it waited in case that one died
    await exporter.close()
    assert not (tmp_path / "b.jsonl").exists()


async def test_stop_drains_every_worker_and_a_run_on_the_same_id_resumes(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    started = asyncio.Event()
    spider = leaves_spider(site, started)
    running = asyncio.create_task(worker(spider, redis_server, feed, per_host_concurrency=1))
    await started.wait()
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    await shared.stop(settings, "leaves")
    stopped = await running

    status = await shared.status(settings, "leaves")
    assert stopped.stopped is True
    assert status["state"] == "stopped"
    assert status["leased"] == 0
    half = [item["leaf"] for item in read_feed(feed)]
    assert 0 < len(half) < LEAVES

    resumed = await worker(spider, redis_server, feed)
    assert resumed.stopped is False
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    assert (await shared.status(settings, "leaves"))["state"] == "finished"
    assert all(count == 1 for count in _hits_per_url(site).values())


async def test_a_worker_joining_a_crawl_with_committed_work_and_a_live_peer_says_so(
    site: TestSite, redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()
    spider = leaves_spider(site, started)
    running = asyncio.create_task(
        worker(spider, redis_server, tmp_path / "items.jsonl", per_host_concurrency=1)
    )
    await started.wait()
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    await shared.stop(settings, "leaves")
    await running
    found = await shared.status(settings, "leaves")
    peer = RedisFrontier(redis_server.url, "leaves", settings)
    await peer.open("leaves", crawl=False)  # a live worker that crawls nothing
    caplog.set_level(logging.INFO, "crawler.cluster")
    try:
        await worker(spider, redis_server)
    finally:
        await peer.close()

    done, queued = found["counts"]["done"], found["queued"]
    assert done > 0
    assert (
        f"joining crawl 'leaves' ({done} pages done, {queued} queued; 2 workers live)"
        in caplog.messages
    )


async def test_a_late_joiner_of_a_finished_crawl_exits_at_once(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    spider = leaves_spider(site)
    await worker(spider, redis_server, tmp_path / "items.jsonl")
    hits = site.hits_total()

    began = time.monotonic()
    late = await worker(spider, redis_server)
    assert time.monotonic() - began < 1.0
    assert late.stopped is False
    assert late.stats.pages_crawled == 0
    assert site.hits_total() == hits


def crawler_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_workers_from_the_command_line_then_status(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "leaves.py").write_text(SPIDER_FILE.format(base=site.base(), n=LEAVES, delay=0.02))
    feed = tmp_path / "items.jsonl"
    ran = crawler_cli(
        "run", "leaves.py", "--frontier", redis_server.url, "--crawl-id", "cli", "--workers",
        "2", "-o", str(feed), "-s", "obey_robots=false", "-s", "allow_private_addresses=true",
        "--stats", str(tmp_path / "stats.json"), cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (stats["state"], stats["counts"]["items"]) == ("finished", LEAVES)
    assert stats["counts"]["done"] == LEAVES + 1
    # each child's summary is labelled; the parent ends with the crawl's totals and the feed
    lines = ran.stderr.splitlines()
    assert lines[-1] == (
        f"crawl 'cli', every worker: {LEAVES + 1} pages, {LEAVES} items, 0 failures in"
        f" {stats['elapsed_s']:.1f}s; items written to {feed}"
    )
    firsts = sorted(line for line in lines if " done in " in line)
    assert [line.split(" done in ")[0] for line in firsts] == ["[worker 1/2]", "[worker 2/2]"]
    pages = [int(line.split(": ")[1].split(" pages")[0]) for line in firsts]
    assert sum(pages) == LEAVES + 1  # each child's own part of the crawl
    summary_starts = ("done in", "not fetched:", "statuses:", "crawl 'cli'")
    assert [line for line in lines[:-1] if line.startswith(summary_starts)] == []

    status = crawler_cli("status", "cli", "--frontier", redis_server.url, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert found["state"] == "finished"
    assert found["stats"]["items_scraped"] == LEAVES
    assert found["stats"]["pages_crawled"] == LEAVES + 1
    human = crawler_cli("status", "cli", "--frontier", redis_server.url, cwd=tmp_path)
    assert human.stdout.splitlines() == shared.describe("cli", found)  # the same numbers


def cli_worker(
    site: TestSite, redis: RedisServer, folder: Path, feed: Path, *extra: str
) -> subprocess.Popen[str]:
    """``crawler run`` of a slow leaves spider (one request at a time) on crawl "slow"."""
    (folder / "leaves.py").write_text(SPIDER_FILE.format(base=site.base(), n=LEAVES, delay=0.05))
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "leaves.py", "--frontier", redis.url,
         "--crawl-id", "slow", "-o", str(feed), "--no-progress", "-s", "obey_robots=false",
         "-s", "allow_private_addresses=true", "-s", "per_host_concurrency=1",
         "-s", "heartbeat_s=0.5", "-s", "lease_ttl_s=2", *extra],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_items(feed: Path, process: subprocess.Popen[str], count: int = 3) -> None:
    """Block until the feed holds ``count`` items: the crawl is under way."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if feed.exists() and feed.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.005)  # polling a file another process writes; not synchronisation
    raise AssertionError(f"the feed never reached {count} items")


@pytest.mark.slow
def test_crawler_stop_ends_every_worker_with_3_and_run_resumes(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    parent = cli_worker(site, redis_server, tmp_path, feed, "--workers", "2")
    wait_for_items(feed, parent)
    stop = crawler_cli("stop", "slow", "--frontier", redis_server.url, cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    _, stderr = parent.communicate(timeout=30)
    assert parent.returncode == 3, stderr
    assert 0 < len(read_feed(feed)) < LEAVES

    resumed = cli_worker(site, redis_server, tmp_path, feed)
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


@pytest.mark.slow
def test_a_stopped_worker_says_how_to_resume_and_the_next_one_says_it_resumes(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    first = cli_worker(site, redis_server, tmp_path, feed)
    wait_for_items(feed, first)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 3, stderr
    hint = f"stopped; run again with --frontier {redis_server.url} --crawl-id slow to resume"
    assert stderr.splitlines()[-1] == hint
    status = crawler_cli("status", "slow", "--frontier", redis_server.url, "--json", cwd=tmp_path)
    found = json.loads(status.stdout)
    done, queued = found["counts"]["done"], found["queued"]
    assert (found["leased"], done + queued) == (0, LEAVES + 1)
    assert 1 < done < LEAVES

    again = cli_worker(site, redis_server, tmp_path, feed)
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert f"resuming crawl 'slow' ({done} pages done, {queued} queued)" in stderr
    assert "stopped; run again" not in stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


def test_the_resume_hint_names_the_frontier_without_its_password() -> None:
    settings = resolve_settings(
        CrawlJob(spider=Spider, overrides={"frontier": "redis://:s3cret@cache:6379/0"})
    )
    assert shared.resume_hint(settings, "books 1") == (
        "stopped; run again with --frontier 'redis://***@cache:6379/0' --crawl-id 'books 1'"
        " to resume"
    )


@pytest.mark.slow
def test_a_signal_to_the_parent_of_workers_stops_them_and_the_crawl_goes_on(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    parent = cli_worker(site, redis_server, tmp_path, feed, "--workers", "2")
    wait_for_items(feed, parent)
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=30)
    assert parent.returncode == 3, stderr
    hint = f"stopped; run again with --frontier {redis_server.url} --crawl-id slow to resume"
    assert stderr.splitlines()[-1] == hint  # the parent's, once: not each child's
    assert stderr.count("stopped; run again") == 1
    assert stderr.splitlines()[-2].startswith("crawl 'slow', every worker: ")
    status = crawler_cli("status", "slow", "--frontier", redis_server.url, "--json", cwd=tmp_path)
    found = json.loads(status.stdout)
    assert (found["state"], found["leased"], found["workers"]) == ("running", 0, 0)
    assert 0 < len(read_feed(feed)) < LEAVES

    resumed = cli_worker(site, redis_server, tmp_path, feed)
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert sorted(item["leaf"] for item in read_feed(feed)) == list(range(LEAVES))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://localhost:6379/0", "a frontier is a redis://"),
        ("redis://:s3cret@localhost:99999/0", "port is not a number"),
    ],
)
def test_a_bad_frontier_url_is_one_line_without_its_password(
    tmp_path: Path, url: str, says: str
) -> None:
    (tmp_path / "leaves.py").write_text(SPIDER_FILE.format(base="http://127.0.0.1:9", n=1, delay=0))
    ran = crawler_cli("run", "leaves.py", "--frontier", url, cwd=tmp_path)
    assert ran.returncode == 2
    assert says in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    assert "s3cret" not in ran.stderr


def test_an_unreachable_redis_is_one_line_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "leaves.py").write_text(SPIDER_FILE.format(base="http://127.0.0.1:9", n=1, delay=0))
    missing = f"unix://:s3cret@{tmp_path / 'nothing.sock'}"
    ran = crawler_cli("run", "leaves.py", "--frontier", missing, cwd=tmp_path, timeout=120)
    assert ran.returncode == 2, ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "s3cret" not in ran.stderr


def _hits_per_url(site: TestSite) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for hit in site.log:
        key = (hit.host, hit.path)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_the_parent_exits_with_its_worst_childs_code() -> None:
    assert workers.worst([0, 0]) == 0
    assert workers.worst([0, 3, 0]) == 3
    assert workers.worst([3, 1, 130]) == 130
    assert workers.worst([0, -signal.SIGTERM]) == 3  # ended by a stop signal while starting
    assert workers.worst([0, -signal.SIGKILL]) == 1
    assert workers.worst([]) == 0


def test_a_childs_command_line_holds_no_frontier_url(tmp_path: Path) -> None:
    overrides = {"FRONTIER": "redis://:s3cret@h:6379/0", "Crawl_Id": "x", "concurrency": "4"}
    command = workers.worker_command(
        "leaves.py",
        crawl_id="c",
        overrides=overrides,
        arguments={"start": "x"},
        config=None,
        spiders_dir=tmp_path,
        trigger="manual",
    )
    assert "s3cret" not in " ".join(command)  # -s is case-blind: so is the filter
    assert command[command.index("-s") + 1] == "concurrency=4"
    assert command[command.index("--crawl-id") + 1] == "c"  # above custom_settings
    assert "--frontier-from-env" in command
    assert "-o" not in command
    assert "--workers" not in command
    settings = resolve_settings(
        CrawlJob(spider=Spider, overrides={"frontier": overrides["FRONTIER"]})
    )
    assert workers.worker_environment(settings)["CRAWLER_FRONTIER"] == overrides["FRONTIER"]


@pytest.mark.slow
def test_a_closed_stdout_stops_a_shared_crawls_exporter_with_one_line(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "leaves.py").write_text(SPIDER_FILE.format(base=site.base(), n=LEAVES, delay=0.05))
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "leaves.py", "--frontier", redis_server.url,
         "--crawl-id", "piped", "-o", "-", "--no-progress", "-s", "obey_robots=false",
         "-s", "allow_private_addresses=true", "-s", "per_host_concurrency=1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert json.loads(process.stdout.readline())["leaf"] >= 0
    process.stdout.close()  # as `| head -1` does
    _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr
    assert stderr.decode().splitlines()[-1] == (
        "error: -o -: stdout was closed by its reader; the crawl stopped"
    )
    assert process.returncode == 1  # the crawl broke under way (README "Exit codes")


def test_each_child_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    settings = resolve_settings(CrawlJob(spider=Spider, overrides={"metrics_port": "9100"}))
    command = ["crawler", "run", "x.py"]
    ports = [workers.child_command(command, settings, i, 3)[-1] for i in range(3)]
    assert ports == ["metrics_port=9100", "metrics_port=9101", "metrics_port=9102"]
    high = resolve_settings(CrawlJob(spider=Spider, overrides={"metrics_port": "65535"}))
    with pytest.raises(ConfigError, match="above 65535"):
        workers.check_ports(high, 2)


def test_status_lines_say_when_a_running_crawl_has_no_live_worker() -> None:
    found = {
        "spider": "books", "state": "running", "queued": 17, "seen": 22, "workers": 0,
        "elapsed_s": 12.34,
    }  # fmt: skip
    first = shared.describe("b1", found)[0]
    assert first.startswith("crawl b1 (books): running for 12.3s, but no worker is live")
    assert first.endswith("17 queued, 0 leased, 22 seen; 0 workers live")
    found |= {"workers": 1}
    assert shared.describe("b1", found)[0] == (
        "crawl b1 (books): running for 12.3s; 17 queued, 0 leased, 22 seen; 1 worker live"
    )
    # A stop that only a live worker can end (a dead worker's leases lapse at its heartbeats).
    found |= {"state": "stopping", "leased": 4, "workers": 0}
    first = shared.describe("b1", found)[0]
    assert first.startswith(
        "crawl b1 (books): stopping for 12.3s, but no worker is live to end the stop"
    )
    assert "`crawler run` on this id resumes the crawl" in first


async def test_status_gives_the_crawls_wall_time_and_every_count(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    spider = leaves_spider(site)
    began = time.monotonic()
    first, second = await asyncio.gather(
        worker(spider, redis_server, tmp_path / "items.jsonl", concurrency=4),
        worker(spider, redis_server, concurrency=4),
    )
    wall = time.monotonic() - began
    settings = resolve_settings(CrawlJob(spider=spider, overrides={"frontier": redis_server.url}))
    found = await shared.status(settings, "leaves")

    elapsed = found["elapsed_s"]
    assert 0 < elapsed <= wall + 0.002  # Redis's clock in ms
    assert elapsed < first.stats.elapsed_s + second.stats.elapsed_s  # not the workers' sum
    assert found["stats"]["elapsed_s"] == elapsed
    assert found["stats"]["queued"] == found["queued"] == 0
    assert found["counts"] == {
        "done": LEAVES + 1, "failed": 0, "skipped": 0, "items": LEAVES, "refused": 0,
        "reclaimed": 0,
    }  # fmt: skip
    assert first.totals.elapsed_s == elapsed  # the exporter's totals are the same figures
    assert shared.describe("leaves", found)[:2] == [
        f"crawl leaves (leaves): finished after {elapsed:.1f}s; 0 queued, 0 leased,"
        f" {LEAVES + 1} seen; 0 workers live",
        f"committed: {LEAVES + 1} done, 0 failed, 0 skipped, {LEAVES} items; 0 outcomes"
        " refused (stale leases), 0 leases reclaimed",
    ]


async def test_a_retry_on_a_delayed_host_rests_the_delay_after_the_failed_answer(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    """With no backoff, a retry asks the gate before its failed attempt's end reached it: the
    host still rests a full delay after that answer, as the server sees it."""

    class Flaky(Spider):
        name = "flaky"
        start_urls = (site.url("/flaky/0?fail=2"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    delay = 0.3
    feed = tmp_path / "items.jsonl"
    await worker(Flaky, redis_server, feed, download_delay=delay, retry_backoff=0.0)
    assert len(read_feed(feed)) == 1
    hits = sorted(site.log, key=lambda hit: hit.started)
    assert [hit.path for hit in hits] == ["/flaky/0?fail=2"] * 3  # two 503s, then the page
    rests = [b.started - a.ended for a, b in itertools.pairwise(hits)]
    assert min(rests) >= delay, rests


@pytest.mark.xfail(
    strict=True,
    reason="review of 556c0c4: on the Redis frontier a redirect hop from another host takes no"
    " slot at the gate (RemoteScheduler.turn: spacing and pause_host only), so it reaches a"
    " delayed host while that host answers a request of its own",
)
async def test_a_hop_from_another_host_waits_for_the_delayed_hosts_answer_on_redis(
    site: TestSite, redis_server: RedisServer, tmp_path: Path
) -> None:
    """As tests/test_politeness.py's local test: host 1 (a delay, one request at a time) is
    answering a slow page when a redirect from host 0 lands on it."""
    delay = 0.3

    class Urls(Spider):
        name = "urls"
        start_urls = (
            site.url(f"/slow?delay={delay * 3}", 1),
            site.url(f"/redirect?to={site.url('/leaf/9', 1)}"),
        )

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    async with asyncio.timeout(60):
        await worker(Urls, redis_server, tmp_path / "items.jsonl", download_delay=delay)
    assert len(read_feed(tmp_path / "items.jsonl")) == 2
    assert site.peak_concurrency(1) == 1
