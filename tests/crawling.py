"""Running a crawl in-process from a test, and reading what it wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler import Spider
from crawler.runner import CrawlJob, run
from crawler.stats import Stats


@dataclass
class Crawled:
    stats: Stats
    items: list[dict[str, Any]]


async def crawl(
    spider: type[Spider],
    folder: Path,
    *,
    state: Path | None = None,
    allow_private_addresses: bool = True,
    **settings: Any,
) -> Crawled:
    """Crawl with ``spider`` and the given settings; items are read back from a JSONL feed.

    The test site's hosts are loopback addresses (127.0.0.1-3), which the address guard refuses
    but for a crawl's start hosts: crawls that are not about the guard may reach all of them.
    The guard's own tests pass ``allow_private_addresses=False``.
    """
    feed = folder / "items.jsonl"
    settings["allow_private_addresses"] = allow_private_addresses
    job = CrawlJob(spider=spider, overrides=settings, feed=feed, state=state, progress=False)
    result = await run(job)
    lines = feed.read_text(encoding="utf-8").splitlines()
    return Crawled(result.stats, [json.loads(line) for line in lines])
