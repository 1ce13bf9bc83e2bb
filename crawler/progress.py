"""Progress reporting: a live status line on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from crawler.stats import Stats

log = logging.getLogger("crawler.progress")


class Progress(logging.Filter):
    """``update()`` often; it redraws or logs at its own pace.

    On a terminal it is also a logging filter: a log line first wipes the status line, which the
    next update draws again below it.
    """

    def __init__(self, stats: Stats, interval: float, stream: TextIO = sys.stderr) -> None:
        super().__init__()
        self.stats = stats
        self.interval = interval
        self.stream = stream
        self.live = stream.isatty()
        self._last = time.monotonic()
        self._drawn = False
        if self.live:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        return True

    def __repr__(self) -> str:
        return f"<Progress live={self.live} interval={self.interval}>"

    def line(self, queued: int, in_flight: int) -> str:
        s = self.stats
        return (
            f"pages {s.pages_crawled} ({s.pages_per_second():.1f}/s) | items {s.items_scraped}"
            f" | errors {s.failures + s.callback_errors} | queue {queued} | in flight {in_flight}"
        )

    def update(self, queued: int, in_flight: int) -> None:
        now = time.monotonic()
        if self.live:
            self.stream.write("\r\x1b[K" + self.line(queued, in_flight))
            self.stream.flush()
            self._drawn = True
        elif now - self._last >= self.interval:
            self._last = now
            log.info(self.line(queued, in_flight))

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self)
