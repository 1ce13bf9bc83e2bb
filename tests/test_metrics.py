"""Metrics and health (``crawler[metrics]``): /metrics scraped from real crawls of the loopback
site, /healthz while a callback blocks the loop, and the pure parts on their own."""

from __future__ import annotations

import asyncio
import errno
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crawler import Request, Response, Spider
from crawler.metrics.health import HOLD_S, Health, LoopLag, verdict
from crawler.metrics.prometheus import RUN_OUTCOMES, Exposition
from crawler.metrics.server import serve_metrics
from crawler.runner import CrawlJob, run, run_history
from crawler.settings import load_settings
from crawler.stats import FetchDurations, Stats
from tests.site import TestSite

ROOT = Path(__file__).resolve().parent.parent
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    # http.client, not urllib: no proxy from the environment may come between us and loopback.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def parse(text: str) -> Series:
    """Every sample of an exposition, by name and labels; the parser refuses a malformed one."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Series:
    status, text = get(port, "/metrics")
    assert status == 200
    return parse(text)


def value(series: Series, name: str, **labels: str) -> float:
    return series[name, tuple(sorted(labels.items()))]


def total(series: Series, name: str) -> float:
    return sum(v for (n, _), v in series.items() if n == name)


def is_counter(name: str) -> bool:
    return name.endswith(("_total", "_bucket", "_count", "_sum"))


async def crawl(spider: type[Spider], folder: Path, **settings: Any) -> dict[str, Any]:
    """Run ``spider`` with the metrics endpoint on; the ``--stats`` JSON it wrote."""
    settings.setdefault("allow_private_addresses", True)  # the site's 127.0.0.x hosts
    job = CrawlJob(
        spider=spider,
        overrides=settings,
        feed=folder / "items.jsonl",
        stats=folder / "stats.json",
        progress=False,
    )
    await run(job)
    return dict(json.loads((folder / "stats.json").read_text()))


@pytest.fixture
def four_hosts() -> Iterator[TestSite]:
    with TestSite(("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")) as running:
        yield running
    assert not running.errors


async def test_metrics_parse_and_counters_only_grow_during_a_four_host_crawl(
    four_hosts: TestSite, tmp_path: Path
) -> None:
    """M1 and M3: scraped every 25 pages while 4 hosts are crawled, /metrics parses, no
    counter ever goes down, and the series stay few: no label names a host or a URL."""
    port = free_port()
    scrapes: list[Series] = []

    class Graph(Spider):
        name = "graph"
        start_urls = [  # noqa: RUF012 - the Spider API
            four_hosts.url(path, host)
            for host in range(4)
            for path in ("/graph/0", "/status/404", "/status/410", "/redirect?to=/leaf/1")
        ]
        pages = 0

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            self.pages += 1
            yield {"url": response.url}
            if self.pages % 25 == 0:
                scrapes.append(await asyncio.to_thread(scrape, port))
            for request in response.follow_all(css="a[href]"):
                yield request

    stats = await crawl(Graph, tmp_path, metrics_port=port, max_retries=0)

    assert stats["pages_crawled"] > 4 * 100  # every host's graph
    assert len(scrapes) == stats["pages_crawled"] // 25
    for before, after in itertools.pairwise(scrapes):
        shrunk = {
            key: (before[key], after.get(key))
            for key in before
            if is_counter(key[0]) and after.get(key, -1.0) < before[key]
        }
        assert not shrunk
    first, last = scrapes[0], scrapes[-1]
    for name in ("crawler_pages_crawled_total", "crawler_items_scraped_total"):
        assert value(first, name) < value(last, name)
    assert total(first, "crawler_bytes_received_total") < total(
        last, "crawler_bytes_received_total"
    )
    assert value(last, "crawler_failures_total", reason="http_404") > 0
    assert value(last, "crawler_fetch_duration_seconds_count") > 0
    assert value(last, "crawler_filtered_total", reason="duplicate") > 0
    for series in scrapes:
        assert len(series) < 200
        assert {label for _, labels in series for label, _ in labels} <= {"status", "reason", "le"}


async def test_metrics_at_the_end_of_a_run_equal_the_stats_json(
    site: TestSite, tmp_path: Path
) -> None:
    """M2: a crawl whose requests form one chain (a 404 whose errback starts five paged
    pages) scrapes itself after the last page's items: nothing is left to count."""
    port = free_port()
    final: list[Series] = []

    class Chain(Spider):
        name = "chain"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(site.url("/status/404"), errback=self.failed)

        async def failed(self, failure: object) -> AsyncIterator[Request]:
            yield Request(site.url("/paged?page=1"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for name in response.css("span.name::text").getall():
                yield {"name": name}
            if (link := response.css_first("a.next")) is not None:
                yield response.follow(link)
            else:
                final.append(await asyncio.to_thread(scrape, port))

    stats = await crawl(Chain, tmp_path, metrics_port=port)

    [metrics] = final
    assert stats["pages_crawled"] == 5  # the chain ran as meant
    assert stats["failures"] == 1
    assert value(metrics, "crawler_pages_crawled_total") == stats["pages_crawled"]
    assert value(metrics, "crawler_items_scraped_total") == stats["items_scraped"]
    assert total(metrics, "crawler_failures_total") == stats["failures"]
    assert value(metrics, "crawler_failures_total", reason="http_404") == 1
    assert value(metrics, "crawler_bytes_received_total") == stats["bytes_received"]
    assert total(metrics, "crawler_responses_total") == stats["responses_total"]
    for status, count in stats["status_counts"].items():
        assert value(metrics, "crawler_responses_total", status=status) == count
    # One fetch duration per response (robots.txt is neither).
    assert value(metrics, "crawler_fetch_duration_seconds_count") == stats["responses_total"]
    assert value(metrics, "crawler_queue_size") == 1  # the page scraping itself: not done yet
    assert value(metrics, "crawler_requests_in_flight") == 1  # the page scraping itself


async def test_healthz_is_503_right_after_a_callback_blocks_the_loop_then_200(
    site: TestSite, tmp_path: Path
) -> None:
    """M4: a callback sleeps synchronously for twice the threshold. The server runs on the
    blocked loop, so a health check sent meanwhile waits, and its answer is 503; later
    checks get 200 again, while the crawl is still running."""
    port = free_port()
    threshold = 0.25
    stalled, sent, healthy = threading.Event(), threading.Event(), threading.Event()
    answers: list[tuple[int, str]] = []

    def checker() -> None:
        stalled.wait(30)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/healthz")  # the kernel queues it: the loop is blocked
        sent.set()
        response = connection.getresponse()
        answers.append((response.status, response.read().decode()))
        connection.close()
        deadline = time.monotonic() + 20
        while answers[-1][0] != 200 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the state to change; not synchronisation
            answers.append(get(port, "/healthz"))
        healthy.set()

    class Blocking(Spider):
        name = "blocking"
        start_urls = [site.url("/leaf/1")]  # noqa: RUF012 - the Spider API

        def parse(self, response: Response) -> Iterator[Request]:
            stalled.set()
            sent.wait(30)
            time.sleep(2 * threshold)  # a callback that blocks the loop
            yield Request(site.url("/leaf/2"), callback=self.after)

        async def after(self, response: Response) -> AsyncIterator[dict[str, int]]:
            await asyncio.to_thread(healthy.wait, 30)  # the server answers meanwhile
            yield {"after": 1}

    thread = threading.Thread(target=checker)
    thread.start()
    try:
        await crawl(Blocking, tmp_path, metrics_port=port, loop_lag_threshold_s=threshold)
    finally:
        healthy.set()
        sent.set()
        stalled.set()
        thread.join(30)

    assert answers[0][0] == 503, answers[0]
    assert "event loop lag" in answers[0][1]
    assert answers[-1][0] == 200, answers[-1]


def test_metrics_port_without_the_extra_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spider = tmp_path / "quiet.py"
    spider.write_text("from crawler import Spider\n\nclass Quiet(Spider):\n    name = 'quiet'\n")
    # As if prometheus-client were not installed: importing it fails.
    code = (
        "import sys; sys.modules['prometheus_client'] = None; from crawler.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "run", str(spider), "-s", "metrics_port=9100"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "pip install 'crawler[metrics]'" in result.stderr
    assert "metrics_port" in result.stderr


def test_metrics_port_in_use_is_one_line_and_exit_2(site: TestSite, tmp_path: Path) -> None:
    in_use = os.strerror(errno.EADDRINUSE)
    spider = tmp_path / "one.py"
    spider.write_text(
        "from crawler import Spider\n\n"
        f"class One(Spider):\n    name = 'one'\n    start_urls = [{site.url('/leaf/1')!r}]\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "crawler", "run", str(spider), "--no-progress",
             "-o", "items.jsonl", "--state", "state.db", "-s", f"metrics_port={port}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line == f"error: metrics_port {port}: cannot listen on 127.0.0.1:{port}: {in_use}"
    assert site.hits("/leaf/1") == 0
    assert run_history(tmp_path / "state.db")[0] == []  # refused before a run was begun


# The pure parts.


def test_fetch_durations_fill_cumulative_buckets() -> None:
    durations = FetchDurations((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):
        durations.observe(seconds)
    assert durations.cumulative() == [2, 4, 5]  # le=0.1 holds 0.1 itself; +Inf holds all
    assert durations.count == 5
    assert durations.sum_s == pytest.approx(8.65)


def test_loop_lag_reads_an_overdue_ticker_then_holds_the_peak() -> None:
    now = [100.0]
    lag = LoopLag(threshold_s=1.0, clock=lambda: now[0])
    lag.due_at = 100.1  # the ticker sleeps until then
    assert lag.lag_s() == 0.0
    now[0] = 102.1  # the loop was blocked; the ticker has not run yet
    assert lag.lag_s() == pytest.approx(2.0)
    lag.measured(2.0)  # the ticker ran
    lag.due_at = 102.2
    now[0] = 102.1 + HOLD_S / 2
    lag.measured(0.001)
    assert lag.lag_s() == pytest.approx(2.0)  # still held
    now[0] = 102.2 + HOLD_S
    lag.measured(0.001)
    lag.due_at = now[0] + lag.interval_s
    assert lag.lag_s() == pytest.approx(0.001)


@dataclass
class Crawl:
    stats: Stats = field(default_factory=Stats)
    in_flight: int = 0
    fetch_durations: FetchDurations = field(default_factory=FetchDurations)
    ticked_at: float | None = None


def test_health_needs_a_low_lag_and_a_recent_progress_tick() -> None:
    now = [50.0]
    lag = LoopLag(threshold_s=1.0, clock=lambda: now[0])
    crawl = Crawl()
    health = Health(lag, 1.0, crawl, clock=lambda: now[0])
    assert health.check().healthy  # no tick yet: the crawl is starting
    crawl.ticked_at = 50.0
    assert health.check().healthy
    now[0] = 53.0  # three thresholds since the last tick
    assert health.check().healthy
    now[0] = 53.5
    assert not health.check().healthy
    assert "progress tick" in health.check().reason
    assert not verdict(1.0, 1.0).healthy
    assert verdict(0.99, 1.0, tick_age_s=0.1).healthy


@dataclass
class Schedule:
    name: str
    outcomes: Mapping[str, int]
    running: bool = False
    last_end: float | None = None
    last_success: float | None = None
    next_run: float | None = None


def test_schedule_metrics_show_every_outcome_and_the_times_that_are_known() -> None:
    schedules = [
        Schedule("books", {"finished": 5, "missed": 1}, True, 1_800_000_000.0, 1_799_000_000.0,
                 1_800_003_600.0),
        Schedule("news", {}, next_run=1_800_000_060.0),
    ]  # fmt: skip
    body, content_type = Exposition.of(lambda: 0.003, schedules=lambda: schedules).render("")
    series = parse(body.decode())

    assert content_type.startswith("text/plain")
    for name in ("books", "news"):
        for outcome in RUN_OUTCOMES:
            expected = {"books": {"finished": 5, "missed": 1}}.get(name, {}).get(outcome, 0)
            assert value(series, "crawler_runs_total", schedule=name, outcome=outcome) == expected
    assert value(series, "crawler_run_running", schedule="books") == 1
    assert value(series, "crawler_run_running", schedule="news") == 0
    assert value(series, "crawler_last_run_end_timestamp_seconds", schedule="books") == 1.8e9
    assert value(series, "crawler_last_success_timestamp_seconds", schedule="books") == 1.799e9
    assert value(series, "crawler_next_run_timestamp_seconds", schedule="news") == 1_800_000_060
    assert ("crawler_last_run_end_timestamp_seconds", (("schedule", "news"),)) not in series
    assert value(series, "crawler_event_loop_lag_seconds") == 0.003


async def test_the_schedule_service_serves_its_runs_and_its_health() -> None:
    """What ``crawler schedule`` wires in: its statuses, read at each scrape."""
    port = free_port()
    settings = load_settings(overrides={"metrics_port": port})
    books = Schedule("books", {"finished": 1}, running=True)
    async with serve_metrics(settings, schedules=lambda: [books]):
        first = await asyncio.to_thread(scrape, port)
        books.outcomes = {"finished": 2}
        second = await asyncio.to_thread(scrape, port)
        health = await asyncio.to_thread(get, port, "/healthz")
    assert value(first, "crawler_runs_total", schedule="books", outcome="finished") == 1
    assert value(second, "crawler_runs_total", schedule="books", outcome="finished") == 2
    assert not any(name.startswith("crawler_pages") for name, _ in second)
    assert health[0] == 200


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it() -> None:
    crawl = Crawl()
    crawl.stats.pages_crawled = 3
    crawl.fetch_durations.observe(0.2)
    accept = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
    body, content_type = Exposition.of(lambda: 0.0, crawl=crawl).render(accept)
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"crawler_pages_crawled_total 3.0" in body
