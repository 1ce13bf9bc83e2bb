"""The one settings model, and how its layers are resolved.

Precedence, lowest first: defaults < ``config/crawler.toml`` < ``CRAWLER_*`` environment variables
< the spider's ``custom_settings`` < ``-s key=value`` on the command line. Every layer spells a
setting the same way: names are matched case-insensitively (``CONCURRENCY`` is ``concurrency``).
"""

from __future__ import annotations

import contextvars
import difflib
import importlib.util
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crawler import jsondata
from crawler.errors import SettingsError

log = logging.getLogger("crawler.settings")

DEFAULT_CONFIG_FILE = Path("config/crawler.toml")
ENV_PREFIX = "CRAWLER_"
_SECRET_SETTINGS = frozenset(
    {"proxy", "frontier"}
)  # bad values are not quoted back: they hold passwords

_config_values: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "config_values", default=None
)


class Settings(BaseSettings):
    """Every knob of a crawl. Defaults are polite: robots.txt obeyed, two requests per host."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    concurrency: int = Field(16, ge=1, le=10_000, description="requests in flight, all hosts")
    per_host_concurrency: int = Field(2, ge=1, le=1_000, description="requests in flight per host")
    download_delay: float = Field(
        0.0, ge=0, description="seconds a host rests between requests, one at a time"
    )
    autothrottle: bool = Field(
        False, description="adapt each host's delay and concurrency to its latency and 429/503s"
    )
    autothrottle_target_concurrency: float = Field(
        1.0, gt=0, description="autothrottle: requests in flight per host it aims for"
    )
    autothrottle_start_delay: float = Field(
        1.0, ge=0, description="autothrottle: a new host's first delay, seconds"
    )
    autothrottle_max_delay: float = Field(
        60.0, ge=0, description="autothrottle: longest delay it sets, seconds"
    )
    obey_robots: bool = Field(True, description="fetch and obey robots.txt (and its Crawl-delay)")
    max_crawl_delay: float = Field(
        60.0,
        ge=0,
        description="longest robots.txt Crawl-delay obeyed; a site asking more is skipped",
    )
    max_retries: int = Field(3, ge=0, le=100, description="retries of a transient failure")
    retry_backoff: float = Field(0.5, ge=0, description="first retry wait in seconds; doubles")
    retry_backoff_max: float = Field(30.0, ge=0, description="longest backoff wait, seconds")
    retry_failed_on_rerun: bool = Field(
        True,
        description="a rerun on a state re-queues its failed requests (not 4xx but 408 and 429)",
    )
    max_retry_after: float = Field(
        300.0, ge=0, description="longest Retry-After honoured, seconds; longer ones fail the page"
    )
    request_timeout: float = Field(30.0, gt=0, description="seconds for one whole request")
    lease_ttl_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Redis frontier: a silent worker's requests come back after this many seconds",
    )
    heartbeat_s: float = Field(
        2.0, gt=0, le=600, description="Redis frontier: how often a worker renews its leases"
    )
    max_depth: int | None = Field(None, ge=0, description="links deeper than this are skipped")
    max_pages: int | None = Field(None, ge=1, description="stop after this many pages")
    user_agent: str = Field("crawler/0.1", min_length=1, description="User-Agent header")
    robots_user_agent: str | None = Field(
        None,
        pattern=r"^[A-Za-z_-]+$",
        description="robots.txt group name to obey; default: user_agent up to its first / or space",
    )
    max_response_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="decoded body size cap; larger pages fail"
    )
    max_parse_s: float | None = Field(
        5.0, gt=0, description="seconds a large page's HTML may take to parse; slower pages fail"
    )
    max_links_per_page: int | None = Field(
        10_000, ge=1, description="requests follow_all makes for one page; later links dropped"
    )
    sensitive_headers: Annotated[list[str], NoDecode] = Field(
        ["Authorization", "Cookie", "Proxy-Authorization"],
        description="request headers dropped when a redirect leaves the origin",
    )
    cookies_enabled: bool = Field(
        True, description="keep the cookies sites set, for this crawl only, and send them back"
    )
    max_cookies_per_domain: int = Field(
        50, ge=1, le=10_000, description="cookies kept per domain; the least recently set go"
    )
    max_cookie_header_bytes: int = Field(
        8192, ge=1, description="Cookie header cap; the least recently set cookies are left out"
    )
    follow_redirects: bool = Field(True, description="follow 3xx redirects")
    max_redirects: int = Field(10, ge=0, le=100, description="redirect hops per request")
    http_transport: Literal["aiohttp", "httpcore"] = Field(
        "aiohttp", description="connections under httpx: aiohttp (fast) or httpcore (stock)"
    )
    allow_private_addresses: bool = Field(
        False,
        description="reach loopback, private and link-local addresses beyond the start hosts",
    )
    tls_verify: bool = Field(
        True, description="verify TLS certificates; false only for a site you trust (self-signed)"
    )
    proxy: str | None = Field(
        None,
        repr=False,  # it may hold credentials
        description="egress HTTP proxy, http://[user:password@]host:port; unset: connect directly",
    )
    frontier: str | None = Field(
        None,
        repr=False,  # it may hold a password
        description="a shared frontier's redis://, rediss:// or unix:// URL; unset: SQLite",
    )
    crawl_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
        description="the crawl's name on a shared frontier; unset: the spider's name",
    )
    feed_fields: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="the fields a feed writes, in this order: CSV columns; JSON keeps only these",
    )
    csv_escape_formulas: bool = Field(
        True, description="prefix CSV cells that start with = + - @ tab or CR with '"
    )
    revisit_after_s: float = Field(
        86400.0,
        ge=0,
        description="recrawls: a page's first revisit interval, seconds; adapts per page",
    )
    revisit_min_s: float = Field(
        3600.0, ge=0, description="recrawls: shortest revisit interval, seconds"
    )
    revisit_max_s: float = Field(
        1_209_600.0, ge=0, description="recrawls: longest revisit interval, seconds"
    )
    on_unchanged: Literal["skip", "reemit"] = Field(
        "skip",
        description="recrawls: an unchanged page emits nothing (skip) or its last items (reemit)",
    )
    log_level: str = Field(
        "INFO",
        pattern="(?i)^(DEBUG|INFO|WARNING|ERROR)$",
        description="the crawler's and spiders' log level; other libraries log WARNING and up",
    )
    progress_interval: float = Field(10.0, gt=0, description="seconds between progress log lines")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="port of /metrics and /healthz; unset or 0: off"
    )
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, description="address /metrics and /healthz listen on"
    )
    loop_lag_threshold_s: float = Field(
        1.0, ge=0.05, description="event-loop lag, seconds, at which /healthz answers 503"
    )

    @field_validator("sensitive_headers", "feed_fields", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        """A list from text (``-s``, the environment): JSON, or names separated by commas."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return jsondata.loads(value)
            except jsondata.JSONDecodeError:
                raise ValueError("not a JSON list; or give names separated by commas") from None
        return [part.strip() for part in value.split(",") if part.strip()]

    @field_validator("feed_fields")
    @classmethod
    def _distinct_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) < len(value) or "" in value):
            raise ValueError("list each field once, by name")
        return value

    @field_validator("frontier")
    @classmethod
    def _frontier_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if importlib.util.find_spec("redis") is None:
            raise ValueError("redis is not installed: pip install 'crawler[redis]'")
        return check_frontier_url(value)

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return None if value is None else check_proxy_url(value)

    @field_validator("metrics_port")
    @classmethod
    def _metrics_extra(cls, value: int | None) -> int | None:
        if value and importlib.util.find_spec("prometheus_client") is None:
            raise ValueError("prometheus-client is not installed: pip install 'crawler[metrics]'")
        return value

    @model_validator(mode="after")
    def _revisit_bounds(self) -> Self:
        if self.revisit_min_s > self.revisit_max_s:
            raise ValueError(
                f"revisit_min_s={self.revisit_min_s} is above revisit_max_s={self.revisit_max_s}"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Self:
        if self.heartbeat_s >= self.lease_ttl_s:
            raise ValueError(
                f"heartbeat_s={self.heartbeat_s} must be below lease_ttl_s={self.lease_ttl_s}:"
                " a worker's leases would lapse between its heartbeats"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The values of the TOML config file being loaded (set by ``load_settings``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_config_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_config_values.get() or {})


def check_proxy_url(value: str) -> str:
    """``value`` if it is an ``http://[user:password@]host:port`` proxy URL, else ValueError.
    The messages never quote the value: it may hold a password."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        raise ValueError("the proxy port is not a number from 1 to 65535")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError("a proxy is an http://host:port URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL has no path, query or fragment")
    return value


FRONTIER_SCHEMES = ("redis", "rediss", "unix")


def check_frontier_url(value: str) -> str:
    """``value`` if it is a ``redis://``, ``rediss://`` or ``unix://`` URL, else ValueError.
    The messages never quote the value: it may hold a password."""
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in FRONTIER_SCHEMES:
        raise ValueError("a frontier is a redis://host:port/db, rediss://... or unix:///path URL")
    if scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError("a unix:// frontier URL names a socket by its absolute path")
        return value
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("the frontier's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("a redis:// frontier URL names a host, e.g. redis://localhost:6379/0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("a redis:// frontier URL's path is a database number, e.g. /0")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """The whole config file, or a one-line SettingsError saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The settings in a TOML file: a top-level table or a ``[crawler]`` table (``[[schedule]]``
    tables are not settings).

    ``path=None`` reads ``config/crawler.toml`` if there is one.
    """
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}
        path = DEFAULT_CONFIG_FILE
    data = read_toml(path)
    # [[schedule]] tables belong to `crawler schedule` (crawler/service/config.py).
    table = data.get("crawler", {k: v for k, v in data.items() if k != "schedule"})
    if not isinstance(table, dict):
        raise SettingsError(f"config file {path}: [crawler] must be a table")
    return table


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["concurrency=8", ...]`` from ``-s`` options into a dict."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"-s {pair!r}: expected key=value, e.g. -s concurrency=8")
        out[key.strip()] = value.strip()
    return out


def load_settings(
    config: Mapping[str, Any] | None = None,
    spider_settings: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve every layer into one validated Settings, or raise a one-line SettingsError.

    Each layer's names are normalised first, so that the precedence holds whatever the case.
    An unknown ``CRAWLER_*`` environment variable is logged (each call), not refused.
    """
    init = {
        **normalise(spider_settings, "custom_settings"),
        **normalise(overrides, "-s"),
    }
    token = _config_values.set(normalise(config, "the config file"))
    _warn_unknown_env()
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    finally:
        _config_values.reset(token)


def normalise(values: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``values`` with each name as the model spells it (lower case); an unknown name, or one
    given twice in different case, is a SettingsError.

    >>> normalise({"DOWNLOAD_DELAY": 2}, "-s")
    {'download_delay': 2}
    """
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in (values or {}).items():
        name = str(key).lower()
        if name not in Settings.model_fields:
            raise SettingsError(f"unknown setting {str(key)!r}{_did_you_mean(str(key))}")
        if name in spelled:
            raise SettingsError(
                f"setting {name!r} is given twice in {where}: as {spelled[name]!r} and {key!r}"
            )
        spelled[name] = str(key)
        out[name] = value
    return out


def _warn_unknown_env() -> None:
    for variable in os.environ:
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :]
        if name.lower() in Settings.model_fields:
            continue
        close = _closest(name)
        hint = f"; did you mean {ENV_PREFIX}{close.upper()}?" if close else _did_you_mean(name)
        log.warning("ignoring environment variable %s: no such setting%s", variable, hint)


def _closest(name: str) -> str | None:
    """Our name for a Scrapy setting name, or the nearest of ours to a misspelt one (never for
    a Scrapy setting that has no counterpart here: the nearest name would mislead)."""
    ours = SCRAPY_NAMES.get(name.upper())
    if ours is not None:
        return ours
    if name.upper() in SCRAPY_HINTS:
        return None
    close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1)
    return close[0] if close else None


def _did_you_mean(name: str) -> str:
    hint = SCRAPY_HINTS.get(name.upper())
    if hint is not None:
        return f" (a Scrapy setting): {hint}"
    close = _closest(name)
    return f"; did you mean {close!r}?" if close else ""


# Scrapy's names for settings that mean the same here, for a hint when one is used.
SCRAPY_NAMES = {
    "CONCURRENT_REQUESTS": "concurrency",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "per_host_concurrency",
    "CONCURRENT_REQUESTS_PER_IP": "per_host_concurrency",
    "DOWNLOAD_DELAY": "download_delay",
    "ROBOTSTXT_OBEY": "obey_robots",
    "ROBOTSTXT_USER_AGENT": "robots_user_agent",
    "USER_AGENT": "user_agent",
    "DEPTH_LIMIT": "max_depth",
    "CLOSESPIDER_PAGECOUNT": "max_pages",
    "RETRY_TIMES": "max_retries",
    "DOWNLOAD_TIMEOUT": "request_timeout",
    "DOWNLOAD_MAXSIZE": "max_response_bytes",
    "REDIRECT_ENABLED": "follow_redirects",
    "REDIRECT_MAX_TIMES": "max_redirects",
    "COOKIES_ENABLED": "cookies_enabled",
    "AUTOTHROTTLE_ENABLED": "autothrottle",
    "AUTOTHROTTLE_TARGET_CONCURRENCY": "autothrottle_target_concurrency",
    "AUTOTHROTTLE_START_DELAY": "autothrottle_start_delay",
    "AUTOTHROTTLE_MAX_DELAY": "autothrottle_max_delay",
    "LOG_LEVEL": "log_level",
    "FEED_EXPORT_FIELDS": "feed_fields",
}

_NO_USE_HERE = "Scrapy's project layout needs it; nothing here does: leave it out"
# Scrapy settings with no setting here, and what does their work instead.
SCRAPY_HINTS = {
    "ITEM_PIPELINES": "list pipeline objects in the spider's pipelines attribute, "
    "e.g. pipelines = (PricePipeline(),)",
    "DEFAULT_REQUEST_HEADERS": "pass headers with each request, Request(url, headers={...}), "
    "e.g. from start_requests()",
    "HTTPERROR_ALLOWED_CODES": "list the statuses in the spider's handle_httpstatus_list attribute",
    "FEEDS": "name the feed on the command line: -o items.jsonl appends, -O overwrites",
    "HTTPCACHE_ENABLED": "there is no HTTP cache; a finished crawl run again on its --state "
    "revalidates its pages (README: Recrawling)",
    "DOWNLOADER_MIDDLEWARES": "there is no middleware chain (README: Porting from Scrapy)",
    "SPIDER_MIDDLEWARES": "there is no middleware chain (README: Porting from Scrapy)",
    "LOG_FILE": "the log goes to stderr: redirect it, e.g. 2>>crawl.log",
    "JOBDIR": "keep the crawl's state in a file: crawler run NAME --state crawl.db",
    "BOT_NAME": _NO_USE_HERE,
    "SPIDER_MODULES": "spiders are the files of the spiders folder (--spiders-dir)",
    "NEWSPIDER_MODULE": "crawler new NAME URL writes into the spiders folder (--spiders-dir)",
    "TWISTED_REACTOR": "the crawler runs on asyncio (uvloop where installed): leave it out",
    "REQUEST_FINGERPRINTER_IMPLEMENTATION": _NO_USE_HERE,
    "FEED_EXPORT_ENCODING": "feeds are always UTF-8: leave it out",
}


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    if not error["loc"]:  # a check across settings (a model validator)
        return f"bad settings: {str(error['msg']).removeprefix('Value error, ')}"
    name = str(error["loc"][0])
    if error["type"] == "extra_forbidden":
        return f"unknown setting {name!r}{_did_you_mean(name)}"
    field = Settings.model_fields.get(name)
    accepts = f" ({field.description})" if field is not None and field.description else ""
    if name in _SECRET_SETTINGS:
        return f"bad setting {name}: {error['msg']}{accepts}"
    return f"bad setting {name}={error.get('input')!r}: {error['msg']}{accepts}"
