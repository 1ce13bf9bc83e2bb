"""What the Redis frontier stores and sends, without Redis itself: key names, request and
robots.txt records as bytes, a commit's arguments for ``crawler_commit``, redacted URLs."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from crawler import jsondata
from crawler.errors import ConfigError
from crawler.frontier import Outcome, RequestState, RobotsRecord
from crawler.request import Request
from crawler.settings import Settings

SCHEMES = ("redis", "rediss", "unix")
# In crawler_*'s KEYS order (frontier.lua NAMES).
KEY_NAMES = (
    "meta", "q", "req", "seen", "ready", "host", "lease", "lexp", "workers",
    "items", "counts", "stats", "robots", "export", "commits", "held", "hungry",
)  # fmt: skip
_SECRET_OPTIONS = frozenset({"password", "username"})  # redis-py's URL options
_CRAWL_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
_PRIORITY_BIAS = 5_000_000_000  # priorities map to 10 digits, best (highest) first
_FINGERPRINT = struct.Struct(">q")


# What the worker that creates a crawl gives the gate (frontier.lua's join): max_pages for the
# crawl, the others for each new host until a worker sends the host's own (with its robots.txt).
# As the setting each comes from and the field of the crawl's meta hash that keeps it.
CRAWL_SETTINGS = (
    ("per_host_concurrency", "limit"), ("download_delay", "delay_ms"),
    ("obey_robots", "obey"), ("max_pages", "max_pages"),
)  # fmt: skip


def crawl_settings(settings: Settings) -> list[int]:
    """The values of CRAWL_SETTINGS as the crawl's meta hash keeps them (join's arguments)."""
    return [
        settings.per_host_concurrency,
        round(settings.download_delay * 1000),
        int(settings.obey_robots),
        settings.max_pages or 0,
    ]


def ignored_settings(created: list[bytes | None], mine: list[int]) -> tuple[str, str]:
    """What a joining worker's crawl settings differ in from those the crawl was created with:
    ``("download_delay=0.5", "download_delay=0")``, or two empty strings.

    >>> ignored_settings([b"2", b"500", b"1", b"0"], [2, 0, 1, 20])
    ('download_delay=0.5, max_pages=none', 'download_delay=0, max_pages=20')
    """
    theirs, ours = [], []
    for (name, _), kept, value in zip(CRAWL_SETTINGS, created, mine, strict=True):
        # Each worker obeys robots.txt by its own obey_robots; the crawl's only has a new host
        # start at one request at a time, until its robots.txt is in.
        if name != "obey_robots" and kept is not None and int(kept) != value:
            theirs.append(f"{name}={_shown(name, int(kept))}")
            ours.append(f"{name}={_shown(name, value)}")
    return ", ".join(theirs), ", ".join(ours)


def _shown(name: str, value: int) -> str:
    if name == "download_delay":
        return f"{value / 1000:g}"
    return "none" if name == "max_pages" and not value else str(value)


def keys(crawl_id: str) -> list[str]:
    """Every key of one crawl, under one hash tag: one Redis Cluster slot, so functions may
    touch them all atomically."""
    if not _CRAWL_ID.fullmatch(crawl_id):
        raise ConfigError(
            f"crawl id {crawl_id!r} must be 1-100 letters, digits, '.', '_', ':' or '-'"
        )
    return [f"{{crawl:{crawl_id}}}:{name}" for name in KEY_NAMES]


def redact(url: str) -> str:
    """The URL with its password (and user name) replaced, in the user info and in the query
    (redis-py takes ``?password=``, the usual form for unix://): what logs, errors and reprs
    show.

    >>> redact("redis://user:secret@cache:6379/0")
    'redis://***@cache:6379/0'
    >>> redact("unix:///run/redis.sock?db=1&password=secret")
    'unix:///run/redis.sock?db=1&password=***'
    """
    base, mark, query = url.partition("?")
    try:
        parts = urlsplit(base)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is not None or parts.password is not None:
        base = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
    return base + mark + "&".join(map(_redact_option, query.split("&")))


def _redact_option(option: str) -> str:
    name, equals, _ = option.partition("=")
    secret = unquote_plus(name).strip().lower() in _SECRET_OPTIONS
    return f"{name}=***" if equals and secret else option


def origin(url: str) -> str:
    """``scheme://host:port`` of a request's URL, without user info.

    >>> origin("http://u:p@127.0.0.1:8001/a?b")
    'http://127.0.0.1:8001'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def check_url(url: str) -> str:
    """``url`` if it names a Redis server this frontier can use; else a one-line ConfigError."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"frontier URL {redact(url)!r} must start with redis://, rediss:// or unix://"
        )
    return url


def priority_key(priority: int) -> str:
    clamped = max(-_PRIORITY_BIAS + 1, min(_PRIORITY_BIAS - 1, priority))
    return f"{_PRIORITY_BIAS - clamped:010d}"


def encode_request(request: Request) -> bytes:
    """The request's record (``Request.to_record``, the SQLite row's columns) as bytes: a JSON
    head, then the JSON extras, then the raw body, separated by NUL (JSON never holds one)."""
    r = request.to_record()
    head = jsondata.dumps(
        [r["url"], r["method"], r["callback"], r["errback"], r["priority"], r["depth"],
         r["dont_filter"]]
    )  # fmt: skip
    return b"\0".join((head, r["extra"], r["body"]))


def decode_request(request_id: bytes, data: bytes) -> Request:
    head, extra, body = data.split(b"\0", 2)
    url, method, callback, errback, priority, depth, dont_filter = jsondata.loads(head)
    record = {
        "id": int(request_id), "url": url, "method": method, "body": body,
        "callback": callback, "errback": errback, "extra": extra, "priority": priority,
        "depth": depth, "dont_filter": dont_filter, "retries": 0,
    }  # fmt: skip
    return Request.from_record(record)


def encode_robots(record: RobotsRecord) -> bytes:
    return jsondata.dumps([record.status, record.fetched_at]) + b"\0" + record.body


def decode_robots(data: bytes) -> RobotsRecord:
    head, body = data.split(b"\0", 1)
    status, fetched_at = jsondata.loads(head)
    return RobotsRecord(int(status), body, float(fetched_at))


def child_args(request: Request) -> list[bytes | str]:
    """A new request as ``crawler_commit`` adds it: fingerprint ('' for dont_filter), host,
    priority key, record."""
    fp = b"" if request.dont_filter else _FINGERPRINT.pack(request.fingerprint)
    return [fp, request.host, priority_key(request.priority), encode_request(request)]


def flat_stats(stats: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The numbers in a stats dict, one level of nested dicts as ``outer.inner``."""
    for name, value in stats.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            yield prefix + name, value
        elif isinstance(value, Mapping) and not prefix:
            yield from flat_stats(value, f"{name}.")


def nested_stats(flat: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``flat_stats`` undone, from Redis' strings."""
    out: dict[str, Any] = {}
    for name, text in flat:
        value = float(text)
        number = int(value) if value.is_integer() and "." not in text else value
        outer, dot, inner = name.partition(".")
        if dot:
            out.setdefault(outer, {})[inner] = number
        else:
            out[name] = number
    return out


# Stats the cluster counts from the committed outcomes themselves, not from the workers' sums:
# so they equal what was committed, whatever a refused or killed worker had counted.
COUNTED_BY_COMMIT = frozenset({"pages_crawled", "items_scraped"})


def counted(outcome: Outcome) -> dict[str, int]:
    """What the engine's stats count for this outcome (COUNTED_BY_COMMIT): a page when its
    callback ran (``Stats.pages_crawled``), its items once they passed the pipelines."""
    ran = outcome.state is RequestState.DONE and (
        outcome.change is None or outcome.change.runs_callback
    )
    return {"pages_crawled": int(ran), "items_scraped": len(outcome.items)}


@dataclass(slots=True)
class Batch:
    """What one flush sends: taken from the frontier's buffers before the call."""

    ended: list[str] = field(default_factory=list)
    outcomes: list[tuple[Outcome, list[Request], str]] = field(default_factory=list)  # + grant
    seeds: list[Request] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)
    feeds: dict[str, bytes] = field(default_factory=dict)
    robots: dict[str, bytes] = field(default_factory=dict)
    size: int = 0  # outcomes and their children

    def args(self) -> list[bytes | str | int | float]:
        """``crawler_commit``'s counted sections, after (now, worker, batch)."""
        out: list[bytes | str | int | float] = [len(self.ended), *self.ended, len(self.outcomes)]
        for outcome, children, grant in self.outcomes:
            assert outcome.request.id is not None
            out += [outcome.request.id, grant, int(outcome.state), len(outcome.items)]
            out += outcome.items
            out.append(len(children))
            for child in children:
                out += child_args(child)
            count = [(name, n) for name, n in counted(outcome).items() if n]
            out += [len(count), *(value for pair in count for value in pair)]
        out.append(len(self.seeds))
        for seed in self.seeds:
            out += child_args(seed)
        out.append(len(self.stats))
        for name, delta in self.stats.items():
            out += ["i" if isinstance(delta, int) else "f", name, delta]
        for section in (self.meta, self.feeds, self.robots):
            out.append(len(section))
            for key, value in section.items():
                out += [key, value]
        return out

    @property
    def hosts(self) -> set[str]:
        return {r.host for _, children, _ in self.outcomes for r in children} | {
            r.host for r in self.seeds
        }
