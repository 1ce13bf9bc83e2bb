"""Stopping on SIGINT/SIGTERM in two steps: the first signal asks for a graceful stop, a second
for an immediate one; ``crawler run`` (the runner) and ``crawler schedule`` (the service)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """How many stop signals came while the ``with`` block ran.

    >>> with StopSignals.handled(on_first=engine.stop, on_again=task.cancel) as got:
    ...     await engine.run()  # doctest: +SKIP
    >>> got.count  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.count = 0

    def __repr__(self) -> str:
        return f"<StopSignals count={self.count}>"

    @classmethod
    @contextlib.contextmanager
    def handled(
        cls,
        on_first: Callable[[signal.Signals], None],
        on_again: Callable[[signal.Signals], None],
    ) -> Iterator[StopSignals]:
        """Install the handlers on the running loop for the block, and take them off after."""
        loop = asyncio.get_running_loop()
        got = cls()

        def on_signal(signum: int) -> None:
            got.count += 1
            (on_first if got.count == 1 else on_again)(signal.Signals(signum))

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            yield got
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
