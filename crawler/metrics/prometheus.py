"""Prometheus metrics read at scrape time: collectors over a crawl's stats and a schedule
service's runs. The only module that imports prometheus-client (the ``crawler[metrics]`` extra).

No label names a URL or a host: a crawl of a million hosts has as many series as one of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from crawler.metrics import CrawlView, ScheduleStatus

# Every outcome a schedule's run can have, exported at 0 before the first one happens so that
# increase() and rate() see the first failure as a change.
RUN_OUTCOMES = (
    "finished",
    "stopped",
    "failed",
    "timeout",
    "degraded",
    "skipped_overlap",
    "missed",
)

# Stats counters exported as they are: (metric name, Stats attribute, help).
_COUNTERS = (
    ("crawler_requests_total", "requests_total", "HTTP requests sent, retries and robots.txt too"),
    ("crawler_pages_crawled_total", "pages_crawled", "pages whose callback ran"),
    ("crawler_items_scraped_total", "items_scraped", "items that passed the pipelines"),
    ("crawler_items_dropped_total", "items_dropped", "items a pipeline dropped or broke on"),
    ("crawler_retries_total", "retries", "retries of transient failures"),
    ("crawler_callback_errors_total", "callback_errors", "callbacks and errbacks that raised"),
    ("crawler_bytes_received_total", "bytes_received", "decoded response body bytes"),
    # The recrawl's outcomes, once the Stats model counts them.
    ("crawler_not_modified_total", "not_modified", "revisits answered 304 Not Modified"),
    ("crawler_unchanged_total", "unchanged", "revisits whose body had not changed"),
)


class CrawlCollector:
    """A running crawl's counters and gauges, read from its stats when scraped."""

    def __init__(self, crawl: CrawlView) -> None:
        self.crawl = crawl

    def __repr__(self) -> str:
        return f"<CrawlCollector {self.crawl!r}>"

    def collect(self) -> Iterator[Metric]:
        stats = self.crawl.stats
        for name, attribute, help_text in _COUNTERS:
            value = getattr(stats, attribute, None)
            if value is not None:
                yield CounterMetricFamily(name, help_text, value=value)
        yield _labelled(
            "crawler_responses_total", "responses by HTTP status", "status", stats.status_counts
        )
        yield _labelled(
            "crawler_failures_total",
            "requests that failed, by reason (an exception name or http_STATUS)",
            "reason",
            stats.failure_reasons,
        )
        skips = {reason.value: count for reason, count in stats.skips().items()}
        yield _labelled(
            "crawler_filtered_total", "requests not fetched, by reason", "reason", skips
        )
        yield GaugeMetricFamily(
            "crawler_queue_size", "requests not done yet, in flight included", value=stats.queued
        )
        yield GaugeMetricFamily(
            "crawler_requests_in_flight",
            "requests being fetched, parsed or waiting to retry",
            value=self.crawl.in_flight,
        )
        yield _histogram(self.crawl)


class LoopLagCollector:
    """The event loop's lag (see ``health.LoopLag``), of a crawl or of the schedule service."""

    def __init__(self, lag_s: Callable[[], float]) -> None:
        self._lag_s = lag_s

    def __repr__(self) -> str:
        return "<LoopLagCollector>"

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "crawler_event_loop_lag_seconds",
            "how late the event loop ran a timer, seconds",
            value=self._lag_s(),
        )


def _labelled(name: str, help_text: str, label: str, counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _histogram(crawl: CrawlView) -> Metric:
    durations = crawl.fetch_durations
    bounds = [*(repr(float(bound)) for bound in durations.bounds_s), "+Inf"]
    return HistogramMetricFamily(
        "crawler_fetch_duration_seconds",
        "time from sending a request to holding its whole response, per response",
        buckets=list(zip(bounds, durations.cumulative(), strict=True)),
        sum_value=durations.sum_s,
    )


class ScheduleCollector:
    """The ``crawler schedule`` service's runs per schedule, read from its statuses."""

    def __init__(self, statuses: Callable[[], Iterable[ScheduleStatus]]) -> None:
        self._statuses = statuses

    def __repr__(self) -> str:
        return "<ScheduleCollector>"

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "crawler_runs_total", "runs by outcome", labels=["schedule", "outcome"]
        )
        running = GaugeMetricFamily(
            "crawler_run_running", "1 while a run of the schedule is going", labels=["schedule"]
        )
        times = {
            "last_end": GaugeMetricFamily(
                "crawler_last_run_end_timestamp_seconds",
                "when the last run ended, Unix time",
                labels=["schedule"],
            ),
            "last_success": GaugeMetricFamily(
                "crawler_last_success_timestamp_seconds",
                "when the last finished run ended, Unix time",
                labels=["schedule"],
            ),
            "next_run": GaugeMetricFamily(
                "crawler_next_run_timestamp_seconds",
                "when the next run is due, Unix time",
                labels=["schedule"],
            ),
        }
        for status in self._statuses():
            outcomes = dict.fromkeys(RUN_OUTCOMES, 0) | dict(status.outcomes)
            for outcome, count in outcomes.items():
                runs.add_metric([status.name, outcome], count)
            running.add_metric([status.name], 1 if status.running else 0)
            for attribute, family in times.items():
                if (value := getattr(status, attribute)) is not None:
                    family.add_metric([status.name], value)
        yield runs
        yield running
        yield from times.values()


class Exposition:
    """The text a scrape gets: Prometheus's or OpenMetrics', as the Accept header asks."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)

    def __repr__(self) -> str:
        return f"<Exposition {self.registry!r}>"

    @classmethod
    def of(
        cls,
        lag_s: Callable[[], float],
        crawl: CrawlView | None = None,
        schedules: Callable[[], Iterable[ScheduleStatus]] | None = None,
    ) -> Exposition:
        """The loop's lag, and a crawl's metrics or the schedules' (or both)."""
        collectors: list[Collector] = [LoopLagCollector(lag_s)]
        if crawl is not None:
            collectors.append(CrawlCollector(crawl))
        if schedules is not None:
            collectors.append(ScheduleCollector(schedules))
        return cls(collectors)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The body and its Content-Type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
