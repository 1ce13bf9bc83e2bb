"""Items: validation against pydantic models, user pipelines, and the JSON form that is stored."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from crawler import jsondata
from crawler.errors import DropItem
from crawler.stats import Stats

if TYPE_CHECKING:
    from crawler.spider import ItemPipeline, Spider

log = logging.getLogger("crawler.items")

Item = dict[str, Any] | BaseModel


def _why(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "item"
    return f"{where}: {error['msg']}"


def validate(item: object, model: type[BaseModel] | None) -> Item:
    """The item checked against its model: dicts against ``model`` when the spider has one,
    pydantic instances against their own class. Raises DropItem with the reason."""
    try:
        if isinstance(item, BaseModel):
            return type(item).model_validate(item.model_dump(by_alias=True))
        if isinstance(item, dict):
            return model.model_validate(item) if model is not None else item
    except ValidationError as exc:
        raise DropItem(f"invalid item ({_why(exc)})") from None
    raise DropItem(
        f"unsupported item type {type(item).__name__}: yield dicts, pydantic models or Requests"
    )


def to_json(item: object, model: type[BaseModel] | None) -> bytes:
    """The stored and exported form of an item that came out of the pipelines."""
    if isinstance(item, dict) and model is not None:
        item = validate(item, model)
    try:
        if isinstance(item, BaseModel):
            return item.model_dump_json().encode()
        if isinstance(item, dict):
            return jsondata.dumps(item, any_keys=True)
    except (TypeError, ValueError) as exc:
        raise DropItem(f"item is not JSON data ({exc})") from None
    raise DropItem(f"a pipeline returned {type(item).__name__}, not an item")


async def process(item: object, spider: Spider, pipelines: Sequence[ItemPipeline]) -> bytes:
    """Validate, run the pipelines (sync or async ``process_item``), and serialise one item;
    raises DropItem to drop it."""
    model = spider.item_model
    current: Any = validate(item, model)
    for pipeline in pipelines:
        current = pipeline.process_item(current, spider)
        if inspect.isawaitable(current):
            current = await current
        if current is None:
            raise DropItem(f"{type(pipeline).__name__} returned None")
    return to_json(current, model)


async def scrape(value: object, spider: Spider, stats: Stats) -> bytes | None:
    """``process`` with the spider's pipelines, counted: the stored form of a kept item, or None
    for a dropped one (logged with the reason)."""
    try:
        data = await process(value, spider, spider.pipelines)
    except DropItem as reason:
        stats.items_dropped += 1
        log.info("dropped item: %s", reason)
        return None
    except Exception:
        stats.items_dropped += 1
        log.exception("a pipeline raised; item dropped")
        return None
    stats.items_scraped += 1
    return data
