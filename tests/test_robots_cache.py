"""robots.txt per site: one fetch per scheme, host and port; kept in the state; refetched after
24 hours, within a run and across runs; answers that give no rules are not kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.errors import RobotsUnavailable
from crawler.frontier import RobotsRecord
from crawler.frontier.sqlite import SqliteFrontier
from crawler.robots import EXPIRE_S, RobotsRules
from crawler.robots_cache import RobotsCache, site_of

DISALLOW_X = b"User-agent: *\nDisallow: /x\n"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Site:
    """The fetch seam: what robots.txt answers, and which URLs were asked for."""

    def __init__(self, clock: Clock, status: int = 200, body: bytes = DISALLOW_X) -> None:
        self.clock, self.status, self.body = clock, status, body
        self.asked: list[str] = []
        self.loaded: list[str] = []

    async def fetch(self, url: str) -> RobotsRecord:
        self.asked.append(url)
        return RobotsRecord(self.status, self.body, self.clock())

    def on_rules(self, url: str, rules: RobotsRules) -> None:
        self.loaded.append(url)


@pytest.fixture
async def frontier(tmp_path: Path) -> SqliteFrontier:
    state = SqliteFrontier(tmp_path / "state.db")
    await state.open("robots")
    return state


def _cache(frontier: SqliteFrontier, site: Site, clock: Clock) -> RobotsCache:
    return RobotsCache(frontier, site.fetch, "crawler", site.on_rules, clock=clock)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://A.test/x", "http://a.test"),
        ("https://a.test:443/x", "https://a.test"),
        ("http://a.test:8080/x?y", "http://a.test:8080"),
    ],
)
def test_site_key(url: str, key: str) -> None:
    assert site_of(url) == key


async def test_one_fetch_per_scheme_host_and_port(frontier: SqliteFrontier) -> None:
    clock = Clock()
    site = Site(clock)
    cache = _cache(frontier, site, clock)
    for url in ("http://a.test/x", "http://a.test/y", "https://a.test/x", "http://a.test:81/x"):
        assert await cache.allows(url) is url.endswith("/y")
    assert await cache.allows("http://a.test/z")
    assert site.asked == ["http://a.test/x", "https://a.test/x", "http://a.test:81/x"]
    assert site.loaded == site.asked
    await frontier.close()


async def test_rules_expire_after_24_hours(frontier: SqliteFrontier) -> None:
    clock = Clock()
    site = Site(clock)
    cache = _cache(frontier, site, clock)
    await cache.allows("http://a.test/x")
    clock.now += EXPIRE_S - 1
    site.body = b""
    assert not await cache.allows("http://a.test/x")  # still the rules fetched a day ago
    clock.now += 1
    assert await cache.allows("http://a.test/x")
    assert len(site.asked) == 2
    await frontier.close()


async def test_the_state_keeps_rules_across_runs_for_24_hours(tmp_path: Path) -> None:
    clock = Clock()
    site = Site(clock)
    first = SqliteFrontier(tmp_path / "state.db")
    await first.open("robots")
    assert not await _cache(first, site, clock).allows("http://a.test/x")
    await first.flush()
    await first.close()

    for hours, fetches in ((23, 1), (25, 2)):
        clock.now = 1_000_000.0 + hours * 3600
        again = SqliteFrontier(tmp_path / "state.db")
        await again.open("robots")
        assert not await _cache(again, site, clock).allows("http://a.test/x")
        assert len(site.asked) == fetches
        await again.flush()
        await again.close()


@pytest.mark.parametrize("status", [429, 503])
async def test_an_answer_without_rules_is_asked_again_after_a_while(
    frontier: SqliteFrontier, status: int
) -> None:
    clock = Clock()
    site = Site(clock, status=status)
    cache = _cache(frontier, site, clock)
    waits = []
    for seconds in (0, 10, 20, 30):
        clock.now = 1_000_000.0 + seconds
        with pytest.raises(RobotsUnavailable) as caught:
            await cache.allows("http://a.test/x")
        waits.append(caught.value.retry_after)
        await frontier.flush()
    assert waits == [30.0, 20.0, 10.0, 30.0]  # asked at 0 and 30; told how long to wait between
    assert len(site.asked) == 2
    assert await frontier.robots("http://a.test") is None
    await frontier.close()


async def test_a_forgotten_host_is_read_back_from_the_state(frontier: SqliteFrontier) -> None:
    clock = Clock()
    site = Site(clock)
    cache = _cache(frontier, site, clock)
    await cache.allows("http://a.test/x")
    await cache.allows("https://a.test/x")
    await frontier.flush()
    cache.forget("a.test")
    assert not await cache.allows("http://a.test/x")
    assert len(site.asked) == 2  # no new fetch: the state had it
    assert site.loaded == ["http://a.test/x", "https://a.test/x", "http://a.test/x"]
    await frontier.close()
