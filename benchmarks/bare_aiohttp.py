"""The practical ceiling: the benchmark crawl as a bare asyncio loop over one aiohttp session and
selectolax, on asyncio's own event loop or on uvloop (``--loop uvloop``).

BENCH_START_URLS=http://127.0.0.1:18080/p/0.html python benchmarks/bare_aiohttp.py -o items.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from selectolax.lexbor import LexborHTMLParser

RETRY_TIMES = 2  # Scrapy's default, as in bare_httpx.py


class Crawl:
    """A seen set, a queue, N workers and a semaphore per host:port (bare_httpx.py's shape)."""

    def __init__(
        self, session: aiohttp.ClientSession, out: TextIO, args: argparse.Namespace
    ) -> None:
        self.session = session
        self.out = out
        self.concurrency: int = args.concurrency
        self.per_host: int = args.per_host_concurrency
        self.max_pages: int | None = args.max_pages
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen: set[str] = set()
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.status_counts: Counter[int] = Counter()
        self.items = 0
        self.errors = 0
        self.done = asyncio.Event()

    def enqueue(self, url: str) -> None:
        url = urldefrag(url).url
        if url not in self.seen and url.startswith(("http://", "https://")):
            self.seen.add(url)
            self.queue.put_nowait(url)

    async def run(self, start_urls: list[str]) -> None:
        for url in start_urls:
            self.enqueue(url)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.worker()) for _ in range(self.concurrency)]
            tasks.append(group.create_task(self.wait_drained()))
            await self.done.wait()
            for task in tasks:
                task.cancel()

    async def wait_drained(self) -> None:
        await self.queue.join()
        self.done.set()

    async def worker(self) -> None:
        while True:
            url = await self.queue.get()
            try:
                await self.visit(url)
            finally:
                self.queue.task_done()

    async def visit(self, url: str) -> None:
        slot = self.slots.setdefault(urlsplit(url).netloc, asyncio.Semaphore(self.per_host))
        async with slot:
            fetched = await self.fetch(url)
        if fetched is None:
            return
        status, final_url, text = fetched
        self.status_counts[status] += 1
        if self.max_pages and self.status_counts.total() >= self.max_pages:
            self.done.set()
        if 200 <= status < 300:
            self.parse(final_url, text)

    async def fetch(self, url: str) -> tuple[int, str, str] | None:
        for attempt in range(RETRY_TIMES + 1):
            try:
                async with self.session.get(url) as response:
                    return response.status, str(response.url), await response.text()
            except (aiohttp.ClientError, TimeoutError):
                if attempt == RETRY_TIMES:
                    self.errors += 1
        return None

    def parse(self, url: str, text: str) -> None:
        tree = LexborHTMLParser(text)
        for node in tree.css("div.product"):
            title, price, detail = (
                node.css_first(s) for s in ("h2.title", "span.price", "a.detail")
            )
            if title is None or price is None or detail is None:
                continue
            href = detail.attributes.get("href") or ""
            item = {"title": title.text(), "price": float(price.text()), "url": urljoin(url, href)}
            self.out.write(json.dumps(item) + "\n")
            self.items += 1
        for link in tree.css("a[href]"):
            self.enqueue(urljoin(url, (link.attributes.get("href") or "").strip()))

    def stats(self, elapsed_s: float) -> dict[str, object]:
        return {
            "responses_total": self.status_counts.total(),
            "items_scraped": self.items,
            "elapsed_s": round(elapsed_s, 3),
            "status_counts": {str(code): n for code, n in sorted(self.status_counts.items())},
            "errors": self.errors,
            "seen_urls": len(self.seen),
            "queued_urls": self.queue.qsize(),
        }


async def crawl(args: argparse.Namespace, start_urls: list[str]) -> dict[str, object]:
    # The same pool limit as bare_httpx.py; aiohttp's per-host limit is left to the semaphores.
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    started = time.perf_counter()
    with args.output.open("w", encoding="utf-8") as out:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30.0)
        ) as session:
            state = Crawl(session, out, args)
            await state.run(start_urls)
    return state.stats(time.perf_counter() - started)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        return uvloop.new_event_loop
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="items, one JSON a line")
    parser.add_argument("--stats", type=Path, help="write the counts here too")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host-concurrency", type=int, default=16)
    parser.add_argument(
        "--max-pages", type=int, default=None, help="stop after this many responses"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    start_urls = [u for u in os.environ.get("BENCH_START_URLS", "").split(",") if u]
    if not start_urls:
        parser.error("set BENCH_START_URLS to the comma-separated start URLs")
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        stats = runner.run(crawl(args, start_urls))
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
