"""The exception tree of the crawler, and the skip reasons that are values, not errors.

CrawlerError
├── ConfigError             bad input at start-up: reaches the CLI as one line, exit 2
│   ├── SettingsError       a setting with a bad value or an unknown name
│   └── SpiderLoadError     no such spider, or its file does not import
├── StateError              the state file is unreadable, corrupt or of another crawl
│   ├── StateLocked         another run holds the state's lock: exit 4
│   └── CrawlGone           a shared crawl's keys were deleted under its workers: exit 1
├── LeaseLost               a shared frontier gave this worker's request to another (it stalled)
├── FeedError               a feed cannot be written (disk full, stdout's reader went away)
├── SpiderError             a spider broke the API (e.g. a callback that is not a method)
├── FetchError              one page could not be fetched; counted, never crashes the crawl
│   ├── TransientError      worth retrying: connection and read errors, timeouts
│   │   ├── RetryableStatus     408, 429, 500, 502, 503, 504 (carries Retry-After)
│   │   ├── RobotsUnavailable   robots.txt answered 5xx or was unreachable
│   │   └── UnexpectedNotModified  a 304 to a request sent without validators
│   ├── ResponseTooLarge    the decoded body passed max_response_bytes
│   ├── TooManyRedirects
│   ├── AddressRefused      the host is, or resolves to, an address the guard refuses
│   ├── BadResponse         a response we cannot read (unknown content-encoding, ...)
│   ├── HttpError           a non-2xx response the spider does not handle (crawler.failure)
│   └── ParseBudgetExceeded its HTML took over max_parse_s to parse, or crashed the parser
├── SitemapError            a sitemap that is malformed, too large, or declares entities
└── DropItem                raised by a pipeline to drop an item
"""

from __future__ import annotations

import enum


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose. ``exit_code`` is what ``crawler
    run`` exits with when it ends a crawl: 2, bad input, before anything was crawled; the
    runner makes it 1 for an error that ended a crawl under way (README "Exit codes")."""

    exit_code: int = 2


class ConfigError(CrawlerError):
    """Bad input detected at start-up."""


class SettingsError(ConfigError):
    """A setting has a bad value or an unknown name."""


class SpiderLoadError(ConfigError):
    """A spider could not be found or imported."""


class StateError(CrawlerError):
    """The state database cannot be used."""


class StateLocked(StateError):
    """Another run holds the state file's lock (``crawler.lock``); it names the holder."""

    exit_code = 4


class CrawlGone(StateError):
    """A shared frontier's crawl vanished while this worker took part in it (its keys were
    deleted, or Redis lost them): nothing can be committed any more, the worker ends."""

    exit_code = 1  # not bad input: a crawl under way that broke


class LeaseLost(CrawlerError):
    """A shared frontier's lease on a request expired (its worker stalled past the lease
    TTL): another worker holds the request now, and this worker's outcome for it is refused."""


class FeedError(CrawlerError):
    """A feed cannot be written; the crawl stops, its state keeps the items for a resume."""


class SpiderError(CrawlerError):
    """A spider used the API wrongly."""


class FetchError(CrawlerError):
    """A page could not be fetched."""


class TransientError(FetchError):
    """A failure that may go away if the request is tried again later."""

    retry_after: float | None = None


class RetryableStatus(TransientError):
    """The server answered with a status that asks for a later retry."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        # The crawler.response.Response that had this status (set by the engine), so that an
        # errback called once the retries are spent still gets the page, as an HttpError.
        self.response: object | None = None


class RobotsUnavailable(TransientError):
    """robots.txt could not be read: RFC 9309 says disallow everything for now."""


class UnexpectedNotModified(TransientError):
    """The server answered 304 Not Modified to a request that sent no validators: there is no
    earlier copy it could mean, so the page is tried again."""


class ResponseTooLarge(FetchError):
    """The decoded body grew past max_response_bytes."""


class TooManyRedirects(FetchError):
    """More redirects than max_redirects."""


class AddressRefused(FetchError):
    """The host is, or resolves to, a loopback, private, link-local or cloud metadata address
    (see ``crawler.guard``). Nothing was sent; trying again would not help."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"connection to {endpoint} refused: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class BadResponse(FetchError):
    """The response cannot be decoded."""


class ParseBudgetExceeded(FetchError):
    """The page's HTML took longer than max_parse_s to parse, or broke the parser."""


class SitemapError(CrawlerError):
    """A sitemap cannot be read: malformed XML, over the size cap, or entity declarations."""


class DropItem(CrawlerError):
    """Raise from a pipeline's process_item to drop the item (it is counted, not exported)."""


def first_error(
    group: BaseExceptionGroup[BaseException],
    kind: type[CrawlerError] | tuple[type[CrawlerError], ...] = CrawlerError,
) -> CrawlerError | None:
    """The first ``kind`` error in a task group's exception group (nested ones included), or
    None: what a crawl of several tasks reports, in one line, when one of them broke."""
    found: BaseException | None = group.subgroup(kind)
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if isinstance(found, CrawlerError) else None


class SkipReason(enum.StrEnum):
    """Why a request was not fetched: expected outcomes that stats count."""

    DUPLICATE = "duplicate"
    OFFSITE = "offsite"
    ROBOTS = "robots"
    TOO_DEEP = "too_deep"
    MAX_PAGES = "max_pages"
    BAD_URL = "bad_url"
    CRAWL_DELAY = "crawl_delay"  # robots.txt asks for a longer Crawl-delay than max_crawl_delay
