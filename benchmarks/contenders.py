"""The contenders: how to run our crawler, Scrapy (in its own venv), the bare httpx loop and the
bare aiohttp loop (on asyncio and on uvloop)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
SCRAPY_VENV = WORK_DIR / "scrapy-venv"
SCRAPY_REQUIREMENT = "scrapy>=2.13,<3"  # 2.13 brought the async start() the spider uses
NAMES = ("crawler", "scrapy", "bare", "aiohttp")  # "aiohttp" runs as aiohttp and aiohttp-uv
AIOHTTP_LOOPS = {"aiohttp": "asyncio", "aiohttp-uv": "uvloop"}
CONCURRENCY = 64
PER_HOST_CONCURRENCY = 16


class BenchError(RuntimeError):
    """A set-up step failed; the message says which and why."""


def ensure_scrapy() -> Path:
    """``scrapy`` in its own venv (benchmarks/.work/scrapy-venv), installed from PyPI if missing."""
    scrapy = SCRAPY_VENV / "bin" / "scrapy"
    marker = SCRAPY_VENV / ".installed"
    if scrapy.exists() and marker.exists():
        return scrapy
    shutil.rmtree(SCRAPY_VENV, ignore_errors=True)
    step("creating Scrapy's venv", [sys.executable, "-m", "venv", str(SCRAPY_VENV)], 300)
    pip = [str(SCRAPY_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    step(f"installing {SCRAPY_REQUIREMENT}", [*pip, SCRAPY_REQUIREMENT], timeout_s=900)
    marker.write_text(SCRAPY_REQUIREMENT + "\n")
    return scrapy


def find_crawler_cli() -> Path | None:
    """Our ``crawler`` console script: beside this Python first, then on PATH."""
    beside = Path(sys.executable).with_name("crawler")
    if beside.exists():
        return beside
    found = shutil.which("crawler")
    return Path(found) if found else None


def step(what: str, command: list[str], timeout_s: float) -> None:
    print(f"[setup] {what}", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout_s
        )
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
        elif name == "aiohttp":
            _require("the bare aiohttp loop", ("aiohttp", "selectolax", "uvloop"))
            chosen += [
                Contender(label, _aiohttp_command(loop)) for label, loop in AIOHTTP_LOOPS.items()
            ]
        else:
            _require("the bare loop", ("httpx", "selectolax"))
            chosen.append(Contender(name, _bare_command))
    if not chosen:
        raise BenchError("no contender can run")
    return chosen


def _require(what: str, modules: Sequence[str]) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchError(f"{what} needs {missing} in {sys.executable}")


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


def _aiohttp_command(loop: str) -> Callable[[Path, Path, int | None], list[str]]:
    def command(out: Path, stats: Path, max_pages: int | None) -> list[str]:
        argv = [sys.executable, str(BENCH_DIR / "bare_aiohttp.py"), "-o", str(out)]
        argv += ["--stats", str(stats), "--loop", loop]
        argv += ["--concurrency", str(CONCURRENCY)]
        argv += ["--per-host-concurrency", str(PER_HOST_CONCURRENCY)]
        return argv + (["--max-pages", str(max_pages)] if max_pages else [])

    return command
