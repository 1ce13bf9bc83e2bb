"""The recrawl side of the SQLite frontier on real files: a finished state, re-queued seeds and
due pages, the migration of a schema 2 state, and what the history costs per URL."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

from crawler import Request
from crawler.freshness import Change, History, Revisit
from crawler.frontier import Outcome, RequestState
from crawler.frontier.sqlite import SqliteFrontier
from crawler.frontier.sqlite_history import READ_COLUMNS
from tests.crawling import crawl
from tests.site import TestSite
from tests.test_recrawl import DUE_NOW, QUICK, fresh_spider

DAY = 86400.0
POLICY = Revisit(after_s=DAY, min_s=3600, max_s=14 * DAY)
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"


async def opened(path: Path) -> SqliteFrontier:
    frontier = SqliteFrontier(path)
    await frontier.open("spider")
    return frontier


async def crawled(path: Path, urls: list[str], *, fetched_at: int = 1_000_000) -> None:
    """A state in which every one of ``urls`` was fetched, with its history."""
    frontier = await opened(path)
    frontier.add([Request(url, dont_filter=url.endswith("!")) for url in urls])
    await frontier.flush()
    for host in await frontier.queued_hosts():
        for request in await frontier.lease(host, len(urls)):
            history = History('"e"', LAST_MODIFIED, 1, fetched_at)
            frontier.complete(Outcome(request, RequestState.DONE, 200, history=history))
    await frontier.flush()
    await frontier.close()


async def test_a_state_is_finished_when_something_is_done_and_nothing_is_left(
    tmp_state: Path,
) -> None:
    frontier = await opened(tmp_state)
    assert not frontier.finished  # a new state
    frontier.add([Request("http://a.test/1"), Request("http://a.test/2")])
    await frontier.flush()
    first, second = await frontier.lease("a.test", 2)
    frontier.complete(Outcome(first, RequestState.DONE, 200))
    await frontier.flush()
    await frontier.close()  # as if killed with one in flight

    again = await opened(tmp_state)
    assert not again.finished
    (second,) = await again.lease("a.test", 2)
    again.complete(Outcome(second, RequestState.FAILED, 500))
    await again.flush()
    await again.close()

    last = await opened(tmp_state)
    assert last.finished
    await last.close()


async def test_a_recrawl_queues_the_due_pages_and_the_seeds_in_one_flush(tmp_state: Path) -> None:
    urls = [f"http://a.test/{i}" for i in range(4)]
    await crawled(tmp_state, [*urls, "http://a.test/unfiltered!"], fetched_at=1_000_000)
    with sqlite3.connect(tmp_state) as db:  # page 3 was fetched later: not due with the rest
        db.execute("UPDATE requests SET fetched_at = 1050000 WHERE url LIKE '%/3'")

    frontier = await opened(tmp_state)
    assert frontier.finished
    frontier.requeue_due(1_000_000 + DAY, POLICY)
    frontier.requeue([Request(urls[0]), Request(urls[3]), Request("http://a.test/new")])
    flushed = await frontier.flush()

    leased = {request.url for request in await frontier.lease("a.test", 10)}
    # Due: 0, 1, 2; seeds: 0 (already queued), 3 (not due, but a seed) and a new one. The
    # dont_filter request is not revisited: it comes back if a page asks for it again.
    assert leased == {*urls, "http://a.test/new"}
    assert flushed.requeued == 5
    assert flushed.hosts == {"a.test"}
    await frontier.close()


async def test_a_leased_revisit_carries_its_history(tmp_state: Path) -> None:
    await crawled(tmp_state, ["http://a.test/1"])
    frontier = await opened(tmp_state)
    frontier.requeue_due(2_000_000, POLICY)
    await frontier.flush()
    (request,) = await frontier.lease("a.test", 1)
    assert request.history == History('"e"', LAST_MODIFIED, 1, 1_000_000)
    await frontier.close()


async def test_reemit_finds_the_items_of_the_last_callback_only(tmp_state: Path) -> None:
    frontier = await opened(tmp_state)
    frontier.add([Request("http://a.test/1")])
    await frontier.flush()
    (request,) = await frontier.lease("a.test", 1)
    history = History(None, None, 1, 0)
    for items, change in (
        ([b"a1", b"a2"], Change.NEW),
        ([], Change.UNCHANGED),
        ([b"b1"], Change.CHANGED),
        ([], Change.NOT_MODIFIED),
    ):
        done = Outcome(request, RequestState.DONE, 200, items=items, history=history, change=change)
        frontier.complete(done)
        await frontier.flush()
        if change is Change.NEW:
            assert await frontier.last_items(request.id or 0) == [b"a1", b"a2"]
    assert await frontier.last_items(request.id or 0) == [b"b1"]
    await frontier.close()


V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE requests (
    id INTEGER PRIMARY KEY, fp INTEGER UNIQUE, host TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL, depth INTEGER NOT NULL,
    url TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL, callback TEXT, errback TEXT,
    extra BLOB NOT NULL, dont_filter INTEGER NOT NULL, retries INTEGER NOT NULL DEFAULT 0,
    status INTEGER, error TEXT
);
CREATE INDEX requests_queued ON requests (host, priority DESC, id) WHERE state = 0;
CREATE TABLE items (id INTEGER PRIMARY KEY, request_id INTEGER, data BLOB NOT NULL);
CREATE TABLE hosts (
    host TEXT PRIMARY KEY, robots_status INTEGER, robots_body BLOB, robots_fetched_at REAL
) WITHOUT ROWID;
"""


def schema_2_state(path: Path, spider: str, url: str, callback: str) -> None:
    """A finished crawl as a version without recrawls kept it: one page done, one item."""
    request = Request(url, callback)
    r = request.to_record()
    with sqlite3.connect(path) as db:
        db.executescript(V2_SCHEMA)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("spider", spider.encode()), ("schema", b"2")]
        )
        db.execute(
            "INSERT INTO requests (fp, host, state, priority, depth, url, method, body, callback,"
            " errback, extra, dont_filter, status) VALUES (?,?,2,?,?,?,?,?,?,?,?,?,200)",
            (request.fingerprint, request.host, r["priority"], r["depth"], r["url"], r["method"],
             r["body"], r["callback"], r["errback"], r["extra"], r["dont_filter"]),
        )  # fmt: skip
        db.execute("INSERT INTO items VALUES (1, 1, ?)", (b'{"n": 0, "v": 0}',))


async def test_a_schema_2_state_is_migrated_in_place_and_recrawled(
    site: TestSite, tmp_path: Path
) -> None:
    spider = fresh_spider(site, "strong", pages=1)
    state = tmp_path / "state.db"
    schema_2_state(state, spider.name, site.url("/fresh/strong/0?n=1"), "parse_page")

    folders = [tmp_path / name for name in ("one", "two")]
    for folder in folders:
        folder.mkdir()
    first = await crawl(spider, folders[0], state=state, **QUICK, **DUE_NOW)
    site.reset()
    second = await crawl(spider, folders[1], state=state, **QUICK, **DUE_NOW)

    # The page kept no validators: fetched plainly, its callback ran; then it has some.
    assert first.items == [{"n": 0, "v": 0}]
    assert second.items == []
    assert all("if-none-match" in hit.headers for hit in site.log)
    assert second.stats.not_modified == 2  # the start page and the one page
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (b"3",)


async def test_the_history_costs_at_most_64_bytes_per_url(tmp_path: Path) -> None:
    """Measured against the same state without the history columns, both vacuumed; with an
    Apache-style 24-character ETag (nginx's are 15-20; S3's MD5 ETags, 34, cost 10 more)."""
    pages = 4000
    rng = random.Random(7)
    state = tmp_path / "state.db"
    frontier = await opened(state)
    frontier.add([Request(f"http://a.test/catalogue/item-{i}.html") for i in range(pages)])
    await frontier.flush()
    for request in await frontier.lease("a.test", pages):
        etag = f'"{rng.getrandbits(44):011x}-{rng.getrandbits(40):010x}"'  # 24 characters
        history = History(etag, LAST_MODIFIED, rng.getrandbits(63), 1_780_000_000, 1.5, 1)
        item = b'{"title": "a book", "price": 12.5}'
        frontier.complete(
            Outcome(
                request, RequestState.DONE, 200, items=[item], history=history, change=Change.NEW
            )
        )
    await frontier.flush()
    await frontier.close()

    without = tmp_path / "without.db"
    shutil.copy(state, without)
    with sqlite3.connect(without) as db:
        for column in (*READ_COLUMNS, "items_from"):
            db.execute(f"ALTER TABLE requests DROP COLUMN {column}")
    sizes = []
    for path in (state, without):
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("VACUUM")
        pages_used = db.execute("PRAGMA page_count").fetchone()[0]
        sizes.append(pages_used * db.execute("PRAGMA page_size").fetchone()[0])
        db.close()
    assert (sizes[0] - sizes[1]) / pages <= 64
