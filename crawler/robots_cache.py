"""robots.txt per site (scheme, host and port): from memory, else the state, else the site.

A site's rules are fetched once and reused for 24 hours (RFC 9309 2.4), across resumed and
repeated runs: the fetch time is kept in the state with the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from crawler.errors import RobotsUnavailable
from crawler.frontier import Frontier, RobotsRecord
from crawler.robots import EXPIRE_S, RobotsRules
from crawler.urls import host_of

PARSE_INLINE_CHARS = 32 * 1024
FetchRobots = Callable[[str], Awaitable[RobotsRecord]]
OnRules = Callable[[str, RobotsRules], None]


def site_of(url: str) -> str:
    """The key robots.txt is kept under: scheme and politeness host (host, and a port that is
    not the scheme's default).

    >>> site_of("https://Example.com:443/a?b")
    'https://example.com'
    """
    return f"{url.partition(':')[0].lower()}://{host_of(url)}"


class RobotsCache:
    """``await cache.allows(url)``. ``fetch(url)`` reads a site's robots.txt (raising
    RobotsUnavailable when it cannot); ``on_rules(url, rules)`` hears of every newly loaded site,
    so that its Crawl-delay reaches the scheduler.

    A site whose robots.txt cannot be had (5xx, 429, no answer) is not asked again for
    ``unavailable_s``: meanwhile its pages fail at once with a RobotsUnavailable whose
    ``retry_after`` is the time left, so their retries wait for the next try of robots.txt.
    """

    def __init__(
        self,
        frontier: Frontier,
        fetch: FetchRobots,
        token: str,
        on_rules: OnRules,
        *,
        clock: Callable[[], float] = time.time,
        unavailable_s: float = 30.0,
    ) -> None:
        self.frontier = frontier
        self.token = token
        self._fetch = fetch
        self._on_rules = on_rules
        self._clock = clock
        self._rules: dict[str, tuple[RobotsRules, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.unavailable_s = unavailable_s
        self._unavailable: dict[str, tuple[float, str]] = {}  # site -> (until, why)

    def __repr__(self) -> str:
        return f"<RobotsCache token={self.token!r} sites={len(self._rules)}>"

    async def allows(self, url: str) -> bool:
        return (await self.rules(url)).allows(url, self.token)

    async def rules(self, url: str) -> RobotsRules:
        """The rules of ``url``'s site; raises RobotsUnavailable when they cannot be had."""
        site = site_of(url)
        cached = self._rules.get(site)
        if cached is not None and not self._expired(cached[1]):
            return cached[0]
        self._check_unavailable(site)
        return await self._load(site, url)

    def _check_unavailable(self, site: str) -> None:
        if (known := self._unavailable.get(site)) is None:
            return
        until, why = known
        left = until - self._clock()
        if left <= 0:
            del self._unavailable[site]
            return
        error = RobotsUnavailable(why)
        error.retry_after = left
        raise error

    def forget(self, host: str) -> None:
        """Let go of a host's rules (both schemes); the next request reads them from the state
        again, and so tells the scheduler its Crawl-delay again."""
        for site in (f"http://{host}", f"https://{host}"):
            lock = self._locks.get(site)
            if lock is None or not lock.locked():  # not while a fetch of it is under way
                self._rules.pop(site, None)
                self._locks.pop(site, None)

    def _expired(self, fetched_at: float) -> bool:
        return self._clock() - fetched_at >= EXPIRE_S

    async def _load(self, site: str, url: str) -> RobotsRules:
        async with self._locks.setdefault(site, asyncio.Lock()):
            cached = self._rules.get(site)
            if cached is not None and not self._expired(cached[1]):
                return cached[0]  # loaded by another request while this one waited
            self._check_unavailable(site)  # found so by another request while this one waited
            record = None if cached is not None else await self.frontier.robots(site)
            if record is not None and not self._expired(record.fetched_at):
                rules = RobotsRules.from_response(record.status, record.body)
            else:
                try:
                    record = await self._fetch(url)
                    rules = RobotsRules.from_response(record.status, record.body)
                except RobotsUnavailable as error:
                    # Nothing is kept in the state; the site is asked again after a while.
                    self._unavailable[site] = (self._clock() + self.unavailable_s, str(error))
                    error.retry_after = self.unavailable_s
                    raise
                self.frontier.save_robots(site, record)
            if rules.size > PARSE_INLINE_CHARS:
                # protego takes ~1 s for 500 KiB of rules: a thread keeps the loop going.
                await asyncio.to_thread(rules.prepare, self.token)
            self._rules[site] = (rules, record.fetched_at)
            self._on_rules(url, rules)
            return rules
