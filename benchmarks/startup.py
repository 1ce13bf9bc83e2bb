"""Start-up: the wall time of ``crawler --help`` and ``crawler list``, and how long a
``crawler run`` takes from process start to its first request; medians of N runs.

    python benchmarks/startup.py             # --runs 11
    python benchmarks/startup.py --runs 21 --importtime

The first request is seen by a tiny HTTP server in this process (127.0.0.1, port 0), which
notes when the first request of each run arrives (robots.txt, as a crawl asks for it first);
the clock starts just before ``Popen``. Every command runs in a fresh temporary folder, so no
``config/crawler.toml`` is read; ``crawler list`` lists the repository's ``spiders/``.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def _command() -> list[str]:
    """The ``crawler`` console script beside this Python, else ``python -m crawler``."""
    script = Path(sys.executable).parent / "crawler"
    return [str(script)] if script.exists() else [sys.executable, "-m", "crawler"]


def _wall(args: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return wall


def _first_request(args: Sequence[str], cwd: Path, arrivals: _Arrivals) -> tuple[float, float]:
    """(seconds to the first request, seconds to exit) of one ``crawler run``."""
    arrivals.reset()
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0 or arrivals.first is None:
        sys.exit(f"crawler run exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return arrivals.first - start, wall


def _median_ms(measure: Callable[[], float], runs: int) -> float:
    measure()  # a warm-up: the page cache and the .pyc files
    return statistics.median(measure() for _ in range(runs)) * 1000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="runs per figure (median)")
    parser.add_argument(
        "--importtime", action="store_true", help="also print each command's top imports"
    )
    options = parser.parse_args()
    crawler = _command()
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp, _server() as (url, arrivals):
        work = Path(tmp)
        spiders = work / "spiders"
        spiders.mkdir()
        (spiders / "first.py").write_text(FIRST_SPIDER.format(url=url), encoding="utf-8")
        listing = [*crawler, "list", "--spiders-dir", str(SPIDERS)]
        run = [*crawler, "run", "first", "--spiders-dir", str(spiders), "--no-progress"]
        helps = _median_ms(lambda: _wall([*crawler, "--help"], work), options.runs)
        lists = _median_ms(lambda: _wall(listing, work), options.runs)
        _first_request(run, work, arrivals)
        firsts = [_first_request(run, work, arrivals) for _ in range(options.runs)]
        shutil.rmtree(spiders / "__pycache__", ignore_errors=True)
        print(f"start-up, median of {options.runs} runs ({' '.join(crawler)}):")
        print(f"  crawler --help                {helps:6.0f} ms")
        print(f"  crawler list (spiders/)       {lists:6.0f} ms")
        first = statistics.median(f for f, _ in firsts) * 1000
        whole = statistics.median(w for _, w in firsts) * 1000
        print(f"  crawler run: first request    {first:6.0f} ms  (whole run {whole:.0f} ms)")
        if options.importtime:
            for label, args in (("--help", [*crawler, "--help"]), ("list", listing), ("run", run)):
                print(f"top imports of crawler {label} (cumulative):")
                print("\n".join(_import_top(args, work, 12)))


if __name__ == "__main__":
    main()
