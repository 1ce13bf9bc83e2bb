"""A multi-host loopback site for crawls by many processes, and what its own log says about them.

`ClusterSite` runs one asyncio HTTP/1.1 server (in a thread of the test process) on 8 loopback
ports; a host is its ``127.0.0.1:port``. Page ``n`` lives on host ``n % 8`` at ``/p/<n>``, links to
its children ``3n+1..3n+3`` and to two other pages wherever they live, and answers in 20-100 ms.
Every request is logged with its host, path, User-Agent (each worker is given its own) and
monotonic start and end, so tests judge a cluster's politeness and losses from what the server saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

HOSTS = 8
PAGE = "/p/"
ROBOTS = "/robots.txt"


@dataclass(frozen=True)
class Hit:
    """One request as the server saw it; ``ended`` is read just before the reply is written."""

    host: str
    path: str
    agent: str
    status: int
    started: float
    ended: float


@dataclass
class Throttle:
    """Answer ``path`` on host ``host`` once with 429 and ``Retry-After: seconds``."""

    host: int
    path: str
    seconds: int
    served: bool = False


def page_delay(n: int) -> float:
    """20-100 ms, spread evenly and the same on every run."""
    return 0.020 + ((n * 2654435761) % 81) / 1000


def links(n: int, pages: int) -> list[int]:
    children = [c for c in (3 * n + 1, 3 * n + 2, 3 * n + 3) if c < pages]
    return [*children, (n * 7 + 5) % pages, (n * 13 + 11) % pages]


@dataclass
class ClusterSite:
    """The site; ``with ClusterSite(pages=...) as site:`` serves it until the block ends."""

    pages: int = 2000
    crawl_delay: float | None = None
    throttle: Throttle | None = None
    log: list[Hit] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._page_hits: Counter[str] = Counter()  # per User-Agent, and "" for all
        self._waiters: list[tuple[str, int, threading.Event]] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._serve, name="cluster-site", daemon=True)
        self.errors: list[BaseException] = []

    def __repr__(self) -> str:
        with self._lock:
            return f"<ClusterSite pages={self.pages} ports={self.ports} hits={len(self.log)}>"

    # -- addresses ---------------------------------------------------------------------------

    def host(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    def url(self, n: int) -> str:
        return f"http://{self.host(n % HOSTS)}{PAGE}{n}"

    def start_urls(self) -> list[str]:
        return [self.url(n) for n in range(min(HOSTS, self.pages))]

    # -- what the tests wait on and read -----------------------------------------------------

    def reached(self, count: int, agent: str = "") -> threading.Event:
        """An event set once the server has answered ``count`` page requests (of this
        User-Agent's, when given)."""
        event = threading.Event()
        with self._lock:
            if self._page_hits[agent] >= count:
                event.set()
            else:
                self._waiters.append((agent, count, event))
        return event

    def served(self, agent: str = "") -> int:
        """Page requests answered so far (this User-Agent's, when given)."""
        with self._lock:
            return self._page_hits[agent]

    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self.log)

    # -- the server --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the cluster site did not start: {self.errors!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by the tests, never lost in the thread
            self.errors.append(error)
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = []
        for index in range(HOSTS):
            server = await asyncio.start_server(
                lambda r, w, i=index: self._connection(i, r, w), "127.0.0.1", 0
            )
            servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        for server in servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for server in servers:
            await server.wait_closed()

    async def _connection(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                started = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                _method, target, _version = lines[0].split(" ", 2)
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                )
                status, extra, body = await self._answer(index, target)
                ended = time.monotonic()
                self._record(Hit(self.host(index), target, headers.get("user-agent", ""),
                                 status, started, ended))  # fmt: skip
                head_out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + body)
                await writer.drain()
        self._writers.discard(writer)
        writer.close()

    async def _answer(self, index: int, target: str) -> tuple[int, list[str], bytes]:
        if target == ROBOTS:
            rules = "User-agent: *\nDisallow: /private\n"
            if self.crawl_delay is not None:
                rules += f"Crawl-delay: {self.crawl_delay}\n"
            return 200, ["Content-Type: text/plain"], rules.encode()
        n = int(target[len(PAGE) :]) if target.startswith(PAGE) else -1
        if not 0 <= n < self.pages or n % HOSTS != index:
            return 404, ["Content-Type: text/plain"], b"not found"
        await asyncio.sleep(page_delay(n))
        if self._throttled(index, target):
            assert self.throttle is not None
            return 429, [f"Retry-After: {self.throttle.seconds}"], b"slow down"
        hrefs = "".join(
            f'<a href="{self.url(child)}">{child}</a>\n' for child in links(n, self.pages)
        )
        html = f"<!doctype html><html><body><h1>{n}</h1>\n{hrefs}</body></html>\n"
        return 200, ["Content-Type: text/html; charset=utf-8"], html.encode()

    def _throttled(self, index: int, target: str) -> bool:
        throttle = self.throttle
        with self._lock:
            if (
                throttle is None
                or throttle.served
                or (throttle.host, throttle.path) != (index, target)
            ):
                return False
            throttle.served = True
            return True

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.log.append(hit)
            if hit.status == 200 and hit.path.startswith(PAGE):
                self._page_hits.update(("", hit.agent))
            hits = self._page_hits
            due = [event for agent, count, event in self._waiters if hits[agent] >= count]
            self._waiters = [(a, c, e) for a, c, e in self._waiters if hits[a] < c]
        for event in due:
            event.set()


# -- reading the log ---------------------------------------------------------------------------


def page_hits(log: Iterable[Hit]) -> list[Hit]:
    return [hit for hit in log if hit.path.startswith(PAGE)]


def fetches_per_url(log: Iterable[Hit]) -> Counter[tuple[str, str]]:
    return Counter((hit.host, hit.path) for hit in page_hits(log))


def robots_hits(log: Iterable[Hit]) -> Counter[str]:
    return Counter(hit.host for hit in log if hit.path == ROBOTS)


def by_host(log: Iterable[Hit]) -> dict[str, list[Hit]]:
    hosts: dict[str, list[Hit]] = defaultdict(list)
    for hit in log:
        hosts[hit.host].append(hit)
    return hosts


def peak_concurrency(log: Iterable[Hit]) -> dict[str, int]:
    """Per host, the most requests the server was serving at one moment (ends before starts at
    the same instant: a reply written is a slot released)."""
    peaks: dict[str, int] = {}
    for host, hits in by_host(log).items():
        events = sorted([(h.started, 1) for h in hits] + [(h.ended, -1) for h in hits])
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        peaks[host] = peak
    return peaks


def min_start_gap(log: Iterable[Hit]) -> dict[str, float]:
    """Per host, the shortest time between two consecutive request starts (pages only)."""
    gaps: dict[str, float] = {}
    for host, hits in by_host(page_hits(log)).items():
        starts = sorted(hit.started for hit in hits)
        if len(starts) > 1:
            gaps[host] = min(b - a for a, b in itertools.pairwise(starts))
    return gaps
