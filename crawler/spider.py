"""The Spider base class users subclass, the pipeline protocols, and how callback output is read."""

from __future__ import annotations

import inspect
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from crawler.errors import ConfigError, SpiderError
from crawler.request import Request

if TYPE_CHECKING:
    from pydantic import BaseModel

    from crawler.response import Response

# Kept in the instance's __dict__ under names of our own: a subclass __init__ that does not call
# super().__init__() still has a state, and the engine can tell whether the spider ever used it.
_STATE = "_crawler_state"
_STATE_USED = "_crawler_state_used"


class ItemPipeline(Protocol):
    """A step every item goes through after validation, in the order the spider lists them.

    ``process_item`` (a ``def`` or an ``async def``) returns the item, changed or not, to keep
    it, or raises ``DropItem("why")`` to drop it. A pipeline may also define ``open_spider``
    and ``close_spider`` (see ``OpensSpider`` and ``ClosesSpider``).

    >>> class SkipFree:
    ...     def process_item(self, item, spider):
    ...         if item["price"] == 0:
    ...             raise DropItem("free")
    ...         return item
    """

    def process_item(self, item: Any, spider: Spider) -> Any: ...


@runtime_checkable
class OpensSpider(Protocol):
    """A pipeline with ``open_spider(spider)`` (``def`` or ``async def``): called once when the
    crawl starts, after ``spider.state`` is loaded and before the first request."""

    def open_spider(self, spider: Spider) -> Any: ...


@runtime_checkable
class ClosesSpider(Protocol):
    """A pipeline with ``close_spider(spider)`` (``def`` or ``async def``): called once when the
    crawl ends, however it ends, before ``spider.closed(reason)``."""

    def close_spider(self, spider: Spider) -> Any: ...


class Spider:
    """Subclass this, name it, give it start URLs and a ``parse`` callback.

    >>> class Quotes(Spider):
    ...     name = "quotes"
    ...     start_urls = ["http://127.0.0.1:8765/"]
    ...
    ...     async def parse(self, response):
    ...         for node in response.css("div.quote"):
    ...             yield {"text": node.css_first("span.text").text()}
    ...         if (next_link := response.css_first("li.next a")) is not None:
    ...             yield response.follow(next_link)

    Arguments given with ``crawler run NAME -a key=value`` become attributes of the instance;
    one whose class attribute is a list or tuple (``start_urls``, ``allowed_domains``) is split
    on commas. Scrapy's setting attributes (``download_delay``, ``max_concurrent_requests``,
    ``user_agent``, ...: ``SETTING_ATTRIBUTES``) are read from the class as ``custom_settings``.
    """

    name: ClassVar[str] = ""
    start_urls: ClassVar[Sequence[str]] = ()
    allowed_domains: ClassVar[Sequence[str]] = ()
    custom_settings: ClassVar[Mapping[str, Any]] = {}
    item_model: ClassVar[type[BaseModel] | None] = None
    pipelines: ClassVar[Sequence[ItemPipeline]] = ()
    handle_httpstatus_list: ClassVar[Collection[int]] = ()
    """Non-2xx statuses whose responses still go to the callback (by default they fail)."""

    def __init__(self, **arguments: str) -> None:
        for key, value in arguments.items():
            setattr(self, key, _argument(type(self), key, value))
        self.logger = logging.getLogger(f"crawler.spider.{self.name or type(self).__name__}")

    def start_requests(self) -> Iterable[Request] | AsyncIterable[Request]:
        """The first requests; by default one per ``start_urls`` entry, handled by ``parse``.
        Override it as a generator (``def``, Scrapy's way) or an async generator; an override
        may extend ``super().start_requests()`` with ``for`` or ``async for``."""
        return StartRequests(self.start_urls)

    def parse(self, response: Response) -> Any:
        """The default callback; override it as ``async def parse(self, response)``, usually an
        async generator. (Declared plain so that any callback shape type-checks as an override.)"""
        raise NotImplementedError(f"{type(self).__name__} has no parse() method")

    def closed(self, reason: str) -> Any:
        """Called once when the crawl ends (override as ``def`` or ``async def``): ``reason`` is
        "finished", "shutdown" (stopped by a signal), "closespider_pagecount" (``max_pages``
        reached), "cancelled" (stopped at once) or the error that ended the crawl."""

    @property
    def state(self) -> dict[str, Any]:
        """A dict kept in the crawl state (``--state``): what a resumed crawl finds here is what
        the committed requests' callbacks and pipelines left. JSON data only."""
        self.__dict__[_STATE_USED] = True
        state: dict[str, Any] | None = self.__dict__.get(_STATE)
        if state is None:
            state = self.__dict__[_STATE] = {}
        return state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise SpiderError(f"spider.state must be a dict, not {type(value).__name__}")
        self.__dict__[_STATE_USED] = True
        self.__dict__[_STATE] = value

    def content_signature(self, response: Response) -> bytes | str:
        """What a recrawl compares to tell a changed page from an unchanged one (it keeps an
        8-byte hash of it); by default the whole body. Override it to leave out the parts that
        change on every fetch (a clock, a counter, ads); it runs on the event loop:

        >>> def content_signature(self, response):  # doctest: +SKIP
        ...     return response.css("article").get() or response.body
        """
        return response.body

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def restore_state(spider: Spider, state: dict[str, Any]) -> None:
    """Set ``spider.state`` from the crawl state, without counting that as a use of it."""
    spider.__dict__[_STATE] = state


def state_if_used(spider: Spider) -> dict[str, Any] | None:
    """``spider.state`` if the spider ever read or set it, else None (nothing to save)."""
    if not spider.__dict__.get(_STATE_USED):
        return None
    state: dict[str, Any] = spider.__dict__.get(_STATE) or {}
    return state


# Scrapy's spider attributes that are settings here, and the settings they set.
SETTING_ATTRIBUTES = {
    "download_delay": "download_delay",
    "max_concurrent_requests": "per_host_concurrency",
    "user_agent": "user_agent",
    "download_timeout": "request_timeout",
    "download_maxsize": "max_response_bytes",
}
# Attributes the framework reads or owns: never set from the command line.
RESERVED_ATTRIBUTES = frozenset(
    {"name", "state", "custom_settings", "item_model", "pipelines", "logger", "rules", "crawler"}
    | {"settings", "handle_httpstatus_list", "sitemap_rules"}
)


def spider_settings(spider: type[Spider]) -> dict[str, Any]:
    """The settings a spider class sets: its ``custom_settings`` over its Scrapy-style setting
    attributes (``download_delay = 2`` is ``custom_settings = {"download_delay": 2}``)."""
    # The settings model (pydantic-settings) is loaded here, not with Spider: a spider file,
    # and `crawler list` which imports them all, need none of it.
    from crawler.settings import normalise  # noqa: PLC0415 - as said above

    attributes = {
        setting: value
        for attribute, setting in SETTING_ATTRIBUTES.items()
        if (value := getattr(spider, attribute, None)) is not None
    }
    return {**attributes, **normalise(spider.custom_settings, "custom_settings")}


def check_arguments(spider: type[Spider], arguments: Mapping[str, object]) -> None:
    """The ConfigError ``crawler run -a`` would raise for one of ``arguments``, raised now
    (``crawler schedule`` checks its schedules' ``args`` at start-up with it)."""
    for key, value in arguments.items():
        _argument(spider, key, str(value))


def _argument(spider: type[Spider], key: str, value: str) -> Any:
    """The attribute value of ``-a key=value``: split on commas where the class attribute is a
    list or tuple; a ConfigError for a name the spider's code or the framework owns."""
    current = getattr(spider, key, None)
    if not key.isidentifier() or key.startswith("_"):
        raise ConfigError(f"-a {key}: a spider argument is a name such as category")
    if key in SETTING_ATTRIBUTES:
        raise ConfigError(f"-a {key}: that is a setting; use -s {SETTING_ATTRIBUTES[key]}={value}")
    if key in RESERVED_ATTRIBUTES or callable(current):
        raise ConfigError(f"-a {key}: {spider.__name__}.{key} is not a spider argument")
    if isinstance(current, (list, tuple)):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class StartRequests:
    """The default start requests, one per URL, for ``for`` and ``async for`` alike."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = urls

    def __repr__(self) -> str:
        return f"<StartRequests {len(self.urls)} URLs>"

    def __iter__(self) -> Iterator[Request]:
        return (Request(url) for url in self.urls)

    async def __aiter__(self) -> AsyncIterator[Request]:
        for url in self.urls:
            yield Request(url)


def _is_model(output: Any) -> bool:
    # pydantic is loaded here, on a callback's first return, not with Spider: a spider file
    # without item models, and `crawler list`, need none of it.
    from pydantic import BaseModel  # noqa: PLC0415 - as said above

    return isinstance(output, BaseModel)


async def iterate(output: Any) -> AsyncIterator[Any]:
    """Everything a callback produced, whatever its shape: an async generator, a generator,
    a coroutine, a list, a single request or item, or None."""
    if inspect.isawaitable(output):
        output = await output
    if output is None:
        return
    if inspect.isasyncgen(output) or hasattr(output, "__aiter__"):
        async for value in output:
            yield value
    elif isinstance(output, (Request, dict)) or _is_model(output):
        yield output
    else:
        for value in output:
            yield value
