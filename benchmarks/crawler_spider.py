"""The benchmark crawl as a spider of our framework, run by ``crawler run``.

    BENCH_START_URLS=http://127.0.0.1:18080/p/0.html crawler run benchmarks/crawler_spider.py \\
        -s concurrency=64 -s per_host_concurrency=16 -s obey_robots=false \\
        -o items.jsonl --stats stats.json
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from crawler import Response, Spider

if TYPE_CHECKING:
    from crawler.request import Request


class CatalogueSpider(Spider):
    """Items from every ``div.product``; follows every ``a[href]``."""

    name = "catalogue"
    start_urls = tuple(u for u in os.environ.get("BENCH_START_URLS", "").split(",") if u)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
        for node in response.css("div.product"):
            title, price, detail = (
                node.css_first(selector) for selector in ("h2.title", "span.price", "a.detail")
            )
            if title is None or price is None or detail is None:
                continue
            yield {
                "title": title.text(),
                "price": float(price.text()),
                "url": response.urljoin(detail.attributes.get("href") or ""),
            }
        for link in response.css("a[href]"):
            yield response.follow(link, callback=self.parse)
