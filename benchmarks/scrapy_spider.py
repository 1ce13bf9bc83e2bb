"""The benchmark crawl as a Scrapy spider, run by ``scrapy runspider`` in its own venv.

    BENCH_START_URLS=http://127.0.0.1:18080/p/0.html BENCH_STATS_PATH=stats.json \\
        scrapy runspider benchmarks/scrapy_spider.py -O items.jsonl

Scrapy keys its download slots (the per-domain concurrency limit and connection bookkeeping) by
``urlparse(url).hostname``, which drops the port: 127.0.0.1:18080 and 127.0.0.1:18081 would share
one slot of CONCURRENT_REQUESTS_PER_DOMAIN. Every request therefore names its slot as host:port
in ``meta["download_slot"]``, the documented override, so that each port is its own host exactly
as in our framework (whose politeness key is host:port).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response, TextResponse


def _slot(url: str) -> dict[str, str]:
    return {"download_slot": urlsplit(url).netloc}


class CatalogueSpider(scrapy.Spider):
    """Items from every ``div.product``; follows every ``a[href]``."""

    name = "catalogue"
    start_urls = [u for u in os.environ.get("BENCH_START_URLS", "").split(",") if u]  # noqa: RUF012
    # Scrapy declares both as plain (not ClassVar) attributes that spiders override.
    custom_settings = {  # noqa: RUF012
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
        "CONCURRENT_REQUESTS_PER_IP": 0,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "FEED_EXPORT_ENCODING": "utf-8",
    }

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if not self.start_urls:
            raise ValueError("set BENCH_START_URLS to the comma-separated start URLs")
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse, meta=_slot(url))

    def parse(self, response: Response, **kwargs: Any) -> Iterator[dict[str, Any] | scrapy.Request]:
        if not isinstance(response, TextResponse):
            return
        for node in response.css("div.product"):
            yield {
                "title": node.css("h2.title::text").get(),
                "price": float(node.css("span.price::text").get() or "nan"),
                "url": response.urljoin(node.css("a.detail::attr(href)").get() or ""),
            }
        for link in response.css("a[href]"):
            request = response.follow(link, callback=self.parse)
            request.meta.update(_slot(request.url))
            yield request

    def closed(self, reason: str) -> None:
        """Write the counts in our framework's stats shape, plus Scrapy's own stats."""
        path = os.environ.get("BENCH_STATS_PATH")
        if not path or self.crawler.stats is None:
            return
        raw = self.crawler.stats.get_stats()
        prefix = "downloader/response_status_count/"
        enqueued = raw.get("scheduler/enqueued", 0)
        stats = {
            "responses_total": raw.get("response_received_count", 0),
            "items_scraped": raw.get("item_scraped_count", 0),
            # CoreStats sets elapsed_time_seconds only after this handler has run.
            "elapsed_s": (datetime.now(tz=UTC) - raw["start_time"]).total_seconds(),
            "status_counts": {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)},
            "queued_urls": enqueued - raw.get("scheduler/dequeued", 0),
            "finish_reason": reason,
            "scrapy_version": scrapy.__version__,
            "scrapy": raw,
        }
        Path(path).write_text(json.dumps(stats, indent=2, default=str) + "\n")
