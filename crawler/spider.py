"""The Spider base class users subclass, and how callback output is read."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from crawler.request import Request

if TYPE_CHECKING:
    from crawler.items import ItemPipeline
    from crawler.response import Response


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

    Arguments given with ``crawler run NAME -a key=value`` become attributes of the instance.
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
            setattr(self, key, value)
        self.logger = logging.getLogger(f"crawler.spider.{self.name or type(self).__name__}")

    async def start_requests(self) -> AsyncIterator[Request]:
        """The first requests; by default one per ``start_urls`` entry, handled by ``parse``."""
        for url in self.start_urls:
            yield Request(url)

    def parse(self, response: Response) -> Any:
        """The default callback; override it as ``async def parse(self, response)``, usually an
        async generator. (Declared plain so that any callback shape type-checks as an override.)"""
        raise NotImplementedError(f"{type(self).__name__} has no parse() method")

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
    elif isinstance(output, (Request, dict, BaseModel)):
        yield output
    else:
        for value in output:
            yield value
