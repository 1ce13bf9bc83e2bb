"""Unit tests of crawler.items: validation, pipelines and the stored JSON form of an item."""

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from crawler.errors import DropItem
from crawler.items import process, to_json, validate
from crawler.spider import ItemPipeline, Spider


class Book(BaseModel):
    title: str
    price: float = Field(ge=0)
    tags: list[str] = []


class Other(BaseModel):
    name: str


class BookSpider(Spider):
    name = "books"
    item_model = Book


class FreeSpider(Spider):
    name = "free"


class SkipFree:
    async def process_item(self, item: Any, spider: Spider) -> Any:
        if item.price == 0:
            raise DropItem("free")
        return item


class Discount:
    async def process_item(self, item: Any, spider: Spider) -> Any:
        return item.model_copy(update={"price": item.price / 2})


class Swallow:
    async def process_item(self, item: Any, spider: Spider) -> Any:
        return None


class Tag:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Spider]] = []

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self.seen.append((item, spider))
        return {**item, "tagged": True}


def test_valid_dict_becomes_a_model_instance() -> None:
    item = validate({"title": "Dune", "price": "9.5"}, Book)
    assert item == Book(title="Dune", price=9.5, tags=[])


def test_dict_without_a_model_is_kept_as_is() -> None:
    data = {"title": "Dune", "anything": [1, 2]}
    assert validate(data, None) is data


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"price": 1.0}, "title: Field required"),
        ({"title": "Dune", "price": "cheap"}, "price: Input should be a valid number"),
        ({"title": "Dune", "price": -1}, "price: Input should be greater than or equal to 0"),
        ({"title": "Dune", "price": 1, "tags": ["a", 2]}, "tags.1: Input should be a valid string"),
    ],
)
def test_invalid_dict_is_dropped_naming_the_field(item: dict[str, Any], where: str) -> None:
    with pytest.raises(DropItem) as caught:
        validate(item, Book)
    assert str(caught.value).startswith(f"invalid item ({where}")


def test_model_instances_are_revalidated_against_their_own_class() -> None:
    book = Book(title="Dune", price=1.0)
    assert validate(book, None) == book
    assert validate(Other(name="x"), Book) == Other(name="x")
    broken = Book.model_construct(title="Dune", price=-3.0)
    with pytest.raises(DropItem, match=r"invalid item \(price: "):
        validate(broken, None)


class Aliased(BaseModel):
    book_title: str = Field(alias="bookTitle")


def test_model_with_aliases_is_kept() -> None:
    item = Aliased(bookTitle="Dune")
    assert validate(item, None) == item


@pytest.mark.parametrize("item", [["a"], "text", 42, None, ("t", 1)])
def test_unsupported_types_are_dropped(item: object) -> None:
    with pytest.raises(DropItem, match=f"unsupported item type {type(item).__name__}: "):
        validate(item, None)


def test_to_json() -> None:
    assert orjson.loads(to_json({"a": 1, "b": [1, "x"], 2: None}, None)) == {
        "a": 1,
        "b": [1, "x"],
        "2": None,
    }
    assert orjson.loads(to_json(Book(title="Dune", price=2), None)) == {
        "title": "Dune",
        "price": 2.0,
        "tags": [],
    }


def test_to_json_revalidates_a_dict_against_the_model() -> None:
    assert orjson.loads(to_json({"title": "Dune", "price": "3"}, Book))["price"] == 3.0
    with pytest.raises(DropItem, match=r"invalid item \(title: "):
        to_json({"price": 3}, Book)


def test_to_json_refuses_what_is_not_json() -> None:
    with pytest.raises(DropItem, match=r"^item is not JSON data \("):
        to_json({"a": {1, 2}}, None)
    with pytest.raises(DropItem, match="a pipeline returned list, not an item"):
        to_json(["a"], None)


async def test_process_without_pipelines() -> None:
    data = await process({"title": "Dune", "price": 4}, BookSpider(), [])
    assert orjson.loads(data) == {"title": "Dune", "price": 4.0, "tags": []}


async def test_process_runs_pipelines_in_order() -> None:
    pipelines: list[ItemPipeline] = [SkipFree(), Discount()]
    data = await process({"title": "Dune", "price": 4}, BookSpider(), pipelines)
    assert orjson.loads(data)["price"] == 2.0


async def test_pipeline_drop_stops_the_item() -> None:
    later = Tag()
    with pytest.raises(DropItem, match=r"^free$"):
        await process({"title": "Dune", "price": 0}, BookSpider(), [SkipFree(), later])
    assert later.seen == []


async def test_pipeline_returning_none_drops_the_item() -> None:
    with pytest.raises(DropItem, match=r"^Swallow returned None$"):
        await process({"title": "Dune", "price": 1}, BookSpider(), [Swallow()])


async def test_pipeline_transforms_a_plain_dict() -> None:
    spider = FreeSpider()
    tag = Tag()
    data = await process({"url": "http://example.com/"}, spider, [tag])
    assert orjson.loads(data) == {"url": "http://example.com/", "tagged": True}
    assert tag.seen == [({"url": "http://example.com/"}, spider)]


async def test_pipeline_output_is_validated_against_the_model() -> None:
    class AsDict:
        async def process_item(self, item: Any, spider: Spider) -> Any:
            return {**item.model_dump(), "price": str(item.price)}

    class Unsets:
        async def process_item(self, item: Any, spider: Spider) -> Any:
            return {"title": item.title}

    data = await process({"title": "Dune", "price": 1}, BookSpider(), [AsDict()])
    assert orjson.loads(data) == {"title": "Dune", "price": 1.0, "tags": []}
    with pytest.raises(DropItem, match=r"invalid item \(price: Field required"):
        await process({"title": "Dune", "price": 1}, BookSpider(), [Unsets()])
