"""spider.state: kept in the crawl state, committed with exactly the outcomes whose changes it
holds, so a dedupe pipeline keeps every item once across kills and resumes."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler import DropItem, Request, Response, Spider
from crawler.errors import SpiderError, StateError
from crawler.spider_state import Gate, SpiderState
from tests.crawling import crawl
from tests.site import TestSite
from tests.test_cli import crawler, lines, start, wait_for_lines


class Empty(Spider):
    name = "empty"


def saved_state(db: Path) -> Any:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT value FROM meta WHERE key = 'spider_state'").fetchall()
    return json.loads(rows[0][0]) if rows else None


# The snapshots.


def test_a_spider_that_never_touches_its_state_has_nothing_to_save() -> None:
    state = SpiderState(Empty())
    state.load(None)
    assert not state.in_use
    assert state.snapshot() is None


def test_a_snapshot_is_made_only_when_the_state_changed() -> None:
    spider = Empty()
    state = SpiderState(spider)
    state.load(b'{"pages": 1}')
    assert spider.state == {"pages": 1}
    assert state.snapshot() is None  # read, unchanged
    spider.state["pages"] += 1
    assert state.snapshot() == b'{"pages":2}'
    assert state.snapshot() is None


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"ok": [1], "seen": {"a", "b"}}, r"^spider\.state\['seen'\] is not JSON data \(.*set"),
        ({"deep": {"when": object()}}, r"^spider\.state\['deep'\] is not JSON data"),
        ({1: "one"}, r"^spider\.state key 1 is not a string"),
    ],
)
def test_state_that_is_not_json_data_is_one_line_naming_the_key(
    state: dict[Any, Any], message: str
) -> None:
    spider = Empty()
    spider.state = state
    with pytest.raises(StateError, match=message) as caught:
        SpiderState(spider).snapshot()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("data", [b"[1, 2]", b"{not json"])
def test_a_saved_state_that_is_not_a_json_object_is_refused(data: bytes) -> None:
    with pytest.raises(StateError, match=r"saved spider\.state is not a JSON object"):
        SpiderState(Empty()).load(data)


def test_spider_state_must_be_a_dict() -> None:
    spider = Empty()
    with pytest.raises(SpiderError, match=r"spider\.state must be a dict, not str"):
        spider.state = "x"  # type: ignore[assignment]


async def test_a_snapshot_waits_for_spider_code_in_progress_and_holds_new_code_back() -> None:
    gate = Gate()
    order: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def callback(name: str, wait: bool) -> None:
        async with gate:
            order.append(f"{name} in")
            if wait:
                entered.set()
                await release.wait()
            order.append(f"{name} out")

    async def snapshot() -> None:
        async with gate.quiet():
            order.append("snapshot")

    first = asyncio.create_task(callback("a", wait=True))
    await entered.wait()
    tasks = [first, asyncio.create_task(snapshot()), asyncio.create_task(callback("b", False))]
    release.set()
    await asyncio.gather(*tasks)

    assert order == ["a in", "a out", "snapshot", "b in", "b out"]
    assert gate.working == 0


# Whole crawls.


class Ledger:
    """A dedupe pipeline that checks, half-way through each item, what the state file holds:
    the committed spider.state must name exactly the committed items."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.checks = 0
        self.states: set[int] = set()
        self.wrong: list[str] = []

    def open_spider(self, spider: Spider) -> None:
        self.seen = spider.state.setdefault("seen", {})

    async def process_item(self, item: Any, spider: Spider) -> Any:
        key = str(item["leaf"])
        if key in self.seen:
            raise DropItem(f"seen {key}")
        self.seen[key] = True
        for _ in range(3):
            await asyncio.sleep(0)  # half-way: other requests' commits may come now
            self.check()
        return item

    def check(self) -> None:
        connection = sqlite3.connect(self.db, isolation_level=None)
        try:
            connection.execute("BEGIN")  # one read snapshot for both queries
            rows = connection.execute("SELECT value FROM meta WHERE key = 'spider_state'")
            state = rows.fetchall()
            items = connection.execute("SELECT data FROM items").fetchall()
            connection.execute("COMMIT")
        finally:
            connection.close()
        saved = set(json.loads(state[0][0])["seen"]) if state else set()
        committed = {str(json.loads(data)["leaf"]) for (data,) in items}
        self.checks += 1
        self.states.add(len(saved))
        if saved != committed:
            self.wrong.append(f"saved {sorted(saved)} but committed {sorted(committed)}")


async def test_each_commit_holds_the_state_of_exactly_its_outcomes(
    site: TestSite, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    ledger = Ledger(state)

    class Leaves(Spider):
        name = "leaves"
        start_urls: ClassVar = [site.url("/fan/60")]
        pipelines: ClassVar = [ledger]

        def parse(self, response: Response) -> Iterator[Any]:
            yield from response.follow_all(css="a", callback=self.parse_leaf)

        def parse_leaf(self, response: Response) -> Iterator[Any]:
            leaf = int(response.url.rsplit("/", 1)[1])
            yield {"leaf": leaf}
            yield {"leaf": (leaf + 1) % 60}  # every key twice, from two requests
            if leaf < 30:  # requests for idle hosts: each is committed at once, while the
                # items of other requests are half-way
                url = site.url(f"/fan/{leaf}", host_index=1 + leaf % 2)
                yield Request(url, callback=self.parse_more)

        def parse_more(self, response: Response) -> Iterator[Any]:
            yield {"leaf": 100 + int(response.url.rsplit("/", 1)[1])}

    result = await crawl(Leaves, tmp_path, state=state, obey_robots=False, per_host_concurrency=8)

    assert ledger.wrong == []
    assert ledger.checks == 3 * (60 + 30)
    assert len(ledger.states) >= 3  # commits came while items were half-way
    keys = sorted(item["leaf"] for item in result.items)
    assert keys == list(range(60)) + list(range(100, 130))
    assert set(saved_state(state)["seen"]) == {str(key) for key in keys}


async def test_the_state_survives_a_resume(site: TestSite, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    opened: list[int] = []

    class Counter:
        def open_spider(self, spider: Spider) -> None:
            opened.append(spider.state.get("pages", 0))

        def process_item(self, item: Any, spider: Spider) -> Any:
            spider.state["pages"] = spider.state.get("pages", 0) + 1
            return item

    class Counting(Spider):
        name = "counting"
        start_urls: ClassVar = [site.url("/fan/9")]
        pipelines: ClassVar = [Counter()]

        def parse(self, response: Response) -> Iterator[Any]:
            yield {"url": response.url}
            yield from response.follow_all(css="a")

    first = await crawl(Counting, tmp_path, state=state, obey_robots=False, max_pages=4)
    second = await crawl(Counting, tmp_path, state=state, obey_robots=False)

    assert opened == [0, 4]
    assert (first.stats.items_scraped, second.stats.items_scraped) == (4, 6)  # per run
    assert saved_state(state) == {"pages": 10}


async def test_a_spider_without_state_writes_none(site: TestSite, tmp_path: Path) -> None:
    class Plain(Spider):
        name = "plain"
        start_urls: ClassVar = [site.url("/fan/3")]

        def parse(self, response: Response) -> Iterator[Any]:
            yield {"url": response.url}

    state = tmp_path / "state.db"
    await crawl(Plain, tmp_path, state=state, obey_robots=False)
    assert saved_state(state) is None


DEDUPE_SPIDER = """
from crawler import DropItem, Request, Response, Spider


class SeenOnce:
    def open_spider(self, spider):
        self.seen = spider.state.setdefault("seen", {{}})

    def process_item(self, item, spider):
        if str(item["key"]) in self.seen:
            raise DropItem("seen")
        self.seen[str(item["key"])] = True
        return item


class Dedupe(Spider):
    name = "dedupe"
    start_urls = ["{base}/slow-links?delay=0.05&n=240"]
    pipelines = [SeenOnce()]

    async def parse(self, response: Response):
        for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
            yield request

    async def parse_leaf(self, response: Response):
        leaf = int(response.url.rsplit("=", 1)[1])
        yield {{"key": leaf // 2}}  # two pages for each key
"""


@pytest.mark.slow
def test_a_dedupe_pipeline_keeps_every_item_once_across_sigkills(
    site: TestSite, tmp_path: Path
) -> None:
    (tmp_path / "dedupe.py").write_text(DEDUPE_SPIDER.format(base=site.base()))
    feed, state = tmp_path / "items.jsonl", tmp_path / "state.db"
    args = ("run", "dedupe.py", "-o", str(feed), "--state", str(state), "--no-progress",
            "-s", "obey_robots=false", "-s", "per_host_concurrency=3")  # fmt: skip
    for _ in range(2):
        process = start(*args, cwd=tmp_path)
        wait_for_lines(feed, lines(feed), process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    killed_at = lines(feed)
    finished = crawler(*args, cwd=tmp_path)

    assert finished.returncode == 0, finished.stderr
    assert 0 < killed_at < 120
    keys = [json.loads(line)["key"] for line in feed.read_text().splitlines()]
    assert sorted(keys) == list(range(120))
    assert sorted(int(key) for key in saved_state(state)["seen"]) == list(range(120))


def test_state_that_is_not_json_stops_the_crawl_with_one_line(
    site: TestSite, tmp_path: Path
) -> None:
    (tmp_path / "sets.py").write_text(
        "from crawler import Spider\n\n\n"
        "class Sets(Spider):\n"
        '    name = "sets"\n'
        f'    start_urls = ["{site.url("/fan/2")}"]\n\n'
        "    def parse(self, response):\n"
        '        self.state["seen"] = {response.url}\n'
        "        return None\n"
    )
    state = tmp_path / "state.db"
    result = crawler(
        "run", "sets.py", "--state", str(state), "--no-progress", "-s", "obey_robots=false",
        cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr  # the crawl broke under way: not bad input
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: spider.state['seen'] is not JSON data")
