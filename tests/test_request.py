"""Unit tests of crawler.request: bodies, methods, callbacks by name, records and replace()."""

from typing import Any

import orjson
import pytest

from crawler.errors import SpiderError
from crawler.request import Request
from crawler.spider import Spider
from crawler.urls import fingerprint

URL = "http://Example.com:80/search"


class Shop(Spider):
    name = "shop"

    async def parse_item(self, response: Any) -> Any:
        return None

    async def on_error(self, failure: Any) -> Any:
        return None


def _plain_function(response: Any) -> None:
    return None


def test_defaults() -> None:
    request = Request(URL)
    assert (request.method, request.body, request.headers) == ("GET", b"", {})
    assert (request.callback, request.errback, request.callback_owner) == (None, None, None)
    assert (request.meta, request.cb_kwargs) == ({}, {})
    assert (request.priority, request.depth, request.retries) == (0, 0, 0)
    assert request.dont_filter is False
    assert request.id is None
    assert request.host == "example.com"
    assert repr(request) == f"<Request GET {URL} depth=0 priority=0>"


def test_data_is_form_encoded() -> None:
    request = Request(URL, data={"q": "caf\u00e9 & co", "tag": ["a", "b"]})
    assert request.method == "POST"
    assert request.body == b"q=caf%C3%A9+%26+co&tag=a&tag=b"
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded"}


def test_json_is_encoded() -> None:
    request = Request(URL, json={"a": [1, None], "b": "\u2603"})
    assert request.method == "POST"
    assert orjson.loads(request.body) == {"a": [1, None], "b": "\u2603"}
    assert request.headers == {"Content-Type": "application/json"}


def test_json_false_values_are_still_a_body() -> None:
    assert Request(URL, json=0).body == b"0"
    assert Request(URL, json=[]).body == b"[]"


@pytest.mark.parametrize(
    ("body", "expected"), [(b"\x00raw", b"\x00raw"), ("caf\u00e9", b"caf\xc3\xa9")]
)
def test_body(body: bytes | str, expected: bytes) -> None:
    request = Request(URL, body=body)
    assert request.body == expected
    assert request.method == "POST"
    assert request.headers == {}


def test_a_given_content_type_is_kept() -> None:
    request = Request(URL, json={}, headers={"Content-Type": "application/vnd.api+json"})
    assert request.headers == {"Content-Type": "application/vnd.api+json"}


def test_a_given_lower_case_content_type_is_kept() -> None:
    request = Request(URL, json={}, headers={"content-type": "application/vnd.api+json"})
    assert request.headers == {"content-type": "application/vnd.api+json"}


def test_method() -> None:
    assert Request(URL, body=b"").method == "GET"
    assert Request(URL, method="put", body=b"x").method == "PUT"
    assert Request(URL, method="delete").method == "DELETE"
    assert Request(URL, method="GET", data={"a": 1}).method == "GET"


def test_headers_are_copied() -> None:
    headers = {"X-A": "1"}
    request = Request(URL, headers=headers, data={"a": 1})
    assert headers == {"X-A": "1"}
    assert request.headers["X-A"] == "1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"a": 1}, "json": {"a": 1}},
        {"data": {"a": 1}, "body": b"x"},
        {"json": None, "body": b"x", "data": {}},
        {"json": {}, "body": ""},
    ],
)
def test_only_one_of_data_json_body(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpiderError, match="only one of data=, json= and body="):
        Request(URL, **kwargs)


@pytest.mark.parametrize(
    "callback",
    [lambda response: None, _plain_function, Shop.parse_item],
    ids=["lambda", "function", "unbound"],
)
@pytest.mark.parametrize("role", ["callback", "errback"])
def test_a_callback_must_be_a_method(callback: Any, role: str) -> None:
    with pytest.raises(SpiderError, match="is not a method of the spider: requests are persisted"):
        Request(URL, **{role: callback})


def test_a_bound_method_is_stored_by_name() -> None:
    spider = Shop()
    request = Request(URL, spider.parse_item, errback=spider.on_error)
    assert request.callback == "parse_item"
    assert request.errback == "on_error"
    assert request.callback_owner is spider


def test_a_method_of_another_object_keeps_its_owner() -> None:
    # Request cannot know the spider; it records the owner so the engine can refuse the request.
    other = Shop()
    assert Request(URL, other.parse_item).callback_owner is other
    assert Request(URL, print).callback_owner is not None


def test_a_name_is_stored_as_is() -> None:
    request = Request(URL, "parse_item", errback="on_error")
    assert (request.callback, request.errback, request.callback_owner) == (
        "parse_item",
        "on_error",
        None,
    )


def test_fingerprint() -> None:
    assert Request(URL).fingerprint == fingerprint("GET", URL)
    assert Request(URL).fingerprint == Request("http://example.com/search#x").fingerprint
    assert Request(URL).fingerprint != Request(URL, body=b"a").fingerprint
    assert Request(URL, body=b"a").fingerprint != Request(URL, body=b"b").fingerprint


def _full_request() -> Request:
    spider = Shop()
    return Request(
        URL,
        spider.parse_item,
        method="PATCH",
        headers={"X-Token": "t"},
        json={"q": [1, 2]},
        meta={"page": 2, "path": ["a", None], "nested": {"x": 1.5}},
        priority=-3,
        dont_filter=True,
        cb_kwargs={"category": "sf"},
        errback=spider.on_error,
        depth=4,
    )


def test_record_round_trip() -> None:
    original = _full_request()
    record = original.to_record()
    assert orjson.loads(record["extra"]) == {
        "meta": original.meta,
        "cb_kwargs": {"category": "sf"},
        "headers": {"X-Token": "t", "Content-Type": "application/json"},
    }
    # The frontier adds its own columns: the row id and the retry count.
    restored = Request.from_record({**record, "id": 7, "retries": 2})

    for name in Request.__slots__:
        if name in ("id", "retries", "callback_owner", "_fingerprint", "_record"):
            continue
        assert getattr(restored, name) == getattr(original, name), name
    assert (restored.id, restored.retries, restored.callback_owner) == (7, 2, None)
    assert restored.fingerprint == original.fingerprint
    assert restored.to_record() == record


def test_record_holds_plain_data_only() -> None:
    record = _full_request().to_record()
    assert set(record) == {
        "url",
        "method",
        "body",
        "callback",
        "errback",
        "extra",
        "priority",
        "depth",
        "dont_filter",
    }
    assert all(isinstance(v, str | bytes | int | bool | None) for v in record.values())


@pytest.mark.parametrize(
    ("meta", "cb_kwargs"),
    [
        ({"when": object()}, {}),
        ({"tags": {"a", "b"}}, {}),
        ({1: "int key"}, {}),
        ({}, {"callback": print}),
    ],
)
def test_meta_that_is_not_json_is_refused(meta: dict[Any, Any], cb_kwargs: dict[str, Any]) -> None:
    request = Request(URL, meta=meta, cb_kwargs=cb_kwargs)
    with pytest.raises(SpiderError, match=r"meta and cb_kwargs must be JSON data") as caught:
        request.to_record()
    assert URL in str(caught.value)


def test_replace() -> None:
    original = _full_request()
    copy = original.replace(url="http://example.com/other", priority=9)
    assert copy is not original
    assert (copy.url, copy.priority) == ("http://example.com/other", 9)
    for name in ("method", "headers", "body", "meta", "cb_kwargs", "callback", "errback"):
        assert getattr(copy, name) == getattr(original, name), name
    assert (copy.dont_filter, copy.depth) == (True, 4)
    copy.meta["page"] = 3
    copy.headers["X-Token"] = "changed"
    assert original.meta["page"] == 2
    assert original.headers["X-Token"] == "t"


def test_replace_keeps_the_url_by_default() -> None:
    original = Request(URL, meta={"a": 1})
    copy = original.replace(meta={"b": 2})
    assert (copy.url, copy.meta, original.meta) == (URL, {"b": 2}, {"a": 1})
    assert original.replace(body=b"x").body == b"x"


@pytest.mark.parametrize("change", [{"json": {"a": 1}}, {"data": {"a": "1"}}])
def test_replace_with_a_new_json_or_data_body(change: dict[str, Any]) -> None:
    copy = Request(URL).replace(**change)
    assert copy.body in (b'{"a":1}', b"a=1")
