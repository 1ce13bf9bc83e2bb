"""CrawlSpider and Rule: a spider that follows the links its rules extract, as Scrapy's does.

Requests a rule makes carry the rule's index in ``meta["rule"]`` and have ``_parse_rule`` as their
callback (and ``_errback_rule_<index>`` as errback), so a crawl resumed from its state sends each
page to the same rule again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from crawler.errors import SpiderError
from crawler.links import Link, LinkExtractor
from crawler.request import Request
from crawler.spider import Spider, iterate

if TYPE_CHECKING:
    from crawler.failure import Failure
    from crawler.response import Response

Method = Callable[..., Any] | str | None


class Rule:
    """Which links to follow and what to do with their pages.

    >>> Rule(LinkExtractor(allow=r"/catalogue/page-\\d+"))                  # follow listings
    >>> Rule(LinkExtractor(allow=r"/index\\.html$"), callback="parse_book")  # scrape books

    ``callback``, ``process_links``, ``process_request`` and ``errback`` are spider method names
    or methods. ``follow`` (whether the pages' own links go through the rules again) defaults to
    True when there is no callback. ``process_links(links)`` returns the links to keep;
    ``process_request(request, response)`` returns the request to send, or None to drop it.
    """

    def __init__(
        self,
        link_extractor: LinkExtractor | None = None,
        callback: Method = None,
        cb_kwargs: Mapping[str, Any] | None = None,
        follow: bool | None = None,
        *,
        process_links: Method = None,
        process_request: Method = None,
        errback: Method = None,
    ) -> None:
        self.link_extractor = link_extractor if link_extractor is not None else LinkExtractor()
        self.callback = callback
        self.cb_kwargs = dict(cb_kwargs or {})
        self.follow = follow if follow is not None else callback is None
        self.process_links = process_links
        self.process_request = process_request
        self.errback = errback

    def __repr__(self) -> str:
        callback = self.callback if isinstance(self.callback, str) else _name(self.callback)
        return f"<Rule {self.link_extractor!r} callback={callback} follow={self.follow}>"


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule with its method names resolved on one spider instance."""

    rule: Rule
    callback: Callable[..., Any] | None
    process_links: Callable[[list[Link]], Iterable[Link]] | None
    process_request: Callable[[Request, Response], Request | None] | None
    errback: Callable[..., Any] | None


def _errback_name(index: int) -> str:
    return f"_errback_rule_{index}"


def _name(method: Method) -> str | None:
    if method is None or isinstance(method, str):
        return method
    return getattr(method, "__name__", repr(method))


class CrawlSpider(Spider):
    """A spider driven by ``rules``: each page's links go to the first rule that extracts them.

    >>> class Books(CrawlSpider):
    ...     name = "books"
    ...     start_urls = ["http://127.0.0.1:8765/catalogue/page-1.html"]
    ...     rules = (
    ...         Rule(LinkExtractor(restrict_css="li.next")),
    ...         Rule(LinkExtractor(restrict_css="article.product_pod h3"), callback="parse_book"),
    ...     )
    ...
    ...     async def parse_book(self, response):
    ...         yield {"title": response.css_first("h1").text()}

    Start pages (and any request without a callback) go to ``parse``, which gives the page to
    ``parse_start_url`` and follows its links through the rules: do not override ``parse``.
    """

    rules: ClassVar[Sequence[Rule]] = ()

    def __init__(self, **arguments: str) -> None:
        super().__init__(**arguments)
        self._rules = [self._compile(rule) for rule in self.rules]
        # The rule's index is in the errback's name, which the state keeps: "_errback_rule_2"
        # is rule 2's, whatever the failing request's meta still holds.
        for index, compiled in enumerate(self._rules):
            if compiled.errback is not None:
                setattr(self, _errback_name(index), partial(self._errback_rule, index))

    def parse(self, response: Response, **kwargs: Any) -> AsyncIterator[Any]:
        return self._parse_response(response, self.parse_start_url, kwargs, follow=True)

    def parse_start_url(self, response: Response, **kwargs: Any) -> Any:
        """What to make of a start page besides following its links; nothing by default."""
        return None

    def process_results(self, response: Response, results: list[Any]) -> Iterable[Any]:
        """What a rule callback (or ``parse_start_url``) produced, to change before it goes on;
        override it to post-process. ``results`` is a list of the items and requests."""
        return results

    def _parse_rule(self, response: Response, **kwargs: Any) -> AsyncIterator[Any]:
        """The callback of every request a rule made: the rule is found by its index."""
        compiled = self._rule_of(response.meta)
        cb_kwargs = {**compiled.rule.cb_kwargs, **kwargs}
        return self._parse_response(
            response, compiled.callback, cb_kwargs, follow=compiled.rule.follow
        )

    def _errback_rule(self, index: int, failure: Failure) -> Any:
        errback = self._rules[index].errback
        return errback(failure) if errback is not None else None

    async def _parse_response(
        self,
        response: Response,
        callback: Callable[..., Any] | None,
        cb_kwargs: Mapping[str, Any],
        *,
        follow: bool,
    ) -> AsyncIterator[Any]:
        if callback is not None:
            output = iterate(callback(response, **cb_kwargs))
            if type(self).process_results is CrawlSpider.process_results:
                # Not overridden: values stream on, and those before an error are kept.
                async for value in output:
                    yield value
            else:
                results = [value async for value in output]
                for value in self.process_results(response, results):
                    yield value
        if follow:
            for request in self._requests_to_follow(response):
                yield request

    def _requests_to_follow(self, response: Response) -> Iterable[Request]:
        seen: set[Link] = set()
        for index, compiled in enumerate(self._rules):
            links = [
                link
                for link in compiled.rule.link_extractor.extract_links(response)
                if link not in seen
            ]
            if compiled.process_links is not None:
                links = list(compiled.process_links(links))
            for link in links:
                seen.add(link)
                request: Request | None = self._build_request(index, link, response)
                if compiled.process_request is not None and request is not None:
                    request = compiled.process_request(request, response)
                if request is not None:
                    yield request

    def _build_request(self, index: int, link: Link, response: Response) -> Request:
        return Request(
            link.url,
            self._parse_rule,
            errback=_errback_name(index) if self._rules[index].errback is not None else None,
            meta={"rule": index, "link_text": link.text},
            depth=response.request.depth + 1,
        )

    def _rule_of(self, meta: Mapping[str, Any]) -> _Compiled:
        index = meta.get("rule")
        if not isinstance(index, int) or not 0 <= index < len(self._rules):
            raise SpiderError(
                f"request names rule {index!r}, but {type(self).__name__} has "
                f"{len(self._rules)} rules (were the rules changed before a resume?)"
            )
        return self._rules[index]

    def _compile(self, rule: Rule) -> _Compiled:
        return _Compiled(
            rule,
            self._method(rule.callback),
            self._method(rule.process_links),
            self._method(rule.process_request),
            self._method(rule.errback),
        )

    def _method(self, method: Method) -> Callable[..., Any] | None:
        if method is None or callable(method):
            return method
        found: Callable[..., Any] | None = getattr(self, method, None)
        if not callable(found):
            raise SpiderError(f"{type(self).__name__} has no method {method!r} named by a rule")
        return found
