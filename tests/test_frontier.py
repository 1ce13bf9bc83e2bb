"""The SQLite frontier on a real file: dedup, leasing order, resume, atomic flushes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crawler import Request
from crawler.frontier import Outcome, RequestState
from crawler.frontier.sqlite import SqliteFrontier


async def opened(path: Path) -> SqliteFrontier:
    frontier = SqliteFrontier(path)
    await frontier.open("spider")
    return frontier


async def test_dedup_persists_across_runs(tmp_state: Path) -> None:
    frontier = await opened(tmp_state)
    frontier.add([Request("http://a.test/x?b=1&a=2"), Request("http://a.test/y")])
    assert (await frontier.flush()).added == 2
    await frontier.close()

    again = await opened(tmp_state)
    again.add([Request("HTTP://A.TEST:80/x?a=2&b=1#frag"), Request("http://a.test/z")])
    flushed = await again.flush()
    assert (flushed.added, flushed.duplicates) == (1, 1)
    await again.close()


async def test_lease_gives_best_priority_first_and_only_once(tmp_state: Path) -> None:
    frontier = await opened(tmp_state)
    frontier.add([Request(f"http://a.test/{i}", priority=i % 3) for i in range(9)])
    frontier.add([Request("http://b.test/other")])
    await frontier.flush()

    first = await frontier.lease("a.test", 4)
    rest = await frontier.lease("a.test", 10)
    assert [r.priority for r in first] == [2, 2, 2, 1]
    assert [r.url for r in first[:3]] == ["http://a.test/2", "http://a.test/5", "http://a.test/8"]
    assert len(rest) == 5
    assert await frontier.lease("a.test", 10) == []
    assert await frontier.queued_hosts() == {"b.test"}
    await frontier.close()


async def test_reopening_requeues_what_was_in_flight(tmp_state: Path) -> None:
    frontier = await opened(tmp_state)
    frontier.add([Request(f"http://a.test/{i}") for i in range(3)])
    await frontier.flush()
    done, *unfinished = await frontier.lease("a.test", 3)
    frontier.complete(Outcome(done, RequestState.DONE, status=200, items=[b'{"n":1}']))
    await frontier.flush()
    await frontier.close()  # as if killed: two requests were in flight

    again = await opened(tmp_state)
    counts = await again.counts()
    assert (counts.queued, counts.done, counts.items) == (2, 1, 1)
    assert {r.url for r in await again.lease("a.test", 10)} == {r.url for r in unfinished}
    await again.close()


async def test_flush_and_lease_may_run_at_the_same_time(tmp_state: Path) -> None:
    frontier = await opened(tmp_state)
    frontier.add([Request(f"http://h{i % 4}.test/{i}") for i in range(400)])
    await frontier.flush()
    for round_ in range(20):
        frontier.add([Request(f"http://h{i % 4}.test/new/{round_}/{i}") for i in range(50)])
        leases = [frontier.lease(f"h{i}.test", 5) for i in range(4)]
        await asyncio.gather(frontier.flush(), *leases)
    assert (await frontier.counts()).queued == 400 + 20 * 50
    await frontier.close()
