"""robots.txt rules (parsed by protego), as RFC 9309 says to read them.

2xx: the rules apply. 4xx: no rules, everything is allowed. 5xx or unreachable: everything is
disallowed for now, and robots.txt is asked for again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from crawler.errors import RobotsUnavailable

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB
RETRY_UNAVAILABLE_S = 30.0


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one host. ``RobotsRules.from_response(status, body)``."""

    parser: Protego | None

    @classmethod
    def from_response(cls, status: int, body: bytes) -> RobotsRules:
        """Rules from robots.txt's answer; raises RobotsUnavailable for 429, 5xx and others."""
        if 200 <= status < 300:
            text = body[:ROBOTS_MAX_BYTES].decode("utf-8-sig", errors="replace")
            return cls(Protego.parse(text))
        if 400 <= status < 500 and status != 429:
            return cls(None)
        raise RobotsUnavailable(f"robots.txt answered HTTP {status}")

    def allows(self, url: str, user_agent: str) -> bool:
        return self.parser is None or bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        return float(delay) if delay is not None else None
