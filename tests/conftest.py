"""Shared fixtures: the loopback test site and a path for a crawl's state file."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site import TestSite


@pytest.fixture
def site() -> Iterator[TestSite]:
    """A running `TestSite` on 127.0.0.1-3; stopped (threads joined, sockets closed) afterwards."""
    with TestSite() as running:
        yield running
    assert not running.errors, f"the test site itself failed: {running.errors!r}"


@pytest.fixture
def tmp_state(tmp_path: Path) -> Path:
    return tmp_path / "state.db"
