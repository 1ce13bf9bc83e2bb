"""The frontier alone: what inserting a link and leasing a request cost as the frontier grows.

    python benchmarks/scale_frontier.py --sizes 20000,200000,1000000

For each size, a fresh process fills a new SqliteFrontier with that many queued requests (four
hosts, batches of 1,000 as a crawl's seeding adds them), then times, per URL:

- ``insert new``: links never seen, 45 to a page, committed every 200 as the engine flushes;
- ``insert known``: links queued long ago (past the in-memory recent set: the database decides);
- ``lease``: ``lease(host, 64)`` round the hosts, each request then completed and committed.

Wall and CPU (all threads: the aiosqlite one too) microseconds per URL, the state file's size,
and the process's peak RSS, so that a frontier that grows in memory shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from crawler.frontier import Outcome, RequestState
from crawler.frontier.sqlite import SqliteFrontier
from crawler.request import Request

HOSTS = 4
LINKS_PER_PAGE = 45
FLUSH_EVERY = 200  # as crawler.engine.FLUSH_EVERY
LEASE = 64  # the scheduler's lease_size at per_host_concurrency=16
FILL_BATCH = 1000


def _url(n: int) -> str:
    return f"http://127.0.0.1:{18080 + n % HOSTS}/p/{n // HOSTS}.html?frontier-bench"


def _requests(start: int, stop: int) -> Iterator[Request]:
    return (Request(_url(n)) for n in range(start, stop))


async def _timed(step: Callable[[], Coroutine[Any, Any, int]]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = await step()
    return time.perf_counter() - wall, time.process_time() - cpu, count


async def _fill(frontier: SqliteFrontier, size: int) -> int:
    for start in range(0, size, FILL_BATCH):
        frontier.add(list(_requests(start, min(size, start + FILL_BATCH))))
        await frontier.flush()
    return size


async def _insert(frontier: SqliteFrontier, urls: Iterator[Request], count: int) -> int:
    done = 0
    while done < count:
        page = [next(urls) for _ in range(min(LINKS_PER_PAGE, count - done))]
        frontier.add(page)
        done += len(page)
        if frontier.pending_writes >= FLUSH_EVERY:
            await frontier.flush()
    await frontier.flush()
    return done


async def _lease(frontier: SqliteFrontier, count: int) -> int:
    leased, host = 0, 0
    while leased < count:
        batch = await frontier.lease(f"127.0.0.1:{18080 + host % HOSTS}", LEASE)
        host += 1
        for request in batch:
            frontier.complete(Outcome(request, RequestState.DONE, status=200))
            if frontier.pending_writes >= FLUSH_EVERY:
                await frontier.flush()
        leased += len(batch)
    await frontier.flush()
    return leased


async def measure(size: int, ops: int, directory: Path) -> dict[str, Any]:
    frontier = SqliteFrontier(directory / "state.db")
    await frontier.open("frontier-bench")
    try:
        result: dict[str, Any] = {"size": size}
        wall, cpu, _ = await _timed(lambda: _fill(frontier, size))
        result["fill"] = (wall * 1e6 / size, cpu * 1e6 / size)
        fresh = _requests(size, size + ops)
        wall, cpu, n = await _timed(lambda: _insert(frontier, fresh, ops))
        result["insert_new"] = (wall * 1e6 / n, cpu * 1e6 / n)
        # Known URLs spread over the whole frontier, none of them in the recent set any more.
        step = max(1, size // ops)
        known = (Request(_url(i)) for i in range(0, size, step))
        wall, cpu, n = await _timed(lambda: _insert(frontier, known, min(ops, size // step)))
        result["insert_known"] = (wall * 1e6 / n, cpu * 1e6 / n)
        wall, cpu, n = await _timed(lambda: _lease(frontier, ops))
        result["lease"] = (wall * 1e6 / n, cpu * 1e6 / n)
    finally:
        await frontier.close()
    return result


def _one(size: int, ops: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="frontier-bench-") as folder:
        result = asyncio.run(measure(size, ops, Path(folder)))
        result["db_mib"] = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_sizes(sizes: list[int], ops: int) -> list[dict[str, Any]]:
    """Each size in its own process, so each peak RSS is its own."""
    results = []
    for size in sizes:
        argv = [sys.executable, __file__, "--one", str(size), "--ops", str(ops)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ)
        results.append(json.loads(out.stdout))
        print(f"[frontier {size:,}] " + format_row(results[-1]), file=sys.stderr, flush=True)
    return results


def format_row(r: dict[str, Any]) -> str:
    def pair(key: str) -> str:
        wall, cpu = r[key]
        return f"{wall:>7.1f} {cpu:>6.1f}"

    return (
        f"{r['size']:>10,} {pair('fill')} {pair('insert_new')} {pair('insert_known')} "
        f"{pair('lease')} {r['db_mib']:>7.0f} {r['peak_rss_mib']:>7.0f}"
    )


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'queued':>10} {'fill µs':>7} {'cpu':>6} {'new µs':>7} {'cpu':>6} {'known µs':>7} "
        f"{'cpu':>6} {'lease µs':>7} {'cpu':>6} {'DB MiB':>7} {'RSS MiB':>7}"
    )
    return "\n".join([header, "-" * len(header), *(format_row(r) for r in results)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,200000,1000000", help="queued requests")
    parser.add_argument("--ops", type=int, default=20_000, help="URLs timed per operation")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(_one(args.one, args.ops)))
        return
    sizes = [int(n) for n in args.sizes.split(",")]
    print(table(run_sizes(sizes, args.ops)))


if __name__ == "__main__":
    main()
