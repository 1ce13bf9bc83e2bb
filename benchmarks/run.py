"""The benchmark runner: our crawler against Scrapy and a bare httpx loop, on one local site.

    python benchmarks/run.py [--pages 3000 --hosts 4 --runs 3 --only crawler,scrapy,bare]
    python benchmarks/run.py --scale        # peak RSS with 100k and 1M URLs queued

It generates the site (cached under benchmarks/.work/), serves it with nginx, creates Scrapy's venv
if missing, runs the contenders interleaved, checks every run and prints a table. See README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import Run, check_catalogue, check_process, measure, read_stats
from nginx import DEFAULT_BASE_PORT, Nginx, NginxError, interrupt_on_sigterm

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
SCRAPY_VENV = WORK_DIR / "scrapy-venv"
SCRAPY_REQUIREMENT = "scrapy>=2.13,<3"  # 2.13 brought the async start() the spider uses
CONTENDERS = ("crawler", "scrapy", "bare")
CONCURRENCY = 64
PER_HOST_CONCURRENCY = 16
SCALE_TARGETS = (100_000, 1_000_000)


class BenchError(RuntimeError):
    """A set-up step failed; the message says which and why."""


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
    directory = WORK_DIR / name
    if not (directory / "expected.json").exists():
        partial = WORK_DIR / f"{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [sys.executable, str(BENCH_DIR / "site.py"), str(partial)]
        command += [*options, "--hosts", str(args.hosts), "--base-port", str(args.base_port)]
        _step(f"generating {name}", command, timeout_s=600)
        partial.rename(directory)
    return Site(directory, json.loads((directory / "expected.json").read_text()))


def ensure_scrapy() -> Path:
    """``scrapy`` in its own venv (benchmarks/.work/scrapy-venv), installed from PyPI if missing."""
    scrapy = SCRAPY_VENV / "bin" / "scrapy"
    marker = SCRAPY_VENV / ".installed"
    if scrapy.exists() and marker.exists():
        return scrapy
    shutil.rmtree(SCRAPY_VENV, ignore_errors=True)
    _step("creating Scrapy's venv", [sys.executable, "-m", "venv", str(SCRAPY_VENV)], 300)
    pip = [str(SCRAPY_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _step(f"installing {SCRAPY_REQUIREMENT}", [*pip, SCRAPY_REQUIREMENT], timeout_s=900)
    marker.write_text(SCRAPY_REQUIREMENT + "\n")
    return scrapy


def find_crawler_cli() -> Path | None:
    """Our ``crawler`` console script: beside this Python first, then on PATH."""
    beside = Path(sys.executable).with_name("crawler")
    if beside.exists():
        return beside
    found = shutil.which("crawler")
    return Path(found) if found else None


def _step(what: str, command: list[str], timeout_s: float) -> None:
    print(f"[setup] {what}", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: no result after {timeout_s:.0f} s") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-3000:]
        raise BenchError(f"{what} failed (exit {result.returncode}):\n{tail}")


@dataclass(frozen=True)
class Contender:
    """How to run one crawler: its command for an output path, a stats path and a page limit."""

    name: str
    command: Callable[[Path, Path, int | None], list[str]]


def contenders(names: Sequence[str]) -> list[Contender]:
    """The selected contenders, each checked (and Scrapy installed) before any run starts."""
    chosen = []
    for name in names:
        if name == "crawler":
            cli = find_crawler_cli()
            if cli is None:
                print(
                    "[setup] skipping crawler: no `crawler` command beside this Python or on "
                    "PATH (run `pip install -e .` in this environment)",
                    file=sys.stderr,
                )
                continue
            chosen.append(Contender(name, _crawler_command(cli)))
        elif name == "scrapy":
            chosen.append(Contender(name, _scrapy_command(ensure_scrapy())))
        else:
            missing = [m for m in ("httpx", "selectolax") if importlib.util.find_spec(m) is None]
            if missing:
                raise BenchError(f"the bare loop needs {missing} in {sys.executable}")
            chosen.append(Contender(name, _bare_command))
    if not chosen:
        raise BenchError("no contender can run")
    return chosen


def _crawler_command(cli: Path) -> Callable[[Path, Path, int | None], list[str]]:
    def command(out: Path, stats: Path, max_pages: int | None) -> list[str]:
        settings = [
            f"concurrency={CONCURRENCY}",
            f"per_host_concurrency={PER_HOST_CONCURRENCY}",
            "obey_robots=false",
        ]
        if max_pages:
            settings.append(f"max_pages={max_pages}")
        argv = [str(cli), "run", str(BENCH_DIR / "crawler_spider.py")]
        for setting in settings:
            argv += ["-s", setting]
        return [*argv, "-o", str(out), "--stats", str(stats)]

    return command


def _scrapy_command(scrapy: Path) -> Callable[[Path, Path, int | None], list[str]]:
    def command(out: Path, stats: Path, max_pages: int | None) -> list[str]:
        # The stats path reaches the spider as BENCH_STATS_PATH, set in _run_one.
        argv = [str(scrapy), "runspider", str(BENCH_DIR / "scrapy_spider.py"), "-O", str(out)]
        return argv + (["-s", f"CLOSESPIDER_PAGECOUNT={max_pages}"] if max_pages else [])

    return command


def _bare_command(out: Path, stats: Path, max_pages: int | None) -> list[str]:
    argv = [sys.executable, str(BENCH_DIR / "bare_httpx.py"), "-o", str(out), "--stats", str(stats)]
    argv += ["--concurrency", str(CONCURRENCY)]
    argv += ["--per-host-concurrency", str(PER_HOST_CONCURRENCY)]
    return argv + (["--max-pages", str(max_pages)] if max_pages else [])


def _run_one(
    contender: Contender, index: int, site: Site, label: str, timeout_s: float, max_pages: int | None
) -> tuple[Run, Path, Path]:
    """One crawl in a fresh directory, so no state from an earlier run can be resumed."""
    run_dir = WORK_DIR / "runs" / f"{label}-{contender.name}-{index + 1}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out, stats = run_dir / "items.jsonl", run_dir / "stats.json"
    env = {
        **os.environ,
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
                run, stats, out = _run_one(contender, index, site, "tp", args.timeout, None)
                check_catalogue(run, expected, stats, out)
                print(run.summary() + _log_hint(run, "tp"), flush=True)
                runs.append(run)
    return runs


def scale(args: argparse.Namespace, chosen: list[Contender]) -> list[tuple[int, Run]]:
    """Peak RSS with a frontier of each target size: every page fetched queues ``links`` URLs."""
    site = ensure_site(args, endless=True)
    links = site.expected["links_per_page"]
    results = []
    with Nginx(site.directory, args.hosts, args.base_port):
        for target in SCALE_TARGETS:
            max_pages = math.ceil(target / links)
            for contender in chosen:
                label = f"scale{target}"
                run, stats, _ = _run_one(contender, 0, site, label, args.timeout * 3, max_pages)
                check_process(run)
                try:
                    run.stats = read_stats(stats)
                    run.pages = sum(run.stats["status_counts"].values())
                except (OSError, ValueError, AttributeError) as exc:
                    run.problems.append(f"no stats ({exc.__class__.__name__})")
                print(f"[{target:,} queued] " + run.summary() + _log_hint(run, label), flush=True)
                results.append((target, run))
    return results


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def throughput_table(runs: list[Run], names: list[str]) -> str:
    """pages/s (median, min, max over valid runs), CPU, peak RSS, and ratios to Scrapy and bare."""
    medians = {n: _median([r.pages_per_s for r in runs if r.contender == n and r.valid]) for n in names}
    header = (
        f"{'crawler':<8} {'valid':>5} {'pages/s':>8} {'min':>7} {'max':>7} {'own p/s':>8} "
        f"{'wall s':>7} {'CPU s':>7} {'RSS MiB':>8} {'/scrapy':>8} {'/bare':>6}"
    )
    lines = [header, "-" * len(header)]
    for name in names:
        mine = [r for r in runs if r.contender == name]
        good = [r for r in mine if r.valid]
        if not good:
            lines.append(f"{name:<8} {f'0/{len(mine)}':>5}  INVALID: no valid run")
            continue
        rates = [r.pages_per_s for r in good]
        own = [r.own_pages_per_s for r in good if r.own_pages_per_s is not None]
        lines.append(
            f"{name:<8} {f'{len(good)}/{len(mine)}':>5} {_median(rates):>8.0f} {min(rates):>7.0f} "
            f"{max(rates):>7.0f} {_median(own):>8.0f} "
            f"{_median([r.measurement.wall_s for r in good]):>7.2f} "
            f"{_median([r.measurement.cpu_s for r in good]):>7.2f} "
            f"{_median([r.measurement.peak_rss_mib for r in good]):>8.0f} "
            f"{medians[name] / medians.get('scrapy', math.nan):>8.2f} "
            f"{medians[name] / medians.get('bare', math.nan):>6.2f}"
        )
    return "\n".join(lines)


def scale_table(results: list[tuple[int, Run]]) -> str:
    header = (
        f"{'target':>9} {'crawler':<8} {'pages':>6} {'queued':>9} {'RSS MiB':>8} "
        f"{'wall s':>7} {'CPU s':>7}  verdict"
    )
    lines = [header, "-" * len(header)]
    for target, run in results:
        queued = run.stats.get("queued_urls", "?")
        lines.append(
            f"{target:>9,} {run.contender:<8} {run.pages:>6} {queued!s:>9} "
            f"{run.measurement.peak_rss_mib:>8.0f} {run.measurement.wall_s:>7.1f} "
            f"{run.measurement.cpu_s:>7.1f}  {'ok' if run.valid else '; '.join(run.problems)}"
        )
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender, interleaved")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--links-per-page", type=int, default=None, help="fixed links per page")
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per crawl (x3 in --scale)")
    parser.add_argument("--scale", action="store_true", help="peak RSS at 100k and 1M queued URLs")
    parser.add_argument("--scale-links", type=int, default=1000, help="links per page in --scale")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(CONTENDERS))
    if unknown or not args.only:
        parser.error(f"--only takes some of {','.join(CONTENDERS)}, not {unknown or 'nothing'}")
    if args.pages < args.hosts or args.runs < 1 or args.hosts < 1:
        parser.error("need --runs >= 1, --hosts >= 1 and at least one page per host")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    try:
        chosen = contenders([name for name in CONTENDERS if name in args.only])
        names = [c.name for c in chosen]
        if args.scale:
            results = scale(args, chosen)
            print("\n" + scale_table(results))
            saved = _save("scale", [{"target": t, **_row(r)} for t, r in results], args)
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
