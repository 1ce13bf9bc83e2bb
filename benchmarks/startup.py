"""Start-up: the wall and CPU time of ``crawler --help`` and ``crawler list``, and how long a
``crawler run`` takes from process start to its first request; medians of N runs.

    python benchmarks/startup.py                # --runs 11, the crawler beside this Python
    python benchmarks/startup.py --runs 21 --importtime
    python benchmarks/startup.py --crawler OLD/.venv/bin/crawler --crawler NEW/.venv/bin/crawler

Commands of several ``--crawler`` are interleaved run by run, so that a machine whose load
drifts stretches them alike. CPU time (user + system) is the steadier figure on a busy machine.

The first request is seen by a tiny HTTP server in this process (127.0.0.1, port 0), which
notes when the first request of each run arrives (robots.txt, as a crawl asks for it first);
the clock starts just before ``Popen``. Every command runs in a fresh temporary folder, so no
``config/crawler.toml`` is read; ``crawler list`` lists the repository's ``spiders/`` (one of
them has pydantic item models), then the folder of that one-page spider alone.
"""

from __future__ import annotations

import argparse
import http.server
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPIDERS = ROOT / "spiders"
TIMEOUT_S = 60.0

FIRST_SPIDER = '''"""A spider whose one page has no links: the run is its start-up and one fetch."""

from crawler import Response, Spider


class FirstSpider(Spider):
    name = "first"
    start_urls = [{url!r}]

    async def parse(self, response: Response) -> None:
        return None
'''


class _Arrivals:
    """When the first request since ``reset()`` arrived (``time.perf_counter()``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: float | None = None

    def __repr__(self) -> str:
        return f"<_Arrivals first={self.first}>"

    def reset(self) -> None:
        with self._lock:
            self.first = None

    def seen(self) -> None:
        now = time.perf_counter()
        with self._lock:
            if self.first is None:
                self.first = now


def _handler(arrivals: _Arrivals) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            arrivals.seen()
            found = self.path != "/robots.txt"
            body = b"<html><head><title>first</title></head><body>hello</body></html>"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def _server() -> Iterator[tuple[str, _Arrivals]]:
    arrivals = _Arrivals()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(arrivals))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", arrivals
    finally:
        server.shutdown()
        server.server_close()


def _command() -> str:
    """The ``crawler`` console script beside this Python."""
    script = Path(sys.executable).parent / "crawler"
    if not script.exists():
        sys.exit(f"no crawler command beside {sys.executable}: pip install -e . first")
    return str(script)


@dataclass
class Sample:
    """One command: its wall time, its CPU time (user + system, which a busy machine stretches
    far less than wall time), and for a run the time to its first request; in seconds."""

    wall_s: float
    cpu_s: float
    first_s: float | None = None


def _measure(args: Sequence[str], cwd: Path, arrivals: _Arrivals | None = None) -> Sample:
    if arrivals is not None:
        arrivals.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    first = None
    if arrivals is not None:
        if arrivals.first is None:
            sys.exit(f"{' '.join(args)} made no request: {done.stderr.decode()[-500:]}")
        first = arrivals.first - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return Sample(wall, cpu, first)


def _import_top(args: Sequence[str], cwd: Path, top: int) -> list[str]:
    """The ``top`` imports by cumulative time (-X importtime) of one command."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, env=env, check=False
    )
    rows = []
    for line in done.stderr.decode().splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return [f"  {us / 1000:7.1f} ms {name}" for us, name in sorted(rows, reverse=True)[:top]]


def _ms(values: Iterable[float | None]) -> str:
    return f"{statistics.median(v for v in values if v is not None) * 1000:6.0f}"


def _report(crawler: str, samples: dict[str, list[Sample]], runs: int) -> None:
    print(f"{crawler}: median of {runs} runs, in ms")
    print(f"  {'command':<28} {'wall':>6} {'cpu':>6} {'first request':>14}")
    for label, taken in samples.items():
        first = _ms(s.first_s for s in taken) if label.startswith("run") else ""
        walls, cpus = _ms(s.wall_s for s in taken), _ms(s.cpu_s for s in taken)
        print(f"  {label:<28} {walls:>6} {cpus:>6} {first:>14}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="runs per figure (median)")
    parser.add_argument(
        "--crawler",
        action="append",
        metavar="PATH",
        help="a crawler command to measure (repeat to compare; interleaved run by run); "
        "default: the one beside this Python",
    )
    parser.add_argument(
        "--importtime", action="store_true", help="also print each command's top imports"
    )
    options = parser.parse_args()
    crawlers = [os.path.abspath(path) for path in options.crawler or [_command()]]
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp, _server() as (url, arrivals):
        work = Path(tmp)
        spiders = work / "spiders"
        spiders.mkdir()
        (spiders / "first.py").write_text(FIRST_SPIDER.format(url=url), encoding="utf-8")
        commands = {
            "crawler --help": ["--help"],
            "crawler list (spiders/)": ["list", "--spiders-dir", str(SPIDERS)],
            "crawler list (one spider)": ["list", "--spiders-dir", str(spiders)],
            "run: first request, whole": [
                "run",
                "first",
                "--spiders-dir",
                str(spiders),
                "--no-progress",
            ],
        }
        samples = {crawler: {label: [] for label in commands} for crawler in crawlers}
        for index in range(options.runs + 1):  # the first round warms the page cache up
            for crawler in crawlers:
                for label, args in commands.items():
                    watch = arrivals if label.startswith("run") else None
                    sample = _measure([crawler, *args], work, watch)
                    if index:
                        samples[crawler][label].append(sample)
        for crawler in crawlers:
            _report(crawler, samples[crawler], options.runs)
            if options.importtime:
                for label, args in commands.items():
                    print(f"top imports of {label} (cumulative):")
                    print("\n".join(_import_top([crawler, *args], work, 12)))


if __name__ == "__main__":
    main()
