"""Recrawl policy, pure: which validators a revisit sends, whether a 304 may be believed, how a
page's revisit interval adapts, and whether a page is due again. No I/O, no clock of its own.

A page's interval is ``revisit_after_s`` times its own factor, within ``[revisit_min_s,
revisit_max_s]``. The factor starts at 1, grows x1.5 with each unchanged revisit and moves halfway
toward the minimum when the page changed (StormCrawler's adaptive schedule). Keeping a factor
rather than seconds lets a new ``revisit_after_s`` rescale every page at once: with
``revisit_after_s=0`` and ``revisit_min_s=0`` every known page is due.

>>> policy = Revisit(after_s=3600, min_s=60, max_s=86400)
>>> policy.interval(policy.next_factor(1.0, changed=False))
5400.0
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROWTH = 1.5  # an unchanged revisit multiplies the interval by this
SHRINK = 0.5  # a change moves the interval this far toward the minimum
NEVER = "never"  # meta["revisit_after_s"] = "never": fetched once, never revisited
_NEVER_S = -1  # how NEVER is stored


class Change(enum.StrEnum):
    """What a fetch found, compared with the page's last fetch."""

    NEW = "new"  # no earlier fetch to compare with
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # a 200 whose signature is the last one's
    NOT_MODIFIED = "not_modified"  # a 304 to a conditional request

    @property
    def runs_callback(self) -> bool:
        return self in (Change.NEW, Change.CHANGED)


@dataclass(frozen=True, slots=True)
class History:
    """What the state keeps of a page's last fetch.

    ``own_interval_s`` is the request's own interval (``meta["revisit_after_s"]``): None when the
    page follows the adaptive policy, -1 when it is never revisited.
    """

    etag: str | None
    last_modified: str | None
    signature: int
    fetched_at: int
    factor: float = 1.0
    streak: int = 0  # unchanged revisits in a row
    own_interval_s: int | None = None


@dataclass(frozen=True, slots=True)
class Revisit:
    """The interval policy: ``revisit_after_s`` and its bounds, in seconds."""

    after_s: float
    min_s: float
    max_s: float

    def interval(self, factor: float) -> float:
        return min(max(self.after_s * factor, self.min_s), self.max_s)

    def next_factor(self, factor: float, *, changed: bool) -> float:
        """The factor after a revisit: x1.5 while unchanged (no further once the interval is at
        the maximum), halfway toward the minimum after a change."""
        if self.after_s <= 0:
            return 1.0
        if changed:
            floor = self.min_s / self.after_s
            return max(floor, factor - SHRINK * (factor - floor))
        return min(factor * GROWTH, max(factor, self.max_s / self.after_s))

    def is_due(
        self, fetched_at: int | None, factor: float | None, own_interval_s: int | None, now: float
    ) -> bool:
        """Whether a page fetched at ``fetched_at`` (unix seconds) should be fetched again at
        ``now``. A page with no fetch recorded (a state from before recrawls) is due."""
        if fetched_at is None:
            return True
        if own_interval_s is not None:
            return own_interval_s != _NEVER_S and fetched_at + own_interval_s <= now
        return fetched_at + self.interval(1.0 if factor is None else factor) <= now


def conditional_headers(history: History | None) -> dict[str, str]:
    """The validators of the last fetch, sent back verbatim (a weak ETag stays weak)."""
    if history is None:
        return {}
    headers = {}
    if history.etag is not None:
        headers["If-None-Match"] = history.etag
    if history.last_modified is not None:
        headers["If-Modified-Since"] = history.last_modified
    return headers


_CONDITIONS = frozenset({"if-none-match", "if-modified-since"})


def is_conditional(*header_sets: Mapping[str, str]) -> bool:
    """Whether a request carried validators (ours or the spider's own). A 304 is believed only
    then: to a request without any it is a server's mistake, and the page is tried again."""
    return any(name.lower() in _CONDITIONS for headers in header_sets for name in headers)


def signature(content: bytes | str) -> int:
    """An 8-byte hash of what matters in a page, as a signed 64-bit int (SQLite's INTEGER)."""
    data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def own_interval(meta: dict[str, Any]) -> int | None:
    """``meta["revisit_after_s"]`` as stored: None if absent, seconds, or -1 for "never".
    Raises ValueError for anything else."""
    value = meta.get("revisit_after_s")
    if value is None:
        return None
    if value == NEVER:
        return _NEVER_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            f'meta["revisit_after_s"] must be seconds (a number >= 0) or "never", not {value!r}'
        )
    if value < 0:
        raise ValueError(f'meta["revisit_after_s"] must be >= 0, not {value!r}')
    return math.ceil(value)


def revisit(
    last: History | None,
    *,
    etag: str | None,
    last_modified: str | None,
    signature: int | None,
    now: float,
    policy: Revisit,
    own_interval_s: int | None,
) -> tuple[History, Change]:
    """The page's new history after a fetch, and what the fetch found. ``signature=None`` means
    a 304: the content is the last fetch's. A 304 without validators keeps the old ones."""
    if last is None:
        if signature is None:
            raise ValueError("a 304 needs an earlier fetch")
        change = Change.NEW
        factor, streak = 1.0, 0
    else:
        if signature is None:
            change = Change.NOT_MODIFIED
            signature = last.signature
            etag = etag if etag is not None else last.etag
            last_modified = last_modified if last_modified is not None else last.last_modified
        else:
            change = Change.UNCHANGED if signature == last.signature else Change.CHANGED
        changed = change is Change.CHANGED
        factor = policy.next_factor(last.factor, changed=changed)
        streak = 0 if changed else last.streak + 1
    history = History(etag, last_modified, signature, int(now), factor, streak, own_interval_s)
    return history, change


def pack_date(value: str | None) -> int | str | None:
    """Last-Modified as stored: unix seconds when the header is the IMF-fixdate that
    ``unpack_date`` gives back exactly (4 bytes instead of 29), else the text as it came."""
    if value is None:
        return None
    try:
        seconds = int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return value
    return seconds if email.utils.formatdate(seconds, usegmt=True) == value else value


def unpack_date(stored: int | str | None) -> str | None:
    if stored is None or isinstance(stored, str):
        return stored
    return email.utils.formatdate(stored, usegmt=True)
