"""The in-memory dedup sets: exact answers through growth, and bounded memory."""

from __future__ import annotations

import random

from crawler.dedup import SeenSet


def _keys(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) - 2**63 for _ in range(count)]


def test_every_key_added_is_found_through_many_resizes_and_no_other() -> None:
    seen = SeenSet(limit=1_000_000, recent=100)  # most lookups go past the recent set
    added = [*_keys(50_000, seed=1), 0, -1, 2**63 - 1, -(2**63)]  # 0 is kept as 1
    for key in added:
        assert key not in seen
        seen.add(key)
    assert len(seen) == len(added)
    assert all(key in seen for key in added)
    assert not any(key in seen for key in _keys(50_000, seed=2))


def test_past_its_limit_it_starts_again() -> None:
    seen = SeenSet(limit=1_000, recent=10)
    keys = _keys(1_500, seed=3)
    for key in keys:
        seen.add(key)
    assert len(seen) == 500
    assert all(key in seen for key in keys[1_000:])
    assert not any(key in seen for key in keys[:990])
    assert repr(seen).startswith("<SeenSet 500/1000 keys in ")


def test_it_takes_a_fraction_of_a_python_set() -> None:
    seen = SeenSet(limit=1_000_000)
    for key in _keys(200_000, seed=4):
        seen.add(key)
    slots = sum(len(table) for table in seen._tables)
    assert 8 * slots / len(seen) <= 24  # bytes a key, where a set of ints takes ~90
