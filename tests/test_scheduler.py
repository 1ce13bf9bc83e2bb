"""The scheduler's bookkeeping that needs no crawl: letting go of idle hosts."""

from __future__ import annotations

from pathlib import Path

from crawler.frontier.sqlite import SqliteFrontier
from crawler.request import Request
from crawler.scheduler import Scheduler
from crawler.settings import Settings


async def _nothing() -> None:
    return None


def test_idle_hosts_are_let_go_only_past_the_limit(tmp_path: Path) -> None:
    now = [100.0]
    scheduler = Scheduler(
        SqliteFrontier(tmp_path / "s.db"), Settings(), flush=_nothing, clock=lambda: now[0]
    )
    for i in range(6):
        scheduler.slot(f"h{i}.test")
    scheduler.slot("h0.test").push(Request("http://h0.test/"))  # buffered work
    scheduler.slot("h1.test").start()  # a request in flight
    scheduler.slot("h2.test").configure(1, 5.0)
    scheduler.slot("h2.test").sent(99.0)  # its delay runs until 104
    assert scheduler.evict_idle(keep=10) == []
    assert sorted(scheduler.evict_idle(keep=4)) == ["h3.test", "h4.test", "h5.test"]
    assert sorted(scheduler.slots) == ["h0.test", "h1.test", "h2.test"]
    now[0] = 105.0
    assert scheduler.evict_idle(keep=2) == ["h2.test"]
