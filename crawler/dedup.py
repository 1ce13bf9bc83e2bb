"""Cheap first dedup checks, before any SQL or parsing: bounded sets of what was seen lately, and a
compact set of every URL key a crawl admitted."""

from __future__ import annotations

from array import array
from collections.abc import Hashable

_SHARDS = 256  # each grows on its own: a resize copies 1/256 of the keys, a short pause
_FIRST_SLOTS = 256


# URL keys a crawl's set of admitted (or committed) URLs keeps, 12-24 bytes each, so at most ~50
# MiB: past this many, the set starts again and the frontier's seen set decides alone until it
# has filled up again.
SEEN_URLS = 2_097_152


def url_key(method: str, url: str) -> int:
    """The key a request's URL is known by in these sets: its hash (8 bytes where the URL takes
    ten times that; 64-bit hashes of millions of URLs do not collide in practice, ~1 in 10^7 at
    2M), without the fragment, and with the method unless it is GET."""
    url = url.partition("#")[0]
    return hash(url) if method == "GET" else hash((method, url))


class RecentSet:
    """A bounded set: ``seen(key)`` says whether the key was added lately, and adds it.

    Two generations: when the young one fills, it becomes the old one and the oldest is dropped,
    so memory stays flat however long the crawl. A miss is not proof of novelty; the frontier's
    persistent seen set has the last word.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.young: set[Hashable] = set()
        self.old: set[Hashable] = set()

    def __repr__(self) -> str:
        return f"<RecentSet {len(self.young) + len(self.old)}/{2 * self.size}>"

    def __contains__(self, key: Hashable) -> bool:
        return key in self.young or key in self.old

    def add(self, key: Hashable) -> None:
        if len(self.young) >= self.size:
            self.old, self.young = self.young, set()
        self.young.add(key)

    def discard(self, key: Hashable) -> None:
        """Forget the key: what it stood for was not kept after all (a refused commit)."""
        self.young.discard(key)
        self.old.discard(key)

    def seen(self, key: Hashable) -> bool:
        """Whether the key was added lately; adds it."""
        if key in self.young or key in self.old:
            return True
        self.add(key)
        return False


class SeenSet:
    """Signed 64-bit keys (``hash()`` values), up to ``limit`` of them, in 12-24 bytes each
    where a Python set of ints takes about 90; the latest ``recent`` also in a plain set, which
    answers most lookups (a page's links repeat the pages just seen) at set speed.

    >>> seen = SeenSet(limit=1_000_000)
    >>> seen.add(hash("http://a.test/")); hash("http://a.test/") in seen
    True

    Past ``limit`` keys it forgets them all and starts again, so memory stays bounded: as with
    ``RecentSet``, a miss is not proof of novelty, and the frontier's seen set has the last word.
    Each key sits in one of 256 open-addressing tables (linear probing, 8-byte slots, at most
    two-thirds full); 0 marks a free slot, so the key 0 is kept as 1.
    """

    def __init__(self, limit: int, recent: int = 65_536) -> None:
        self.limit = limit
        self.recent = recent
        self.clear()

    def clear(self) -> None:
        self.count = 0
        self._young: set[int] = set()
        self._tables = [array("q", bytes(8 * _FIRST_SLOTS)) for _ in range(_SHARDS)]
        self._used = [0] * _SHARDS

    def __repr__(self) -> str:
        slots = sum(len(table) for table in self._tables)
        return f"<SeenSet {self.count}/{self.limit} keys in {slots * 8 // 1024} KiB>"

    def __len__(self) -> int:
        return self.count

    def __contains__(self, key: int) -> bool:
        if key in self._young:
            return True
        key = key or 1
        table = self._tables[(key >> 56) & 0xFF]
        mask = len(table) - 1
        slot = key & mask
        while (found := table[slot]) != 0:
            if found == key:
                return True
            slot = (slot + 1) & mask
        return False

    def add(self, key: int) -> None:
        """Add a key that is not in the set (check with ``in`` first)."""
        if self.count >= self.limit:
            self.clear()
        if len(self._young) >= self.recent:
            self._young = set()
        self._young.add(key)
        key = key or 1
        shard = (key >> 56) & 0xFF
        table = self._tables[shard]
        _put(table, key)
        self.count += 1
        used = self._used[shard] = self._used[shard] + 1
        if used * 3 > len(table) * 2:
            self._tables[shard] = _grown(table)


def _put(table: array[int], key: int) -> None:
    mask = len(table) - 1
    slot = key & mask
    while (found := table[slot]) != 0:
        if found == key:
            return
        slot = (slot + 1) & mask
    table[slot] = key


def _grown(table: array[int]) -> array[int]:
    bigger = array("q", bytes(16 * len(table)))
    for key in table:
        if key:
            _put(bigger, key)
    return bigger
