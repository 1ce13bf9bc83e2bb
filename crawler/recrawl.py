"""Recrawls as the engine sees them: queueing a finished crawl's due pages again, sending a page's
validators, and telling new, changed, unchanged and not-modified pages apart (the decisions are
``crawler.freshness``'s; this module does the frontier reads and counts the outcomes)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from crawler import freshness
from crawler.errors import UnexpectedNotModified
from crawler.freshness import Change
from crawler.frontier import Frontier, Outcome, RequestState
from crawler.request import Request
from crawler.response import Response
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.stats import Stats

log = logging.getLogger("crawler.recrawl")

_COUNTERS = {
    Change.CHANGED: "changed",
    Change.UNCHANGED: "unchanged",
    Change.NOT_MODIFIED: "not_modified",
}


class Recrawl:
    """One crawl's revisits. ``start()`` before seeding; ``validators(request)`` for each fetch;
    ``fetched(request, response)`` for each 2xx, and each 304 to a revisit.

    >>> recrawl = Recrawl(spider, settings, frontier, stats)  # doctest: +SKIP
    >>> if recrawl.start(): ...  # a finished crawl: its due pages are queued at the next flush
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings,
        frontier: Frontier,
        stats: Stats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spider = spider
        self.frontier = frontier
        self.stats = stats
        self.policy = freshness.Revisit(
            settings.revisit_after_s, settings.revisit_min_s, settings.revisit_max_s
        )
        self.reemit = settings.on_unchanged == "reemit"
        self.clock = clock
        self.active = False

    def __repr__(self) -> str:
        return (
            f"<Recrawl active={self.active} {self.policy!r} changed={self.stats.changed}"
            f" unchanged={self.stats.unchanged} not_modified={self.stats.not_modified}>"
        )

    def start(self) -> bool:
        """If the state holds a finished crawl, queue its due pages again (at the next flush,
        with the seeds the engine re-queues); returns whether this run is a recrawl."""
        self.active = self.frontier.finished
        if self.active:
            log.info("the crawl in the state is finished: revisiting its start and due pages")
            self.frontier.requeue_due(self.clock(), self.policy)
        return self.active

    async def count_not_due(self) -> None:
        """After the recrawl's first flush: the known pages left for a later run."""
        self.stats.not_due += (await self.frontier.counts()).done

    def validators(self, request: Request) -> dict[str, str]:
        return freshness.conditional_headers(request.history)

    def check(self, response: Response, sent: Mapping[str, str]) -> None:
        """Raises UnexpectedNotModified (retried) for a 304 to a request without validators."""
        if response.status == 304 and not freshness.is_conditional(sent, response.request.headers):
            raise UnexpectedNotModified("HTTP 304 to a request sent without validators")

    async def fetched(self, request: Request, response: Response) -> Outcome:
        """The outcome of a page fetched: DONE. For a 2xx or a 304 to a revisit, with the page's
        new history: its callback must run if ``outcome.change.runs_callback``, and an unchanged
        page gets its last items again under ``on_unchanged = "reemit"``. Other statuses (a
        spider's ``handle_httpstatus_list``) keep no history: ``outcome.change`` is None."""
        not_modified = response.status == 304
        if not (200 <= response.status < 300 or not_modified):
            return Outcome(request, RequestState.DONE, status=response.status)
        history, change = freshness.revisit(
            request.history,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            signature=None if not_modified else self._signature(response),
            now=self.clock(),
            policy=self.policy,
            own_interval_s=freshness.own_interval(request.meta),
        )
        outcome = Outcome(
            request, RequestState.DONE, status=response.status, history=history, change=change
        )
        if (counter := _COUNTERS.get(change)) is not None:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if not change.runs_callback and self.reemit and request.id is not None:
            outcome.items = await self.frontier.last_items(request.id)
            self.stats.items_reemitted += len(outcome.items)
        return outcome

    def _signature(self, response: Response) -> int:
        try:
            content = self.spider.content_signature(response)
            if not isinstance(content, bytes | str):
                raise TypeError(f"it returned {type(content).__name__}, not bytes or str")
        except Exception as error:
            self.stats.callback_errors += 1
            log.error(
                "content_signature(%s) failed (%s): the whole body is compared", response.url, error
            )
            content = response.body
        return freshness.signature(content)
