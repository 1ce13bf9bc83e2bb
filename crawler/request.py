"""The Request: what to fetch, and what to call with the response.

A request must survive a restart, so its callback is kept by method name and everything else is
plain data that the frontier can store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from crawler import jsondata
from crawler.errors import SpiderError
from crawler.freshness import History
from crawler.urls import fingerprint, host_of

Callback = Callable[..., Any] | str | None


def _method_name(func: Callback) -> tuple[str | None, object]:
    """The name a callback is persisted under, and the object it is bound to (if any)."""
    if func is None or isinstance(func, str):
        return func, None
    name = getattr(func, "__name__", None)
    owner = getattr(func, "__self__", None)
    if owner is None or name is None or name == "<lambda>":
        raise SpiderError(
            f"callback {func!r} is not a method of the spider: requests are persisted, "
            "so callbacks must be spider methods (e.g. callback=self.parse_item)"
        )
    return name, owner


class Request:
    """A request to fetch, Scrapy style.

    >>> Request("https://example.com/page/2", priority=1, meta={"page": 2}).host
    'example.com'
    """

    __slots__ = (
        "_fingerprint",
        "_record",
        "body",
        "callback",
        "callback_owner",
        "cb_kwargs",
        "cookies",
        "depth",
        "dont_filter",
        "errback",
        "headers",
        "history",
        "id",
        "meta",
        "method",
        "priority",
        "referer",
        "retries",
        "url",
    )

    def __init__(
        self,
        url: str,
        callback: Callback = None,
        *,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        dont_filter: bool = False,
        cb_kwargs: dict[str, Any] | None = None,
        errback: Callback = None,
        depth: int = 0,
        cookies: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.callback, self.callback_owner = _method_name(callback)
        # A request is made for every link of every page: the common case (a GET with no
        # errback, headers, body or cookies) skips the work it does not need.
        self.errback = None
        if errback is not None:
            self.errback, errback_owner = _method_name(errback)
            if errback_owner is not None and self.callback_owner is None:
                self.callback_owner = errback_owner
            elif errback_owner not in (None, self.callback_owner):
                raise SpiderError("callback and errback must be methods of the same spider")
        self.headers = dict(headers) if headers else {}
        if data is None and json is None and body is None:
            self.body = b""
        else:
            self.body = _encode_body(self.headers, data, json, body)
        self.method = method.upper() if method else "POST" if self.body else "GET"
        self.meta = meta if meta is not None else {}
        self.priority = priority
        self.dont_filter = dont_filter
        self.cb_kwargs = cb_kwargs if cb_kwargs is not None else {}
        self.cookies = dict(cookies) if cookies else {}
        self.depth = depth
        self.retries = 0
        # The URL of the page this request was found on, for the DEBUG log (the engine sets it
        # only then; it is not sent as a header).
        self.referer: str | None = None
        self.id: int | None = None
        # The page's last fetch, as the frontier keeps it (a revisit sends its validators).
        self.history: History | None = None
        self._fingerprint: int | None = None
        self._record: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def fingerprint(self) -> int:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.method, self.url, self.body)
        return self._fingerprint

    def replace(self, **changes: Any) -> Request:
        """A copy with some arguments changed, like Scrapy's ``Request.replace``."""
        kwargs: dict[str, Any] = {
            "callback": self.callback,
            "method": self.method,
            "headers": self.headers,
            "body": self.body,
            "meta": dict(self.meta),
            "priority": self.priority,
            "dont_filter": self.dont_filter,
            "cb_kwargs": dict(self.cb_kwargs),
            "errback": self.errback,
            "depth": self.depth,
            "cookies": dict(self.cookies),
        }
        url = changes.pop("url", self.url)
        if {"data", "json", "body"} & changes.keys():
            del kwargs["body"]
            kwargs["headers"] = {
                k: v for k, v in self.headers.items() if k.lower() != "content-type"
            }
        kwargs.update(changes)
        copy = Request(url, **kwargs)
        copy.referer = self.referer
        return copy

    def to_record(self) -> dict[str, Any]:
        """Plain data for the frontier; raises SpiderError if meta cannot be stored."""
        if self._record is not None:
            return self._record
        fields: dict[str, Any] = {
            "meta": self.meta,
            "cb_kwargs": self.cb_kwargs,
            "headers": self.headers,
        }
        if self.cookies:
            fields["cookies"] = self.cookies
        if self.referer is not None:
            fields["referer"] = self.referer
        try:
            extra = jsondata.dumps(fields)
        except TypeError as exc:
            raise SpiderError(
                f"request {self.url}: meta and cb_kwargs must be JSON data to survive a restart "
                f"({exc})"
            ) from None
        self._record = {
            "url": self.url,
            "method": self.method,
            "body": self.body,
            "callback": self.callback,
            "errback": self.errback,
            "extra": extra,
            "priority": self.priority,
            "depth": self.depth,
            "dont_filter": self.dont_filter,
        }
        return self._record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Request:
        extra = jsondata.loads(record["extra"])
        request = cls(
            record["url"],
            record["callback"],
            method=record["method"],
            headers=extra["headers"],
            body=record["body"],
            meta=extra["meta"],
            priority=record["priority"],
            dont_filter=bool(record["dont_filter"]),
            cb_kwargs=extra["cb_kwargs"],
            errback=record["errback"],
            depth=record["depth"],
            cookies=extra.get("cookies"),
        )
        request.id = record["id"]
        request.retries = record["retries"]
        request.referer = extra.get("referer")
        return request

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url} depth={self.depth} priority={self.priority}>"


def _encode_body(
    headers: dict[str, str], data: Mapping[str, Any] | None, json: Any, body: bytes | str | None
) -> bytes:
    given = [x is not None for x in (data, json, body)]
    if sum(given) > 1:
        raise SpiderError("Request takes only one of data=, json= and body=")
    if data is not None:
        _default_content_type(headers, "application/x-www-form-urlencoded")
        return urlencode(data, doseq=True).encode()
    if json is not None:
        _default_content_type(headers, "application/json")
        return jsondata.dumps(json)
    if isinstance(body, str):
        return body.encode()
    return body or b""


def _default_content_type(headers: dict[str, str], value: str) -> None:
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = value
