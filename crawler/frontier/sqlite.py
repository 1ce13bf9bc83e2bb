"""The embedded frontier: the whole crawl state in one SQLite file, through aiosqlite.

WAL mode and batched writes: one transaction commits many responses' outcomes, items and links.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from crawler import jsondata
from crawler.dedup import RecentSet
from crawler.errors import StateError
from crawler.freshness import Revisit
from crawler.frontier import Counts, Flushed, Outcome, RequestState, RobotsRecord
from crawler.frontier import sqlite_history as history
from crawler.frontier.sqlite_runs import (
    RUN_COLUMNS,
    RUNS_SCHEMA,
    SAVE_RUN_STATS,
    run_from_row,
    run_stats_row,
)
from crawler.request import Request
from crawler.runs import Run, RunOutcome, iso

# 2: WHATWG canonical URLs (new fingerprints), robots.txt kept per site
# 3: each page's last fetch, for recrawls (sqlite_history), added in place to a schema 2 state
SCHEMA_VERSION = "3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    fp INTEGER UNIQUE,
    host TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    body BLOB NOT NULL,
    callback TEXT,
    errback TEXT,
    extra BLOB NOT NULL,
    dont_filter INTEGER NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS requests_queued ON requests (host, priority DESC, id) WHERE state = 0;
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, request_id INTEGER, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY, robots_status INTEGER, robots_body BLOB, robots_fetched_at REAL
) WITHOUT ROWID;
"""

_INSERT = (
    "INSERT OR IGNORE INTO requests (fp, host, priority, depth, url, method, body, callback,"
    " errback, extra, dont_filter) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_REQUEUE = _INSERT.replace("INSERT OR IGNORE", "INSERT") + history.REQUEUE_DONE
_COMPLETE = "UPDATE requests SET state=?, status=?, error=?, retries=? WHERE id=?"
_COLUMNS = (
    "id", "url", "method", "body", "callback", "errback", "extra", "priority", "depth",
    "dont_filter", "retries", *history.READ_COLUMNS,
)  # fmt: skip
# Admission drops the URLs it saw before they come here: this catches other spellings of a URL
# just added (the same fingerprint), and needs to be no bigger.
_RECENT = 4_096
_SPIDER_STATE = "spider_state"  # the meta key of spider.state
# A commit writes each page it changed to the WAL, and new fingerprints land on random pages of
# their index: with SQLite's default (1,000 pages) the WAL was copied back, and synced, every few
# commits. Ten times that lets a page changed by many commits be copied back once: inserting a
# link costs 15 -> 11 µs of CPU at 200k queued, 23 -> 13 µs at 1M, and the WAL stays under 40 MiB.
_CHECKPOINT_PAGES = 10_000


class SqliteFrontier:
    """The crawl state in one SQLite file. ``SqliteFrontier(path)``; ``await open(name)``."""

    shared: ClassVar[bool] = False  # one process: crawler/lock.py keeps others out

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._recent = RecentSet(_RECENT)
        self._new: list[tuple[Any, ...]] = []
        self._requeue: list[tuple[Any, ...]] = []
        self._due: tuple[float, Revisit] | None = None
        self.finished = False
        self.pending_hosts: set[str] = set()
        self._outcomes: list[Outcome] = []
        self._robots: dict[str, RobotsRecord] = {}
        self._meta: dict[str, bytes] = {}
        self._run: int | None = None  # the run whose stats save_stats writes
        self._run_stats: tuple[Any, ...] | None = None
        self._next_item = 1
        # One connection: a transaction must not interleave with another statement.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"<SqliteFrontier {self.path} run {self._run} finished={self.finished} pending:"
            f" {len(self._new)} new, {len(self._requeue)} requeued, {len(self._outcomes)} outcomes>"
        )

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StateError("the frontier is not open")
        return self._db

    async def open(self, spider_name: str) -> dict[str, Any]:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                " PRAGMA cache_size=-16000; PRAGMA temp_store=MEMORY;"
                f" PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES};"
            )
            await self._db.executescript(_SCHEMA)
            await self._db.executescript(RUNS_SCHEMA)
            meta = await self._read_meta()
            await self._check_owner(meta, spider_name)
            # Before anything queues rows again: a finished crawl run again is a recrawl.
            self.finished = bool((await self._rows(history.FINISHED))[0][0])
            # Expired leases come back: here every in-flight row's, as the state lock
            # (crawler/lock.py) guarantees that the run holding them is gone.
            await self._db.execute("UPDATE requests SET state = 0 WHERE state = 1")
            rows = await self._rows("SELECT COALESCE(MAX(id), 0) FROM items")
            self._next_item = rows[0][0] + 1
        except sqlite3.OperationalError as exc:
            # Not a bad file but a file (or its folder, where the -wal and -shm files go) that
            # this user may not write, or a locked or full disk.
            await self.close()
            raise StateError(
                f"state file {self.path} cannot be opened for writing: {exc}"
            ) from None
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StateError(
                f"state file {self.path} is not a usable crawl state ({exc})"
            ) from None
        except BaseException:
            await self.close()
            raise
        stats = meta.get("stats")
        return dict(jsondata.loads(stats)) if stats else {}

    async def _rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        async with self._lock:
            try:
                return list(await self.db.execute_fetchall(sql, parameters))
            except sqlite3.Error as exc:
                raise self._broken(exc) from None

    def _broken(self, exc: sqlite3.Error) -> StateError:
        return StateError(f"state file {self.path} cannot be used: {exc}")

    async def _read_meta(self) -> dict[str, bytes]:
        return {key: value for key, value in await self._rows("SELECT key, value FROM meta")}

    async def _check_owner(self, meta: dict[str, bytes], spider_name: str) -> None:
        owner = meta.get("spider")
        if owner is None:
            await self._add_history_columns(
                ("INSERT INTO meta VALUES ('spider', ?)", (spider_name.encode(),)),
                ("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION.encode(),)),
            )
            return
        if owner.decode() != spider_name:
            raise StateError(
                f"state file {self.path} belongs to spider {owner.decode()!r}, not {spider_name!r}"
            )
        schema = meta.get("schema", b"").decode()
        if schema == "2":
            await self._add_history_columns(
                ("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION.encode(),))
            )
        elif schema != SCHEMA_VERSION:
            raise StateError(f"state file {self.path} was written by another crawler version")

    async def requeue_failed(self, permanent: Collection[int]) -> int:
        failed, queued = int(RequestState.FAILED), int(RequestState.QUEUED)
        async with self._lock:
            try:
                cursor = await self.db.execute(
                    "UPDATE requests SET state = ?, retries = 0, status = NULL, error = NULL"
                    " WHERE state = ? AND (status IS NULL OR status NOT IN"
                    " (SELECT value FROM json_each(?)))",
                    (queued, failed, jsondata.dumps(sorted(permanent)).decode()),
                )
            except sqlite3.Error as exc:
                raise self._broken(exc) from None
            return cursor.rowcount

    async def _add_history_columns(self, *meta: tuple[str, tuple[Any, ...]]) -> None:
        """Schema 3's columns and the meta rows that say so, in one transaction."""
        db = self.db
        await db.execute("BEGIN")
        for statement in history.ADD_COLUMNS:
            await db.execute(statement)
        for sql, parameters in meta:
            await db.execute(sql, parameters)
        await db.execute("COMMIT")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def add(self, requests: Sequence[Request], *, parent: Request | None = None) -> int:
        duplicates = 0
        for request in requests:
            if request.dont_filter:
                fp = None
            elif self._recent.seen(request.fingerprint):
                duplicates += 1
                continue
            else:
                fp = request.fingerprint
            self.pending_hosts.add(request.host)
            self._new.append(_row(fp, request))
        return duplicates

    def requeue(self, requests: Sequence[Request]) -> None:
        for request in requests:
            fp = None if request.dont_filter else request.fingerprint
            if fp is not None:
                self._recent.seen(fp)
            self.pending_hosts.add(request.host)
            self._requeue.append(_row(fp, request))

    def requeue_due(self, now: float, policy: Revisit) -> None:
        self._due = (now, policy)

    async def last_items(self, request_id: int) -> list[bytes]:
        return [row[0] for row in await self._rows(history.LAST_ITEMS, (request_id,))]

    def complete(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)

    def save_robots(self, host: str, record: RobotsRecord) -> None:
        self._robots[host] = record

    def save_stats(self, stats: dict[str, Any]) -> None:
        if self._run is None:
            self._meta["stats"] = jsondata.dumps(stats)
        else:
            self._run_stats = run_stats_row(self._run, stats)

    def save_feed(self, path: str, last_item: int, offset: int) -> None:
        self._meta[f"feed:{path}"] = jsondata.dumps([last_item, offset])

    def save_spider_state(self, data: bytes) -> None:
        self._meta[_SPIDER_STATE] = data

    @property
    def pending_writes(self) -> int:
        return len(self._new) + len(self._outcomes) + len(self._requeue)

    async def flush(self) -> Flushed:
        """Commit everything buffered in one transaction; the buffers are taken before the
        first await (see ``Frontier.flush``)."""
        new, self._new = self._new, []
        requeue, self._requeue = self._requeue, []
        due, self._due = self._due, None
        self.pending_hosts = set()
        outcomes, self._outcomes = self._outcomes, []
        robots, self._robots = self._robots, {}
        meta, self._meta = self._meta, {}
        run_stats, self._run_stats = self._run_stats, None
        result = Flushed(hosts={row[1] for row in new} | {row[1] for row in requeue})
        items: list[tuple[int, int | None, bytes]] = []
        plain: list[tuple[Any, ...]] = []
        fetched: list[tuple[Any, ...]] = []
        for outcome in outcomes:
            first = self._next_item if outcome.items else None
            for data in outcome.items:
                items.append((self._next_item, outcome.request.id, data))
                self._next_item += 1
            if outcome.history is None:
                request = outcome.request
                plain.append(
                    (outcome.state, outcome.status, outcome.error, request.retries, request.id)
                )
            else:
                fetched.append(history.fetched_row(outcome, outcome.history, first))
        async with self._lock:
            await self._commit(
                new, plain=plain, fetched=fetched, items=items, robots=robots, meta=meta,
                requeue=requeue, due=due, run_stats=run_stats, result=result,
            )  # fmt: skip
        result.duplicates = len(new) - result.added
        result.added += result.requeued
        result.items = [(item_id, data) for item_id, _, data in items]
        return result

    async def _commit(
        self,
        new: list[tuple[Any, ...]],
        *,
        plain: list[tuple[Any, ...]],
        fetched: list[tuple[Any, ...]],
        items: list[tuple[int, int | None, bytes]],
        robots: dict[str, RobotsRecord],
        meta: dict[str, bytes],
        run_stats: tuple[Any, ...] | None,
        requeue: list[tuple[Any, ...]],
        due: tuple[float, Revisit] | None,
        result: Flushed,
    ) -> None:
        def commit(db: sqlite3.Connection) -> None:
            try:
                db.execute("BEGIN")
                if due is not None or requeue:
                    result.requeued = _requeue_rows(db, requeue, due)
                before = db.total_changes
                db.executemany(_INSERT, new)
                result.added = db.total_changes - before
                db.executemany(_COMPLETE, plain)
                db.executemany(history.COMPLETE_FETCHED, fetched)
                db.executemany("INSERT INTO items VALUES (?,?,?)", items)
                db.executemany(
                    "INSERT OR REPLACE INTO hosts VALUES (?,?,?,?)",
                    [(h, r.status, r.body, r.fetched_at) for h, r in robots.items()],
                )
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", list(meta.items()))
                if run_stats is not None:
                    db.execute(SAVE_RUN_STATS, run_stats)
                db.execute("COMMIT")
            except BaseException:
                # None of the batch lands: the state stays as the last commit left it.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

        try:
            await self._on_thread(commit)
        except sqlite3.Error as exc:
            raise self._broken(exc) from None

    async def _on_thread(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``work`` on aiosqlite's thread with its connection, in one hop: each statement
        awaited alone costs a turn of the event loop, which a busy crawl makes long."""
        db = self.db
        connection = db._conn  # aiosqlite's own; only its thread may use it
        await db._execute(work, connection)  # type: ignore[no-untyped-call]

    async def lease(self, host: str, limit: int) -> list[Request]:
        rows = await self._rows(
            f"UPDATE requests SET state = 1 WHERE id IN (SELECT id FROM requests"
            f" WHERE host = ? AND state = 0 ORDER BY priority DESC, id LIMIT ?)"
            f" RETURNING {', '.join(_COLUMNS)}",
            (host, limit),
        )
        rows.sort(key=lambda row: (-row[7], row[0]))  # RETURNING keeps no order: priority, id
        return [_leased(row) for row in rows]

    async def queued_hosts(self) -> set[str]:
        rows = await self._rows("SELECT DISTINCT host FROM requests WHERE state = 0")
        return {row[0] for row in rows}

    async def robots(self, host: str) -> RobotsRecord | None:
        rows = await self._rows(
            "SELECT robots_status, robots_body, robots_fetched_at FROM hosts WHERE host = ?",
            (host,),
        )
        return RobotsRecord(*rows[0]) if rows else None

    async def spider_state(self) -> bytes | None:
        rows = await self._rows("SELECT value FROM meta WHERE key = ?", (_SPIDER_STATE,))
        return bytes(rows[0][0]) if rows else None

    async def feed(self, path: str) -> tuple[int, int] | None:
        rows = await self._rows("SELECT value FROM meta WHERE key = ?", (f"feed:{path}",))
        if not rows:
            return None
        last, offset = jsondata.loads(rows[0][0])
        return int(last), int(offset)

    async def trimmed(self) -> tuple[int, list[str]]:
        return 0, []  # the state keeps every item: a new feed of any run gets them all

    async def items_after(self, item_id: int) -> AsyncIterator[tuple[int, bytes]]:
        while rows := await self._rows(
            "SELECT id, data FROM items WHERE id > ? ORDER BY id LIMIT 1000", (item_id,)
        ):
            for row in rows:
                yield row[0], row[1]
            item_id = rows[-1][0]

    async def counts(self) -> Counts:
        rows = await self._rows(
            "SELECT SUM(state IN (0, 1)), SUM(state = 2), SUM(state = 3),"
            " (SELECT COUNT(*) FROM items), (SELECT MAX(id) FROM items) FROM requests"
        )
        return Counts(*(int(v or 0) for v in rows[0]))

    async def last_run(self) -> Run | None:
        rows = await self._rows(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1")
        return run_from_row(rows[0]) if rows else None

    async def runs(self) -> list[Run]:
        return [
            run_from_row(row)
            for row in await self._rows(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id")
        ]

    async def start_run(self, run: Run) -> Run:
        """Record a new run (its id is chosen here); later ``save_stats`` write its stats."""
        rows = await self._rows(
            "INSERT INTO runs (trigger, scheduled_for, started_at, finished_at, outcome,"
            " exit_code, stats) VALUES (?,?,?,?,?,?,?) RETURNING id",
            (
                str(run.trigger), iso(run.scheduled_for), iso(run.started_at),
                iso(run.finished_at), str(run.outcome), run.exit_code, jsondata.dumps(run.stats),
            ),
        )  # fmt: skip
        run.id = rows[0][0]
        await self._rows(SAVE_RUN_STATS, run_stats_row(run.id, run.stats))
        if run.outcome is RunOutcome.RUNNING:
            self._run = run.id
        return run

    async def resume_run(self, run: Run) -> Run:
        """Continue an unfinished run: it is running again; later ``save_stats`` write its stats."""
        await self._rows(
            "UPDATE runs SET outcome = ?, finished_at = NULL, exit_code = NULL,"
            " resumes = resumes + 1 WHERE id = ?",
            (str(RunOutcome.RUNNING), run.id),
        )
        run.outcome, run.finished_at, run.exit_code = RunOutcome.RUNNING, None, None
        run.resumes += 1
        self._run = run.id
        return run

    async def finish_run(self, run: Run, stats: dict[str, Any] | None) -> None:
        """Record how ``run`` ended (its outcome, exit code and end time), with its final stats
        unless None (then the last committed ones stay)."""
        self._run = None
        if stats is not None:  # first: a run without an end is continued, with these stats
            run.stats = stats
            await self._rows(SAVE_RUN_STATS, run_stats_row(run.id, stats))
        await self._rows(
            "UPDATE runs SET outcome = ?, exit_code = ?, finished_at = ? WHERE id = ?",
            (str(run.outcome), run.exit_code, iso(run.finished_at), run.id),
        )


def read_runs(path: Path) -> list[Run] | None:
    """The runs recorded in a state file, opened read-only; None for a state from
    before run records."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        ) as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            if ("runs",) not in tables:
                return None
            rows = db.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"state file {path} is not a usable crawl state ({exc})") from None
    return [run_from_row(row) for row in rows]


def _requeue_rows(
    db: sqlite3.Connection, requeue: list[tuple[Any, ...]], due: tuple[float, Revisit] | None
) -> int:
    """Queue a recrawl's due pages, then its seeds (inserting new ones); how many rows were
    queued. In the flush's transaction: with the feed checkpoint of the recrawl's new feed."""
    before = db.total_changes
    if due is not None:
        db.create_function("crawler_due", 3, history.due_function(*due))
        db.execute(history.REQUEUE_DUE)
    db.executemany(_REQUEUE, requeue)
    return db.total_changes - before


def _row(fp: int | None, request: Request) -> tuple[Any, ...]:
    r = request.to_record()
    return (
        fp, request.host, r["priority"], r["depth"], r["url"], r["method"], r["body"],
        r["callback"], r["errback"], r["extra"], r["dont_filter"],
    )  # fmt: skip


def _leased(row: tuple[Any, ...]) -> Request:
    record = dict(zip(_COLUMNS, row, strict=True))
    request = Request.from_record(record)
    request.history = history.history_of(record)
    return request
