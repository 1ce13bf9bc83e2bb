"""Seeded start URLs for the scale runs, and the bare loops run with them.

A scale run with N seeds starts from the site's start URLs and N more: catalogue pages with a
query that makes each URL distinct (nginx serves the page and ignores the query), spread over the
hosts. So a crawl's frontier holds about N URLs from its first second, whatever it fetches.

    BENCH_START_URLS=... BENCH_SEEDS=1000000 BENCH_SEED_PAGES=50000 \\
        python benchmarks/scale_seeds.py bare_httpx -o items.jsonl --max-pages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def start_urls() -> list[str]:
    return [u for u in os.environ.get("BENCH_START_URLS", "").split(",") if u]


def seed_urls(starts: list[str], count: int, pages_per_host: int) -> Iterator[str]:
    """``count`` distinct URLs of catalogue pages, round the hosts of ``starts``."""
    origins = [url.split("/p/", 1)[0] for url in starts]
    for n in range(count):
        origin = origins[n % len(origins)]
        yield f"{origin}/p/{(n // len(origins)) % pages_per_host}.html?seed={n}"


def from_env() -> Iterator[str]:
    """The start URLs, then the seeds that BENCH_SEEDS and BENCH_SEED_PAGES ask for."""
    starts = start_urls()
    yield from starts
    count = int(os.environ.get("BENCH_SEEDS", "0"))
    if count:
        yield from seed_urls(starts, count, int(os.environ["BENCH_SEED_PAGES"]))


def main(argv: list[str] | None = None) -> None:
    """Run a bare loop (bare_httpx or bare_aiohttp) on the seeded start URLs: the URLs go
    straight into its queue from a generator, never through one huge string."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("loop", choices=("bare_httpx", "bare_aiohttp"))
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host-concurrency", type=int, default=16)
    parser.add_argument("--max-pages", type=int, default=None)
    parser.add_argument("--event-loop", dest="event_loop", default="asyncio")
    args = parser.parse_args(argv)
    bare = importlib.import_module(args.loop)
    factory = bare.loop_factory(args.event_loop) if hasattr(bare, "loop_factory") else None
    with asyncio.Runner(loop_factory=factory) as runner:
        stats = runner.run(bare.crawl(args, from_env()))
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    main()
