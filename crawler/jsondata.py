"""JSON in and out (orjson), for what the crawl stores: request extras, items, stats."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any, *, indent: bool = False, any_keys: bool = False) -> bytes:
    """Compact JSON bytes. ``any_keys``: write int (etc.) dict keys as strings instead of failing.

    The result is copied to its exact size: orjson's own bytes keep a 4 KiB buffer, and the
    crawl holds many small encoded records at once between commits.
    """
    option = (orjson.OPT_NON_STR_KEYS if any_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    return bytes(memoryview(orjson.dumps(value, option=option)))


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
