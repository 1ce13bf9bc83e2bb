"""Redis frontier figures: one worker on a loopback Redis against the SQLite frontier, two workers
against one on a latency-bound site and on the CPU-bound speed site, and Redis's CPU per page.

    python benchmarks/redis_frontier.py [--pages 3000 --hosts 4 --runs 3 --redis-port 16379]

It reuses run.py's generated site (cached under benchmarks/.work/) and nginx for the speed site;
the latency-bound site is the same pages answered after ``--latency`` seconds (50 ms) by a small
asyncio server in its own process. redis-server (Debian's ``redis-server`` package) runs on
127.0.0.1 with the persistence the README documents (``appendonly yes``, ``appendfsync always``),
its files under benchmarks/.work/redis/. A crawl of N workers is N ``crawler run`` processes on
one crawl id, the first with ``-o`` (the exporter, which crawls too); its wall time runs from the
first start to the last exit. Every crawl is checked against the site's expected pages and items.
Nothing here is a test and no figure gates anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contenders import BENCH_DIR, WORK_DIR, BenchError, find_crawler_cli
from measure import Measurement, Run, check_catalogue
from nginx import DEFAULT_BASE_PORT, Nginx, NginxError, interrupt_on_sigterm
from run import Site, ensure_site

CONCURRENCY = 64  # the speed benchmark's limits (benchmarks/README.md)
PER_HOST = 16
LATENCY_CONCURRENCY = 16  # per worker on the latency-bound site
# The latency-bound site's per-host limit (cluster-wide) is above what two workers use: at 16 a
# host, as on the speed site, two workers' 32 slots would wait on the hosts that still have
# pages left (a bare aiohttp loop at 32 requests gets 1.73x its pages/s at 16 with 16 a host,
# 1.95x with 32), and the ratio would measure the site, not the workers.
LATENCY_PER_HOST = 2 * LATENCY_CONCURRENCY


@dataclass
class Crawl:
    """One measured crawl: which frontier, how many workers, and Redis's CPU seconds in it."""

    label: str
    run: Run
    workers: int
    redis_cpu_s: float | None = None

    @property
    def redis_ms_per_page(self) -> float | None:
        if self.redis_cpu_s is None or not self.run.pages:
            return None
        return 1000 * self.redis_cpu_s / self.run.pages


class Redis:
    """redis-server on 127.0.0.1:port, appendfsync always, emptied before each crawl."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.folder = WORK_DIR / "redis"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<Redis 127.0.0.1:{self.port} pid={pid}>"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("no redis-server: apt-get install redis-server")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port),
                   "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
                   "--appendfsync", "always", "--maxmemory-policy", "noeviction"]  # fmt: skip
        log = (self.folder / "redis.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while self._cli("PING") != "PONG":
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise BenchError(f"redis-server did not start; see {self.folder / 'redis.log'}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def _cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                                capture_output=True, text=True, check=False)  # fmt: skip
        return result.stdout.strip()

    def flush(self) -> None:
        self._cli("FLUSHALL")

    def cpu_s(self) -> float:
        """The server's own CPU time so far (INFO cpu: used_cpu_sys + used_cpu_user)."""
        fields = dict(
            line.split(":", 1) for line in self._cli("INFO", "cpu").splitlines() if ":" in line
        )
        return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


# -- the latency-bound site ----------------------------------------------------------------------


def serve_slow(site_dir: Path, hosts: int, base_port: int, latency_s: float) -> None:
    """Serve the generated site, every reply ``latency_s`` late (run in its own process)."""
    pages: dict[tuple[int, str], bytes] = {}
    for host in range(hosts):
        for path in (site_dir / f"host{host}").rglob("*.html"):
            relative = "/" + path.relative_to(site_dir / f"host{host}").as_posix()
            pages[host, relative] = path.read_bytes()

    async def answer(host: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode().split("#")[0]
                body = pages.get((host, target))
                await asyncio.sleep(latency_s)
                status = "200 OK" if body is not None else "404 Not Found"
                body = body if body is not None else b"not found"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        for host in range(hosts):
            await asyncio.start_server(
                lambda r, w, h=host: answer(h, r, w), "127.0.0.1", base_port + host, backlog=1024
            )
        print("ready", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # noqa: PLC0415 - the crawler's own dependency; plain asyncio without it

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


class SlowSite:
    """``serve_slow`` in a child process, for a ``with`` block."""

    def __init__(self, site: Site, hosts: int, base_port: int, latency_s: float) -> None:
        self.command = [sys.executable, __file__, "--serve-slow", str(site.directory),
                        "--hosts", str(hosts), "--base-port", str(base_port),
                        "--latency", str(latency_s)]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SlowSite:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise BenchError("the latency-bound site did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


# -- crawls ----------------------------------------------------------------------------------


def _reap(pid: int, into: dict[int, tuple[float, int, Any]]) -> None:
    _, status, usage = os.wait4(pid, 0)
    into[pid] = (time.perf_counter(), status, usage)


def crawl(
    label: str,
    site: Site,
    index: int,
    *,
    redis: Redis | None,
    workers: int,
    concurrency: int,
    per_host: int = PER_HOST,
) -> Crawl:
    """``workers`` crawler processes on one crawl (SQLite when ``redis`` is None: one process)."""
    cli = find_crawler_cli()
    if cli is None:
        raise BenchError("no `crawler` command beside this Python or on PATH (pip install -e .)")
    run_dir = WORK_DIR / "runs" / f"redis-{label}-{index + 1}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out, stats = run_dir / "items.jsonl", run_dir / "stats.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["BENCH_START_URLS"] = ",".join(site.start_urls)
    base = [str(cli), "run", str(BENCH_DIR / "crawler_spider.py"), "--no-progress",
            "-s", f"concurrency={concurrency}", "-s", f"per_host_concurrency={per_host}",
            "-s", "obey_robots=false"]  # fmt: skip
    if redis is not None:
        redis.flush()
        base += ["--frontier", redis.url, "--crawl-id", f"bench-{label}-{index}"]
    cpu_before = redis.cpu_s() if redis is not None else 0.0
    reaped: dict[int, tuple[float, int, Any]] = {}
    started = time.perf_counter()
    processes = []
    for n in range(workers):
        argv = [*base, "-o", str(out), "--stats", str(stats)] if n == 0 else base
        with (run_dir / f"worker-{n}.log").open("wb") as log:
            processes.append(subprocess.Popen(argv, cwd=run_dir, env=env, stdout=log,
                                              stderr=log, start_new_session=True))  # fmt: skip
    reapers = [threading.Thread(target=_reap, args=(p.pid, reaped)) for p in processes]
    for reaper in reapers:
        reaper.start()
    for reaper in reapers:
        reaper.join()
    redis_cpu = redis.cpu_s() - cpu_before if redis is not None else None
    ends = [reaped[p.pid] for p in processes]
    codes = [os.waitstatus_to_exitcode(status) for _, status, _ in ends]
    measurement = Measurement(
        wall_s=max(end for end, _, _ in ends) - started,
        cpu_s=sum(u.ru_utime + u.ru_stime for _, _, u in ends),
        peak_rss_mib=max(u.ru_maxrss for _, _, u in ends) / 1024,
        exit_code=next((code for code in codes if code != 0), 0),
    )
    run = Run(label, index, measurement)
    if redis is not None and stats.exists():
        # The exporter's own counts are its part; the crawl's, as committed, are its "totals".
        totals = json.loads(stats.read_text()).get("totals") or {}
        stats = run_dir / "cluster-stats.json"
        stats.write_text(json.dumps(totals))
    check_catalogue(run, site.expected, stats, out)
    result = Crawl(label, run, workers, redis_cpu)
    print(_line(result), flush=True)
    return result


def _line(crawl: Crawl) -> str:
    redis = f", Redis {crawl.redis_ms_per_page:.3f} ms CPU/page" if crawl.redis_ms_per_page else ""
    return crawl.run.summary().replace(crawl.run.contender, f"{crawl.label:<16}", 1) + redis


def _median(crawls: list[Crawl], label: str) -> float:
    values = [c.run.pages_per_s for c in crawls if c.label == label and c.run.valid]
    return statistics.median(values) if values else 0.0


def report(crawls: list[Crawl]) -> str:
    rows = ["| crawl | workers | pages/s (median) | CPU s (all workers) | Redis ms CPU/page |",
            "|---|---|---|---|---|"]  # fmt: skip
    for label in dict.fromkeys(c.label for c in crawls):
        mine = [c for c in crawls if c.label == label and c.run.valid]
        if not mine:
            rows.append(f"| {label} | - | no valid run | - | - |")
            continue
        cpu = statistics.median(c.run.measurement.cpu_s for c in mine)
        per_page = [c.redis_ms_per_page for c in mine if c.redis_ms_per_page is not None]
        redis = f"{statistics.median(per_page):.3f}" if per_page else "-"
        rows.append(f"| {label} | {mine[0].workers} | {_median(crawls, label):.0f} | "
                    f"{cpu:.1f} | {redis} |")  # fmt: skip

    def ratio(a: str, b: str) -> str:
        low = _median(crawls, b)
        return f"{_median(crawls, a) / low:.2f}" if low else "-"

    rows += [
        "",
        f"redis 1 worker / sqlite: {ratio('redis-1', 'sqlite')} (target >= 0.85); "
        f"latency-bound: {ratio('latency-redis-1', 'latency-sqlite')}",
        f"latency-bound, 2 workers / 1: {ratio('latency-redis-2', 'latency-redis-1')} "
        "(target >= 1.8)",
        f"CPU-bound, 2 workers / 1: {ratio('redis-2', 'redis-1')}",
    ]
    return "\n".join(rows)


def benchmark(args: argparse.Namespace) -> list[Crawl]:
    site = ensure_site(args)
    print(f"site: {site.expected['pages']} pages, {site.expected['items']} items", flush=True)
    crawls: list[Crawl] = []
    with Redis(args.redis_port) as redis:
        with Nginx(site.directory, args.hosts, args.base_port):
            for index in range(args.runs):
                crawls.append(crawl("sqlite", site, index, redis=None, workers=1,
                                    concurrency=CONCURRENCY))  # fmt: skip
                for workers in (1, 2):
                    crawls.append(crawl(f"redis-{workers}", site, index, redis=redis,
                                        workers=workers, concurrency=CONCURRENCY))  # fmt: skip
        with SlowSite(site, args.hosts, args.base_port, args.latency):
            for index in range(args.runs):
                crawls.append(crawl("latency-sqlite", site, index, redis=None, workers=1,
                                    concurrency=LATENCY_CONCURRENCY,
                                    per_host=LATENCY_PER_HOST))  # fmt: skip
                for n in (1, 2):
                    crawls.append(crawl(f"latency-redis-{n}", site, index, redis=redis,
                                        workers=n, concurrency=LATENCY_CONCURRENCY,
                                        per_host=LATENCY_PER_HOST))  # fmt: skip
    return crawls


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs of each crawl, interleaved")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument("--redis-port", type=int, default=16379)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per reply")
    parser.add_argument("--serve-slow", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.links_per_page = None  # run.ensure_site's site options
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_slow is not None:
        serve_slow(args.serve_slow, args.hosts, args.base_port, args.latency)
        return 0
    interrupt_on_sigterm()
    try:
        crawls = benchmark(args)
    except (BenchError, NginxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print("\n" + report(crawls))
    saved = WORK_DIR / "results" / f"redis-{time.strftime('%Y%m%dT%H%M%S')}.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"label": c.label, "workers": c.workers, "pages_per_s": c.run.pages_per_s,
             "cpu_s": c.run.measurement.cpu_s, "redis_ms_per_page": c.redis_ms_per_page,
             "problems": c.run.problems} for c in crawls]  # fmt: skip
    saved.write_text(json.dumps(rows, indent=2))
    print(f"\nresults: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
