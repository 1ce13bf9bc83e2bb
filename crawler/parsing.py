"""Getting pages ready for their callbacks: large HTML parsed off the event loop, within a time
budget (``max_parse_s``), and a cap on the links a page may yield (``max_links_per_page``).

lexbor's tree builder follows the HTML standard, whose algorithms are quadratic or worse on some
inputs: 100,000 nested ``<div>`` take 20 s to parse, 40 KB of misnested formatting tags 3 s. Only
markup with many tags can be that slow: with at most ``SCREEN_TAGS`` tags the worst known input
parses in about 0.2 s, and ordinary pages in a few milliseconds. So:

- a page of at most ``SCREEN_TAGS`` tags and ``INLINE_PARSE_BYTES`` is parsed on the loop when its
  callback first reads it (~0.3 ms for a 15 KB page), as a thread hop would cost more;
- a larger page with few tags is parsed by a thread (lexbor lets go of the GIL while it parses,
  so the loop goes on);
- a page with more tags is first parsed by a screening process, which is killed if it runs past
  ``max_parse_s`` (the page then fails with ParseBudgetExceeded), and once its parse is known to
  end in time, by a thread for the callback to use. A thread alone could not be stopped.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from crawler.errors import ParseBudgetExceeded
from crawler.parse_worker import HEADER_BYTES, PARSED, READY
from crawler.response import Response, parse_html
from crawler.settings import Settings

log = logging.getLogger("crawler.parsing")

INLINE_PARSE_BYTES = 1024 * 1024
# Measured on lexbor's worst known shapes at 4,000 tags: misnested formatting elements 0.4 s
# (quadratic: 0.2 s at 3,000), 2,000 nested <div> 2 ms, 4,000 <option> 44 ms. Pages of 15 KB
# hold ~700 tags, and most of 100 KB under 3,000.
SCREEN_TAGS = 3000
WORKER_SCRIPT = Path(__file__).with_name("parse_worker.py")
START_TIMEOUT_S = 30.0  # a cold start on a loaded machine; not charged to any page's budget
STOP_TIMEOUT_S = 5.0


class PageParser:
    """Parses a crawl's large pages off the event loop within ``max_parse_s``.

    >>> parser = PageParser(settings)                      # doctest: +SKIP
    >>> await parser.prepare(response)   # ParseBudgetExceeded if too slow   # doctest: +SKIP
    >>> await parser.aclose()                              # doctest: +SKIP
    """

    def __init__(self, settings: Settings) -> None:
        self.max_parse_s = settings.max_parse_s
        self.max_links = settings.max_links_per_page
        self.parsed_off_loop = 0
        self.over_budget = 0
        self._worker: asyncio.subprocess.Process | None = None
        self._killed: list[asyncio.subprocess.Process] = []
        self._no_worker = False  # it could not start: pages are parsed without a time limit
        # One page at a time in the worker, so that each page's budget is its own parse time.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"<PageParser max_parse_s={self.max_parse_s} worker_pid={self.worker_pid} "
            f"parsed_off_loop={self.parsed_off_loop} over_budget={self.over_budget}>"
        )

    @property
    def worker_pid(self) -> int | None:
        """The screening process's id; None until a large page needs it, or after a kill."""
        return self._worker.pid if self._worker is not None else None

    async def prepare(self, response: Response) -> None:
        """Parse a large page's markup off the loop, so that its callback finds it parsed.

        Raises ParseBudgetExceeded when its parse would take longer than ``max_parse_s``.
        """
        response.link_limit = self.max_links
        if not response.kind.is_markup:
            return
        many_tags = response.body.count(b"<") > SCREEN_TAGS
        if not many_tags and len(response.body) <= INLINE_PARSE_BYTES:
            return
        html = response.text.encode()
        if many_tags and self.max_parse_s is not None:
            await self._screen(html, self.max_parse_s)
        response.tree = await asyncio.to_thread(parse_html, html)
        self.parsed_off_loop += 1

    async def aclose(self) -> None:
        """Stop the screening process: end of input lets it exit; kill it if it lingers."""
        worker, self._worker = self._worker, None
        if worker is not None and worker.stdin is not None:
            worker.stdin.close()
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await worker.wait()
            except TimeoutError:
                self._kill(worker)
        while self._killed:
            await self._killed.pop().wait()

    async def _screen(self, html: bytes, budget: float) -> None:
        async with self._lock:
            # A worker found dead may have died before this page (killed from outside, out of
            # memory): one fresh worker gets a second try before the page is blamed.
            for tries_left in (1, 0):
                worker = self._worker or await self._start()
                if worker is None:
                    return
                try:
                    await self._screen_in(worker, html, budget)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    await self._discard(worker)
                    if not tries_left:
                        raise ParseBudgetExceeded("its HTML makes the parser crash") from None

    async def _screen_in(
        self, worker: asyncio.subprocess.Process, html: bytes, budget: float
    ) -> None:
        try:
            async with asyncio.timeout(budget):
                answer = await self._exchange(worker, html)
        except TimeoutError:
            self.over_budget += 1
            await self._discard(worker)
            raise ParseBudgetExceeded(f"HTML takes over max_parse_s={budget}s to parse") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise
        except BaseException:
            # Cancelled mid-page: the worker is busy with a page nobody waits for.
            self._kill(worker)
            raise
        if answer != PARSED:
            raise ConnectionError(f"the screening process answered {answer!r}")

    @staticmethod
    async def _exchange(worker: asyncio.subprocess.Process, html: bytes) -> bytes:
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write(len(html).to_bytes(HEADER_BYTES, "big"))
        worker.stdin.write(html)
        await worker.stdin.drain()
        return await worker.stdout.readexactly(1)

    async def _start(self) -> asyncio.subprocess.Process | None:
        if self._no_worker:
            return None
        worker = None
        try:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                str(WORKER_SCRIPT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert worker.stdout is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = await worker.stdout.readexactly(1)
            if ready != READY:
                raise ConnectionError(f"it said {ready!r}")
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as error:
            self._no_worker = True
            if worker is not None:
                await self._discard(worker)
            log.error(
                "the HTML screening process did not start (%s): large pages are parsed "
                "without max_parse_s",
                error or type(error).__name__,
            )
            return None
        except BaseException:
            if worker is not None:  # cancelled while it started: aclose() reaps it
                self._kill(worker)
            raise
        self._worker = worker
        return worker

    def _kill(self, worker: asyncio.subprocess.Process) -> None:
        if worker is self._worker:
            self._worker = None
        if worker.returncode is None:
            worker.kill()
        self._killed.append(worker)

    async def _discard(self, worker: asyncio.subprocess.Process) -> None:
        self._kill(worker)
        while self._killed:
            await self._killed.pop().wait()
