"""The SQLite frontier's side of recrawls: each page's last fetch in the ``requests`` table
(schema 3's columns), and the statements that queue a finished crawl's due pages again.

The columns are NULL until a page is fetched, and small after: the validators verbatim,
Last-Modified packed by ``freshness.pack_date``, an 8-byte signature, unix seconds, the revisit
factor in thousandths (2 bytes, not a REAL's 8), the unchanged streak, the request's own interval,
and the id of the first item its last callback emitted (what ``on_unchanged = "reemit"`` copies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crawler.freshness import History, Revisit, pack_date, unpack_date
from crawler.frontier import Outcome

# Added with ALTER TABLE, to a new state as to a schema 2 one: the one way they come to be.
ADD_COLUMNS = [
    f"ALTER TABLE requests ADD COLUMN {column}"
    for column in (
        "etag TEXT", "last_modified", "signature INTEGER", "fetched_at INTEGER",
        "factor INTEGER", "streak INTEGER", "own_interval INTEGER", "items_from INTEGER",
    )
]  # fmt: skip

# Leased with each request: what a revisit needs to send and compare.
READ_COLUMNS = (
    "etag", "last_modified", "signature", "fetched_at", "factor", "streak", "own_interval",
)  # fmt: skip

FINISHED = (
    "SELECT EXISTS (SELECT 1 FROM requests WHERE state = 2)"
    " AND NOT EXISTS (SELECT 1 FROM requests WHERE state = 0)"
    " AND NOT EXISTS (SELECT 1 FROM requests WHERE state = 1)"
)

# Requests without a fingerprint (dont_filter) come back only when a page asks for them again.
REQUEUE_DUE = (
    "UPDATE requests SET state = 0 WHERE state = 2 AND fp IS NOT NULL"
    " AND crawler_due(fetched_at, factor, own_interval)"
)

# Appended to the frontier's INSERT of new requests: a seed already done is queued again.
REQUEUE_DONE = " ON CONFLICT (fp) DO UPDATE SET state = 0 WHERE state = 2"

COMPLETE_FETCHED = (
    "UPDATE requests SET state=?, status=?, error=?, retries=?, etag=?, last_modified=?,"
    " signature=?, fetched_at=?, factor=?, streak=?, own_interval=?,"
    " items_from = CASE WHEN ? THEN ? ELSE items_from END WHERE id=?"
)

LAST_ITEMS = (
    "SELECT data FROM items WHERE request_id = ?1"
    " AND id >= (SELECT items_from FROM requests WHERE id = ?1) ORDER BY id"
)


def due_function(
    now: float, policy: Revisit
) -> Callable[[int | None, int | None, int | None], bool]:
    """``crawler_due(fetched_at, factor, own_interval)`` for REQUEUE_DUE: the policy's call."""

    def due(fetched_at: int | None, factor: int | None, own_interval: int | None) -> bool:
        return policy.is_due(fetched_at, _factor(factor), own_interval, now)

    return due


def history_of(record: Mapping[str, Any]) -> History | None:
    if record["fetched_at"] is None or record["signature"] is None:
        return None
    return History(
        record["etag"],
        unpack_date(record["last_modified"]),
        record["signature"],
        record["fetched_at"],
        _factor(record["factor"]),
        record["streak"] or 0,
        record["own_interval"],
    )


def fetched_row(outcome: Outcome, history: History, first_item: int | None) -> tuple[Any, ...]:
    """COMPLETE_FETCHED's parameters: the outcome, the new history, and where the page's items
    start when it emitted some or its callback ran (an unchanged page keeps its last items)."""
    emitted = first_item is not None or (
        outcome.change is not None and outcome.change.runs_callback
    )
    return (
        outcome.state, outcome.status, outcome.error, outcome.request.retries, history.etag,
        pack_date(history.last_modified), history.signature, history.fetched_at,
        round(history.factor * 1000), history.streak or None, history.own_interval_s, emitted,
        first_item, outcome.request.id,
    )  # fmt: skip


def _factor(stored: int | None) -> float:
    return 1.0 if stored is None else stored / 1000
