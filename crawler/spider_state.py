"""``spider.state`` kept in the crawl state: loaded at open, and snapshotted at each commit so
that the snapshot holds exactly the changes of the outcomes committed with it.

The spider's code for one request (its callback or errback, the item pipelines, and the
buffering of its outcome) runs inside ``working``. A commit that saves the state first waits in
``quiet()`` until no such code is half-way, and holds new callbacks back meanwhile (writer
preference): otherwise a snapshot could carry a change whose outcome is not committed yet, and a
resumed crawl would run that request again with a state that already saw its items.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from crawler import jsondata
from crawler.errors import StateError
from crawler.spider import Spider, restore_state, state_if_used


class Gate:
    """Spider code in progress (``async with gate``, any number at once) against a snapshot
    (``async with gate.quiet()``, alone). Entering costs no await unless a snapshot waits."""

    def __init__(self) -> None:
        self.working = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Gate working={self.working} open={self._open.is_set()}>"

    async def __aenter__(self) -> None:
        while not self._open.is_set():
            await self._open.wait()
        self.working += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self.working -= 1
        if self.working == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Hold new spider code back and wait until none is in progress. On exit the held-back
        code may go on, from this task's next await: a commit that takes its buffers before
        its first await gets exactly the outcomes whose changes the snapshot holds."""
        self._open.clear()
        try:
            while self.working:
                self._idle.clear()
                await self._idle.wait()
            yield
        finally:
            self._open.set()


class SpiderState:
    """Loads ``spider.state`` and makes its snapshots; ``gate`` orders them with the spider's
    code. Costs nothing for a spider that never touches ``spider.state``."""

    def __init__(self, spider: Spider) -> None:
        self.spider = spider
        self.gate = Gate()
        self._saved: bytes | None = None

    def __repr__(self) -> str:
        size = "unsaved" if self._saved is None else f"{len(self._saved)} bytes saved"
        return f"<SpiderState {self.spider.name!r} in_use={self.in_use} {size}>"

    @property
    def in_use(self) -> bool:
        return state_if_used(self.spider) is not None

    def load(self, data: bytes | None) -> None:
        """Set ``spider.state`` from what the crawl state holds (nothing: an empty dict)."""
        state: Any = {}
        if data is not None:
            try:
                state = jsondata.loads(data)
            except jsondata.JSONDecodeError:
                state = None
            if not isinstance(state, dict):
                raise StateError("the saved spider.state is not a JSON object")
        self._saved = jsondata.dumps(state) if data is not None else None
        restore_state(self.spider, state)

    def snapshot(self) -> bytes | None:
        """The state as JSON if it changed since the last snapshot, else None. Raises
        StateError, naming the key, for a state that is not JSON data."""
        state = state_if_used(self.spider)
        if state is None:
            return None
        try:
            data = jsondata.dumps(state)
        except TypeError as error:
            raise StateError(_not_json(state, error)) from None
        if data == self._saved:
            return None
        self._saved = data
        return data


def _not_json(state: dict[Any, Any], error: TypeError) -> str:
    advice = "keep dicts with str keys, lists, str, int, float, bool and None there"
    for key, value in state.items():
        if not isinstance(key, str):
            return f"spider.state key {key!r} is not a string: {advice}"
        try:
            jsondata.dumps(value)
        except TypeError as inner:
            return f"spider.state[{key!r}] is not JSON data ({inner}): {advice}"
    return f"spider.state is not JSON data ({error}): {advice}"
