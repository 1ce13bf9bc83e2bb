"""Log lines safe to print: what pages wrote is escaped, and URL passwords are hidden.

Links, headers and error texts come from strangers. Escaping control characters keeps them from
moving the cursor or recolouring a terminal, and a password in a URL's userinfo is replaced by
``***`` wherever it appears in a message.
"""

from __future__ import annotations

import logging
import re

# C0 and C1 controls (a newline too: one message, one line), DEL, and the bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_USERINFO_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/?#@\s:]*:)[^/?#@\s]*@")


def redact(text: str) -> str:
    """``text`` with URL passwords hidden and control characters escaped.

    >>> redact("GET http://bob:secret@a.test/\\x1b[2J")
    'GET http://bob:***@a.test/\\\\x1b[2J'
    """
    text = _USERINFO_PASSWORD.sub(r"\1***@", text)
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


class SafeFormatter(logging.Formatter):
    """A formatter whose message part goes through ``redact`` (tracebacks are left whole)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message)
        return super().formatMessage(record)
