"""The scale benchmark: the same number of pages fetched with a small and with large frontiers.

    python benchmarks/scale.py                         # 20k, 200k and 1M queued; 20,000 pages
    python benchmarks/scale.py --pages 5000 --sizes 20k,200k --only crawler,bare
    python benchmarks/scale.py --crawler old=/path/to/other/venv/bin/crawler   # before/after

Sizes: ``20k`` crawls the 20,000-page catalogue (its frontier stays small), ``200k`` the
200,000-page one (about 173k URLs queued after 20,000 pages), ``1M`` and ``10M`` the 200k one
from that many seeded start URLs (scale_seeds.py). Every crawl stops after ``--pages`` responses.
Our crawler and the bare loops (httpx; aiohttp on uvloop) take turns on each site, then the
frontier micro-benchmark (scale_frontier.py) times inserting a link and leasing a request at
each size. See README.md, "Scale".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contenders import BENCH_DIR, WORK_DIR, BenchError, find_crawler_cli
from nginx import Nginx, NginxError, interrupt_on_sigterm
from run import ensure_site
from scale_frontier import run_sizes
from scale_frontier import table as frontier_table

SIZES = {"20k": (20_000, 0), "200k": (200_000, 0), "1M": (200_000, 1_000_000)}
SIZES["10M"] = (200_000, 10_000_000)
BARE = {"bare": ("bare_httpx", "asyncio"), "aiohttp-uv": ("bare_aiohttp", "uvloop")}
BASE_PORT = 28080  # not the main benchmark's 18080: both may run on one machine
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    t: float  # seconds since the start
    rss_mib: float
    cpu_s: float


@dataclass
class Result:
    size: str
    contender: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    exit_code: int
    samples: list[Sample] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    requests: list[float] = field(default_factory=list)  # when nginx answered each, run clock
    problems: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return int(self.stats.get("status_counts", {}).get("200", 0))

    @property
    def queued(self) -> int:
        return int(self.stats.get("queued_urls", self.stats.get("queued", 0)))

    @property
    def crawl_s(self) -> float:
        """From the first request nginx answered to the last: seeding and start-up left out."""
        return self.requests[-1] - self.requests[0] if len(self.requests) > 1 else self.wall_s

    @property
    def crawl_cpu_s(self) -> float:
        return self.cpu_s - self._at(self.requests[0] if self.requests else 0.0).cpu_s

    def _at(self, t: float) -> Sample:
        before = [s for s in self.samples if s.t <= t]
        return before[-1] if before else Sample(0.0, 0.0, 0.0)

    def rss_curve(self, points: int = 5) -> list[float]:
        """RSS at evenly spaced moments of the crawl phase, its first request to its end."""
        start = self.requests[0] if self.requests else 0.0
        end = self.samples[-1].t if self.samples else 0.0
        return [self._at(start + (end - start) * i / (points - 1)).rss_mib for i in range(points)]


def _sample(pid: int) -> tuple[float, float] | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, StopIteration):
        return None
    return rss / 1024, (int(fields[11]) + int(fields[12])) / _TICK


def measure(argv: list[str], env: dict[str, str], run_dir: Path, timeout_s: float) -> Result:
    """Run one crawl, sampling its RSS and CPU every 0.25 s; rusage from ``os.wait4``."""
    import subprocess  # noqa: PLC0415 - beside its one use

    samples: list[Sample] = []
    with (run_dir / "log.txt").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        done = threading.Event()
        outcome: list[Any] = []

        def reap() -> None:
            outcome.append(os.wait4(process.pid, 0))
            outcome.append(time.perf_counter())
            done.set()

        threading.Thread(target=reap, daemon=True).start()
        while not done.wait(0.25):
            if (sample := _sample(process.pid)) is not None:
                samples.append(Sample(time.perf_counter() - started, *sample))
            if time.perf_counter() - started > timeout_s:
                os.killpg(process.pid, 9)
    (_, status, usage), ended = outcome
    return Result(
        size="", contender="", wall_s=ended - started, cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024, exit_code=os.waitstatus_to_exitcode(status),
        samples=samples,
    )  # fmt: skip


def _command(name: str, cli: Path | None, run_dir: Path, pages: int) -> list[str]:
    out, stats = run_dir / "items.jsonl", run_dir / "stats.json"
    if cli is not None:
        argv = [str(cli), "run", str(BENCH_DIR / "scale_spider.py"), "--no-progress"]
        for setting in ("concurrency=64", "per_host_concurrency=16", "obey_robots=false"):
            argv += ["-s", setting]
        return [*argv, "-s", f"max_pages={pages}", "-o", str(out), "--stats", str(stats)]
    module, loop = BARE[name]
    argv = [sys.executable, str(BENCH_DIR / "scale_seeds.py"), module, "-o", str(out)]
    return [*argv, "--stats", str(stats), "--max-pages", str(pages), "--event-loop", loop]


def run_one(
    size: str, name: str, cli: Path | None, *, server: Nginx, expected: dict[str, Any], args: Any
) -> Result:
    run_dir = WORK_DIR / "runs" / f"scale-{size}-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    site_pages, seeds = SIZES[size]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env |= {
        "BENCH_START_URLS": ",".join(expected["start_urls"]),
        "BENCH_STATS_PATH": str(run_dir / "stats.json"),
        "BENCH_SEEDS": str(seeds),
        "BENCH_SEED_PAGES": str(site_pages // expected["hosts"]),
        "PYTHONPATH": str(BENCH_DIR),  # scale_spider.py imports its neighbours
    }
    assert server.access_log is not None
    offset = server.access_log.stat().st_size if server.access_log.exists() else 0
    began = time.time()
    result = measure(_command(name, cli, run_dir, args.pages), env, run_dir, args.timeout)
    result.size, result.contender = size, name
    with server.access_log.open() as log:
        log.seek(offset)
        result.requests = [float(line.split()[0]) - began for line in log if line.strip()]
    try:
        result.stats = json.loads((run_dir / "stats.json").read_text())
    except (OSError, ValueError) as exc:
        result.problems.append(f"no stats ({type(exc).__name__})")
    if result.exit_code != 0:
        result.problems.append(f"exit code {result.exit_code} (log: {run_dir / 'log.txt'})")
    elif result.pages < args.pages * 0.95:
        result.problems.append(f"only {result.pages} pages")
    return result


def row(r: Result) -> str:
    pages = max(r.pages, 1)
    curve = "/".join(f"{v:.0f}" for v in r.rss_curve())
    verdict = "ok" if not r.problems else "; ".join(r.problems)
    return (
        f"{r.size:>5} {r.contender:<11} {r.pages:>6} {r.queued:>10,} {r.pages / r.wall_s:>6.0f} "
        f"{r.pages / r.crawl_s:>6.0f} {r.crawl_cpu_s * 1000 / pages:>7.2f} "
        f"{r.peak_rss_mib:>7.0f}  {curve:<24} {verdict}"
    )


def table(results: list[Result]) -> str:
    header = (
        f"{'size':>5} {'contender':<11} {'pages':>6} {'queued':>10} {'p/s':>6} {'crawl':>6} "
        f"{'CPU ms':>7} {'RSS MiB':>7}  {'RSS over the crawl':<24} verdict"
    )
    lines = [header, "-" * len(header), *(row(r) for r in results), ""]
    for name in dict.fromkeys(r.contender for r in results):
        mine = {r.size: r for r in results if r.contender == name and not r.problems}
        small = mine.get("20k")
        for size, r in mine.items():
            if small is None or r is small:
                continue
            speed = (r.pages / r.crawl_s) / (small.pages / small.crawl_s)
            growth = (r.peak_rss_mib - small.peak_rss_mib) * 1000 / max(r.queued - small.queued, 1)
            lines.append(
                f"{name} at {size} against 20k: {speed:.2f}x the crawl's pages/s, "
                f"{(r.crawl_cpu_s / r.pages) / (small.crawl_cpu_s / small.pages):.2f}x its CPU "
                f"per page, {growth:+.3f} MiB of peak RSS per 1,000 queued URLs"
            )
    return "\n".join(lines)


def crawls(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    by_site: dict[int, list[str]] = {}
    for size in args.sizes:
        by_site.setdefault(SIZES[size][0], []).append(size)
    for site_pages, sizes in by_site.items():
        site = ensure_site(
            argparse.Namespace(
                pages=site_pages, hosts=4, seed=1, links_per_page=None, base_port=BASE_PORT
            )
        )
        access_log = WORK_DIR / "nginx" / "scale-access.log"
        access_log.unlink(missing_ok=True)
        with Nginx(site.directory, 4, BASE_PORT, access_log=access_log) as server:
            for size in sizes:
                for _ in range(args.runs):
                    for name, cli in args.contenders.items():
                        result = run_one(
                            size, name, cli, server=server, expected=site.expected, args=args
                        )
                        print(row(result), flush=True)
                        results.append(result)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=20_000, help="pages each crawl fetches")
    parser.add_argument("--sizes", default="20k,200k,1M", help=f"some of {','.join(SIZES)}")
    parser.add_argument("--only", default="crawler,bare,aiohttp-uv", help="contenders")
    parser.add_argument(
        "--crawler", action="append", default=[], metavar="NAME=CLI",
        help="another `crawler` command to run beside ours (e.g. a checkout of main)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="runs of each crawl, interleaved")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per crawl")
    parser.add_argument("--no-frontier", action="store_true", help="skip the micro-benchmark")
    parser.add_argument("--frontier-only", action="store_true")
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := set(args.sizes) - set(SIZES):
        parser.error(f"--sizes takes some of {','.join(SIZES)}, not {sorted(unknown)}")
    args.contenders = {}
    for name in (n.strip() for n in args.only.split(",") if n.strip()):
        if name == "crawler":
            args.contenders[name] = find_crawler_cli()
            if args.contenders[name] is None:
                parser.error("no `crawler` command beside this Python: pip install -e .")
        elif name in BARE:
            args.contenders[name] = None
        else:
            parser.error(f"--only takes some of crawler,{','.join(BARE)}, not {name!r}")
    for spec in args.crawler:
        name, _, cli = spec.partition("=")
        if not cli or not Path(cli).exists():
            parser.error(f"--crawler takes NAME=PATH-OF-A-crawler-COMMAND, not {spec!r}")
        args.contenders[name] = Path(cli)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    results: list[Result] = []
    try:
        if not args.frontier_only:
            results = crawls(args)
            print("\n" + table(results), flush=True)
        if not args.no_frontier:
            sizes = [SIZES[s][1] or SIZES[s][0] for s in args.sizes]
            print("\nthe frontier alone (µs per URL):\n" + frontier_table(run_sizes(sizes, 20_000)))
    except (BenchError, NginxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if results:
            saved = WORK_DIR / "results" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
            saved.parent.mkdir(parents=True, exist_ok=True)
            rows = [{**vars(r), "samples": [vars(s) for s in r.samples]} for r in results]
            saved.write_text(json.dumps(rows, default=str) + "\n")
            print(f"\nresults: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
