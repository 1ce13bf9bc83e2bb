"""robots.txt rules (parsed by protego), as RFC 9309 says to read them.

2xx: the rules apply. 4xx: no rules, everything is allowed. 5xx or unreachable: everything is
disallowed for now, and robots.txt is asked for again later.

Groups are matched by product token, exactly and case-insensitively (RFC 9309 2.2.1): the crawler's
token is ``crawler`` for the User-Agent ``crawler/0.1``, and a ``User-agent: crawler-news`` or a
``User-agent: Mozilla`` group is not its group. A group line's value is read up to its first
character that cannot be in a token (``FooBot/1.0`` is ``FooBot``), as Google's parser reads it.
Lines with an unknown field are ignored and do not end a group.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from crawler.errors import RobotsUnavailable

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB
EXPIRE_S = 24 * 3600.0  # RFC 9309 2.4: do not use a cached robots.txt for more than 24 hours

_TOKEN = re.compile(r"[A-Za-z_-]+")
_FIELD = re.compile(r"\s*([A-Za-z][A-Za-z _-]*?)\s*:(.*)", re.DOTALL)
_USER_AGENT_FIELDS = frozenset({"user-agent", "useragent", "user agent"})
# Fields protego reads (with the misspellings it forgives); any other field is dropped.
_KNOWN_FIELDS = _USER_AGENT_FIELDS | frozenset(
    {
        "allow", "disallow", "dissallow", "dissalow", "disalow", "diasllow", "disallaw",
        "sitemap", "sitemaps", "site-map", "crawl-delay", "crawl delay",
        "request-rate", "request rate", "visit-time", "visit time", "host",
    }
)  # fmt: skip
_NO_TOKEN = "?"  # a name no group can be written for: only ``*`` applies to it


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


def product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched against: the User-Agent up to ``/`` or a space.

    >>> product_token("crawler/0.1 (+https://example.com/bot)")
    'crawler'
    """
    return user_agent.strip().split("/", 1)[0].split(None, 1)[0] if user_agent.strip() else ""


def _group_token(value: str) -> str:
    value = value.split("#", 1)[0].strip()
    if value.startswith("*"):
        return "*"
    match = _TOKEN.match(value)
    return match.group(0).lower() if match else ""


def _for_token(text: str, token: str) -> str:
    """robots.txt rewritten so that protego's group matching is exact: the groups of ``token``
    are named ``token``, every other named group gets a name longer than ``token`` (so that it
    cannot match inside it), and lines with unknown fields are dropped."""
    other = "x" * (len(token) + 1)
    lines = []
    for line in text.splitlines():
        match = _FIELD.match(line)
        field = match.group(1).lower() if match is not None else None
        if field is None or field not in _USER_AGENT_FIELDS:
            if field is None or field in _KNOWN_FIELDS:
                lines.append(line)
            continue
        group = _group_token(match.group(2)) if match is not None else ""
        name = group if group in ("*", "") else (token if group == token else other)
        lines.append(f"user-agent: {name}")
    return "\n".join(lines)


def _decode(body: bytes) -> str:
    body = body[:ROBOTS_MAX_BYTES]
    # A BOM, or the start of one cut short, is not part of the first line.
    for size in (3, 2, 1):
        if body[:size] == b"\xef\xbb\xbf"[:size]:
            body = body[size:]
            break
    return body.decode("utf-8", errors="replace")


class RobotsRules:
    """The rules of one site. ``RobotsRules.from_response(status, body)``.

    ``allows(url, token)`` and ``crawl_delay(token)`` take a product token (see
    ``product_token``); a value that is not a token (``"Foo Bar"``) matches only ``*`` groups.
    """

    __slots__ = ("_parsed", "text")

    def __init__(self, text: str | None) -> None:
        self.text = text  # None: no rules, everything is allowed
        self._parsed: dict[str, Protego] = {}

    def __repr__(self) -> str:
        size = "allow-all" if self.text is None else f"{len(self.text)} chars"
        return f"<RobotsRules {size} tokens={sorted(self._parsed)}>"

    @classmethod
    def from_response(cls, status: int, body: bytes) -> RobotsRules:
        """Rules from robots.txt's answer; raises RobotsUnavailable for 429, 5xx and others."""
        if 200 <= status < 300:
            return cls(_decode(body))
        if 400 <= status < 500 and status != 429:
            return cls(None)
        raise RobotsUnavailable(f"robots.txt answered HTTP {status}")

    @property
    def parser(self) -> Protego | None:
        """The rules as protego reads them for any crawler; None when everything is allowed."""
        return None if self.text is None else self._rules(_NO_TOKEN)[1]

    def _rules(self, user_agent: str) -> tuple[str, Protego]:
        token = user_agent.strip().lower()
        if not _TOKEN.fullmatch(token):
            token = _NO_TOKEN
        parsed = self._parsed.get(token)
        if parsed is None:
            parsed = self._parsed[token] = Protego.parse(_for_token(self.text or "", token))
        return token, parsed

    def prepare(self, user_agent: str) -> None:
        """Parse the rules for ``user_agent`` now (a large robots.txt takes a while: a thread
        may do it), so that ``allows`` and ``crawl_delay`` find them parsed."""
        if self.text is not None:
            self._rules(user_agent)

    @property
    def size(self) -> int:
        return len(self.text or "")

    def allows(self, url: str, user_agent: str) -> bool:
        if self.text is None:
            return True
        token, parsed = self._rules(user_agent)
        return bool(parsed.can_fetch(url, token))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.text is None:
            return None
        token, parsed = self._rules(user_agent)
        delay = parsed.crawl_delay(token)
        return float(delay) if delay is not None else None
