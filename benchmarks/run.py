"""The benchmark runner: our crawler against Scrapy and bare httpx and aiohttp loops, on one site.

    python benchmarks/run.py [--pages 3000 --hosts 4 --runs 3 --only crawler,scrapy,bare,aiohttp]
    python benchmarks/run.py --scale        # peak RSS with 100k and 1M URLs queued

It generates the site (cached under benchmarks/.work/), serves it with nginx, creates Scrapy's venv
if missing, runs the contenders interleaved, checks every run and prints a table. See README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contenders import (
    AIOHTTP_LOOPS,
    BENCH_DIR,
    NAMES,
    WORK_DIR,
    BenchError,
    Contender,
    contenders,
    step,
)
from measure import Run, check_catalogue, check_process, measure, read_stats
from nginx import DEFAULT_BASE_PORT, Nginx, NginxError, interrupt_on_sigterm

SCALE_TARGETS = "100000,1000000"


@dataclass(frozen=True)
class Site:
    """A generated site on disk and what a correct crawl of it finds."""

    directory: Path
    expected: dict[str, Any]

    @property
    def start_urls(self) -> list[str]:
        return list(self.expected["start_urls"])


def ensure_site(args: argparse.Namespace, *, endless: bool = False) -> Site:
    """The site for these options, generated once and cached under benchmarks/.work/."""
    if endless:
        name = f"site-endless-h{args.hosts}-l{args.scale_links}-port{args.base_port}"
        options = ["--endless", "--links-per-page", str(args.scale_links)]
    else:
        links = f"-l{args.links_per_page}" if args.links_per_page else ""
        name = f"site-p{args.pages}-h{args.hosts}-s{args.seed}{links}-port{args.base_port}"
        options = ["--pages", str(args.pages), "--seed", str(args.seed)]
        if args.links_per_page:
            options += ["--links-per-page", str(args.links_per_page)]
    # The generator's own hash in the name: editing site.py makes a new site, not a stale one.
    name += "-" + hashlib.sha256((BENCH_DIR / "site.py").read_bytes()).hexdigest()[:8]
    directory = WORK_DIR / name
    if not (directory / "expected.json").exists():
        partial = WORK_DIR / f"{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [sys.executable, str(BENCH_DIR / "site.py"), str(partial)]
        command += [*options, "--hosts", str(args.hosts), "--base-port", str(args.base_port)]
        step(f"generating {name}", command, timeout_s=600)
        partial.rename(directory)
    return Site(directory, json.loads((directory / "expected.json").read_text()))


def _run_one(
    contender: Contender,
    index: int,
    site: Site,
    *,
    label: str,
    timeout_s: float,
    max_pages: int | None,
) -> tuple[Run, Path, Path]:
    """One crawl in a fresh directory, so no state from an earlier run can be resumed."""
    run_dir = WORK_DIR / "runs" / f"{label}-{contender.name}-{index + 1}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out, stats = run_dir / "items.jsonl", run_dir / "stats.json"
    # CRAWLER_* variables would change our crawler's settings behind the benchmark's back.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env |= {
        "BENCH_START_URLS": ",".join(site.start_urls),
        "BENCH_STATS_PATH": str(stats),
    }
    argv = contender.command(out, stats, max_pages)
    measurement = measure(argv, env, run_dir, run_dir / "log.txt", timeout_s)
    return Run(contender.name, index, measurement), stats, out


def _log_hint(run: Run, label: str) -> str:
    log = WORK_DIR / "runs" / f"{label}-{run.contender}-{run.index + 1}" / "log.txt"
    return f"\n    log: {log}" if not run.valid else ""


def throughput(args: argparse.Namespace, chosen: list[Contender]) -> list[Run]:
    site = ensure_site(args)
    expected = site.expected
    print(
        f"site: {expected['pages']} pages, {expected['items']} items, "
        f"{expected['not_found']} 404 URLs on {args.hosts} hosts ({site.directory.name})",
        flush=True,
    )
    runs = []
    with Nginx(site.directory, args.hosts, args.base_port):
        for index in range(args.runs):
            for contender in chosen:
                run, stats, out = _run_one(
                    contender, index, site, label="tp", timeout_s=args.timeout, max_pages=None
                )
                check_catalogue(run, expected, stats, out)
                print(run.summary() + _log_hint(run, "tp"), flush=True)
                runs.append(run)
    return runs


@dataclass
class ScaleResult:
    """A crawl stopped by its page limit, and the URLs its frontier held then."""

    target: int
    run: Run
    queued: int
    exact: bool  # the crawl reported its queue; otherwise estimated from pages fetched


def scale(args: argparse.Namespace, chosen: list[Contender]) -> list[ScaleResult]:
    """Peak RSS with a frontier of each target size: every page fetched queues ``links`` URLs."""
    site = ensure_site(args, endless=True)
    links = site.expected["links_per_page"]
    results = []
    with Nginx(site.directory, args.hosts, args.base_port):
        for target in args.scale_targets:
            for contender in chosen:
                label = f"scale{target}"
                run, stats, _ = _run_one(
                    contender,
                    0,
                    site,
                    label=label,
                    timeout_s=args.timeout * 3,
                    max_pages=math.ceil(target / links),
                )
                result = _scale_result(target, run, stats, links, len(site.start_urls))
                print(f"[{target:,} queued] " + run.summary() + _log_hint(run, label), flush=True)
                results.append(result)
    return results


def _scale_result(target: int, run: Run, stats: Path, links: int, starts: int) -> ScaleResult:
    check_process(run)
    try:
        run.stats = read_stats(stats)
    except (OSError, ValueError, AttributeError) as exc:
        run.problems.append(f"no stats ({exc.__class__.__name__})")
        return ScaleResult(target, run, 0, exact=False)
    counts = run.stats["status_counts"]
    run.pages = sum(counts.values())
    if set(counts) - {"200"}:
        run.problems.append(f"statuses {counts}: the endless site only answers 200")
    if "queued_urls" in run.stats:
        return ScaleResult(target, run, int(run.stats["queued_urls"]), exact=True)
    # Every page parsed discovered `links` new URLs; every response took one off the queue.
    estimate = counts.get("200", 0) * links + starts - run.pages
    return ScaleResult(target, run, max(estimate, 0), exact=False)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _ratio(value: float, baseline: float | None) -> str:
    if baseline is None or math.isnan(baseline) or math.isnan(value) or baseline == 0:
        return "-"
    return f"{value / baseline:.2f}"


def throughput_table(runs: list[Run], names: list[str]) -> str:
    """pages/s (median, min, max over valid runs), CPU, peak RSS, and ratios to Scrapy, the bare
    httpx loop and the faster of the bare aiohttp loops (asyncio or uvloop)."""
    medians = {
        n: _median([r.pages_per_s for r in runs if r.contender == n and r.valid]) for n in names
    }
    aiohttp = [medians[n] for n in AIOHTTP_LOOPS if n in medians and not math.isnan(medians[n])]
    best_aiohttp = max(aiohttp) if aiohttp else None
    width = max(8, *(len(n) for n in names))
    header = (
        f"{'crawler':<{width}} {'valid':>5} {'pages/s':>8} {'min':>7} {'max':>7} {'own p/s':>8} "
        f"{'wall s':>7} {'CPU s':>7} {'RSS MiB':>8} {'/scrapy':>8} {'/bare':>6} {'/aiohttp':>8}"
    )
    lines = [header, "-" * len(header)]
    for name in names:
        mine = [r for r in runs if r.contender == name]
        good = [r for r in mine if r.valid]
        if not good:
            lines.append(f"{name:<{width}} {f'0/{len(mine)}':>5}  INVALID: no valid run")
            continue
        rates = [r.pages_per_s for r in good]
        own = [r.own_pages_per_s for r in good if r.own_pages_per_s is not None]
        lines.append(
            f"{name:<{width}} {f'{len(good)}/{len(mine)}':>5} {_median(rates):>8.0f} "
            f"{min(rates):>7.0f} {max(rates):>7.0f} {_median(own):>8.0f} "
            f"{_median([r.measurement.wall_s for r in good]):>7.2f} "
            f"{_median([r.measurement.cpu_s for r in good]):>7.2f} "
            f"{_median([r.measurement.peak_rss_mib for r in good]):>8.0f} "
            f"{_ratio(medians[name], medians.get('scrapy')):>8} "
            f"{_ratio(medians[name], medians.get('bare')):>6} "
            f"{_ratio(medians[name], best_aiohttp):>8}"
        )
    return "\n".join(lines)


def scale_table(results: list[ScaleResult]) -> str:
    """Peak RSS per target, then each contender's bytes per queued URL between the targets."""
    header = (
        f"{'target':>9} {'crawler':<8} {'pages':>6} {'queued':>10} {'RSS MiB':>8} "
        f"{'wall s':>7} {'CPU s':>7}  verdict"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        m = r.run.measurement
        queued = f"{r.queued:,}" if r.exact else f"~{r.queued:,}"
        lines.append(
            f"{r.target:>9,} {r.run.contender:<8} {r.run.pages:>6} {queued:>10} "
            f"{m.peak_rss_mib:>8.0f} {m.wall_s:>7.1f} {m.cpu_s:>7.1f}  "
            f"{'ok' if r.run.valid else '; '.join(r.run.problems)}"
        )
    lines.append("")
    for name in dict.fromkeys(r.run.contender for r in results):
        mine = sorted(
            (r for r in results if r.run.contender == name and r.run.valid), key=lambda r: r.queued
        )
        if len(mine) >= 2 and mine[-1].queued > mine[0].queued:
            grown = mine[-1].run.measurement.peak_rss_mib - mine[0].run.measurement.peak_rss_mib
            per_url = grown * 2**20 / (mine[-1].queued - mine[0].queued)
            lines.append(f"{name}: {per_url:,.0f} bytes of peak RSS per queued URL")
    return "\n".join(lines)


def _save(kind: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    results = WORK_DIR / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"options": vars(args), "runs": rows}, indent=2, default=str) + "\n")
    return path


def _row(run: Run) -> dict[str, Any]:
    stats = {k: v for k, v in run.stats.items() if k != "scrapy"}
    return {
        "contender": run.contender,
        "index": run.index,
        "measurement": vars(run.measurement),
        "pages": run.pages,
        "pages_per_s": run.pages_per_s,
        "items": run.items,
        "problems": run.problems,
        "stats": stats,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender, interleaved")
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated contenders")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--links-per-page", type=int, default=None, help="fixed links per page")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per crawl (x3 in --scale)"
    )
    parser.add_argument("--scale", action="store_true", help="peak RSS at 100k and 1M queued URLs")
    parser.add_argument("--scale-links", type=int, default=100, help="links per page in --scale")
    parser.add_argument(
        "--scale-targets", default=SCALE_TARGETS, help="queued-URL counts to measure in --scale"
    )
    args = parser.parse_args(argv)
    try:
        args.scale_targets = [int(n) for n in args.scale_targets.split(",")]
    except ValueError:
        parser.error("--scale-targets takes comma-separated numbers, e.g. 100000,1000000")
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(NAMES))
    if unknown or not args.only:
        parser.error(f"--only takes some of {','.join(NAMES)}, not {unknown or 'nothing'}")
    if args.pages < args.hosts or args.runs < 1 or args.hosts < 1:
        parser.error("need --runs >= 1, --hosts >= 1 and at least one page per host")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    try:
        chosen = contenders([name for name in NAMES if name in args.only])
        names = [c.name for c in chosen]
        if args.scale:
            results = scale(args, chosen)
            print("\n" + scale_table(results))
            rows = [{"target": r.target, "queued": r.queued, **_row(r.run)} for r in results]
            saved = _save("scale", rows, args)
        else:
            runs = throughput(args, chosen)
            print("\n" + throughput_table(runs, names))
            saved = _save("throughput", [_row(r) for r in runs], args)
        print(f"\nresults: {saved}")
    except (BenchError, NginxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
