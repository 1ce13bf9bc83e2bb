"""The scale runs' spider: the benchmark crawl, started from the seeded start URLs.

    BENCH_START_URLS=... BENCH_SEEDS=1000000 BENCH_SEED_PAGES=50000 \\
        crawler run benchmarks/scale_spider.py -s max_pages=20000 ...
"""

from __future__ import annotations

from collections.abc import Iterator

from crawler_spider import CatalogueSpider
from scale_seeds import from_env

from crawler import Request


class ScaleSpider(CatalogueSpider):
    name = "scale"

    def start_requests(self) -> Iterator[Request]:
        for url in from_env():
            yield Request(url, callback=self.parse)
