"""Shared fixtures: the loopback test site, a path for a crawl's state file, a redis-server."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a unix socket in a temporary folder (see tests/redis_server.py)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    with RedisServer(folder) as server:
        yield server
