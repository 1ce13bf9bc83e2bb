"""Cheap first dedup checks: bounded sets of what was seen lately, before any SQL or parsing."""

from __future__ import annotations

from collections.abc import Hashable


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
