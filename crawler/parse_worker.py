"""The screening process: it parses each page it is sent and says when it is done, so that a
parse that runs over its budget can be stopped (a thread inside lexbor cannot be; a process can).

Run as ``python -P crawler/parse_worker.py``: it imports selectolax and nothing of the crawler,
so it starts in a few tens of milliseconds. On stdin, a page is an 8-byte big-endian length and
that many bytes of UTF-8 HTML; the worker answers one byte on stdout per page, and one when it
is ready. It exits at the end of stdin.
"""

from __future__ import annotations

import signal
import sys
from typing import BinaryIO

HEADER_BYTES = 8
READY = b"R"
PARSED = b"P"


def serve(pages: BinaryIO, answers: BinaryIO) -> None:
    """Parse every page read from ``pages``, answering PARSED after each."""
    from selectolax.lexbor import LexborHTMLParser  # noqa: PLC0415 - the parent needs no lexbor

    answers.write(READY)
    answers.flush()
    while len(header := pages.read(HEADER_BYTES)) == HEADER_BYTES:
        size = int.from_bytes(header, "big")
        html = pages.read(size)
        if len(html) < size:
            return
        LexborHTMLParser(html)
        answers.write(PARSED)
        answers.flush()


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the crawl, not the key, ends this
    # process (it closes stdin, or kills it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
