"""Unit tests of crawler.exporters: valid feed files, and exactly-once writes across a resume."""

import csv
import json
from pathlib import Path

import orjson
import pytest

from crawler.errors import ConfigError
from crawler.exporters import (
    STDOUT,
    CsvExporter,
    FeedExporter,
    JsonExporter,
    JsonLinesExporter,
    StdoutExporter,
    exporter_for,
)

ITEMS = [
    {"id": 1, "title": "Dune", "tags": ["sf", "classic"], "meta": {"pages": 412}},
    {"id": 2, "title": "Emma, a novel", "tags": [], "meta": None},
    {"id": 3, "title": 'Say "hi"\nbye', "tags": ["x"], "meta": {"a": [1, 2]}},
    {"id": 4, "title": "caf\u00e9 \u2603", "tags": ["uni"], "meta": {}},
    {"id": 5, "title": "Five", "tags": ["y"], "meta": {"n": 5}},
]


def _rows(first: int, last: int) -> list[tuple[int, bytes]]:
    """(item id, stored JSON) pairs as the state hands them to a feed; ids start at 1."""
    return [(n, orjson.dumps(ITEMS[n - 1])) for n in range(first, last + 1)]


def _read(path: Path) -> list[dict[str, object]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        assert text.endswith("\n") or not text
        return [json.loads(line) for line in text.splitlines()]
    if path.suffix == ".json":
        loaded = json.loads(text)
        assert isinstance(loaded, list)
        return loaded
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [
        {
            "id": int(row["id"]),
            "title": row["title"],
            "tags": json.loads(row["tags"]),
            "meta": json.loads(row["meta"]) if row["meta"] else None,
        }
        for row in rows
    ]


SUFFIXES = [".jsonl", ".json", ".csv"]


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("out.jsonl", JsonLinesExporter),
        ("out.json", JsonExporter),
        ("out.csv", CsvExporter),
        ("OUT.JSONL", JsonLinesExporter),
        ("out.jl", JsonLinesExporter),  # Scrapy's spelling
        ("dir/more/out.csv", CsvExporter),
    ],
)
def test_exporter_for(tmp_path: Path, name: str, cls: type[FeedExporter]) -> None:
    exporter = exporter_for(tmp_path / name)
    assert type(exporter) is cls
    assert exporter.path == tmp_path / name


@pytest.mark.parametrize("name", ["out.xml", "out", "out.jsonl.gz", "out.txt"])
def test_unknown_extension_is_a_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"must end in one of \.csv, \.jl, \.json, \.jsonl$"):
        exporter_for(tmp_path / name)


@pytest.mark.parametrize("suffix", SUFFIXES)
async def test_write_sync_close(tmp_path: Path, suffix: str) -> None:
    exporter = exporter_for(tmp_path / "feeds" / f"out{suffix}")
    exporter.open(0, 0)
    exporter.write(_rows(1, 2))
    exporter.write(_rows(3, 5))
    last_item, offset = await exporter.sync()
    assert last_item == 5
    assert offset == exporter.path.stat().st_size
    assert exporter.count == 5
    exporter.close()
    assert _read(exporter.path) == ITEMS


@pytest.mark.parametrize("suffix", SUFFIXES)
async def test_empty_feed_is_valid(tmp_path: Path, suffix: str) -> None:
    exporter = exporter_for(tmp_path / f"out{suffix}")
    exporter.open(0, 0)
    assert await exporter.sync() == (0, exporter.path.stat().st_size)
    exporter.close()
    assert _read(exporter.path) == []


def test_csv_nested_values_are_json_and_header_comes_from_the_first_item(tmp_path: Path) -> None:
    exporter = exporter_for(tmp_path / "out.csv")
    exporter.open(0, 0)
    exporter.write([(1, b'{"a": 1, "b": {"x": [1]}}'), (2, b'{"b": "two", "c": 3}')])
    exporter.close()
    with exporter.path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert rows == [{"a": "1", "b": '{"x":[1]}'}, {"a": "", "b": "two"}]


def test_items_at_or_before_the_checkpoint_are_not_written_again(tmp_path: Path) -> None:
    exporter = exporter_for(tmp_path / "out.jsonl")
    exporter.open(0, 0)
    exporter.write(_rows(1, 3))
    exporter.write(_rows(2, 4))
    exporter.close()
    assert [item["id"] for item in _read(exporter.path)] == [1, 2, 3, 4]


def test_write_before_open_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="feed is not open"):
        exporter_for(tmp_path / "out.jsonl").write(_rows(1, 1))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("closed", [True, False], ids=["closed", "killed"])
async def test_resume_after_a_crash_writes_each_item_once(
    tmp_path: Path, suffix: str, closed: bool
) -> None:
    path = tmp_path / f"out{suffix}"
    first = exporter_for(path)
    first.open(0, 0)
    first.write(_rows(1, 2))
    checkpoint = await first.sync()
    # Items 3 and 4 reach the file, but the crawl dies before their checkpoint is saved.
    first.write(_rows(3, 4))
    await first.sync()
    if closed:
        first.close()
    else:
        first.file.close()  # a killed process writes no closing bytes; the OS closes its file
    assert path.stat().st_size > checkpoint[1]

    second = exporter_for(path)
    second.open(*checkpoint)
    assert second.last_item == 2
    assert path.stat().st_size == checkpoint[1]
    second.write(_rows(1, 5))
    await second.sync()
    second.close()

    assert second.count == 3
    assert _read(path) == ITEMS


async def test_json_feed_closed_then_resumed_is_still_an_array(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    exporter = JsonExporter(path)
    exporter.open(0, 0)
    exporter.write(_rows(1, 2))
    checkpoint = await exporter.sync()
    exporter.close()
    assert [item["id"] for item in _read(path)] == [1, 2]

    for first, last in [(3, 3), (4, 5)]:
        exporter = JsonExporter(path)
        exporter.open(*checkpoint)
        exporter.write(_rows(first, last))
        checkpoint = await exporter.sync()
        exporter.close()
        assert [item["id"] for item in _read(path)] == list(range(1, last + 1))
    assert _read(path) == ITEMS


async def test_json_feed_resumed_from_an_empty_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    exporter = JsonExporter(path)
    exporter.open(0, 0)
    checkpoint = await exporter.sync()
    exporter.close()
    assert checkpoint == (0, 2)

    exporter = JsonExporter(path)
    exporter.open(*checkpoint)
    exporter.write(_rows(1, 2))
    exporter.close()
    assert [item["id"] for item in _read(path)] == [1, 2]


async def test_csv_resume_keeps_the_header_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    exporter = CsvExporter(path)
    exporter.open(0, 0)
    exporter.write(_rows(1, 1))
    checkpoint = await exporter.sync()
    exporter.close()

    exporter = CsvExporter(path)
    exporter.open(*checkpoint)
    assert exporter.fields == ["id", "title", "tags", "meta"]
    exporter.write([(2, b'{"meta": null, "title": "Reordered", "id": 2, "tags": []}')])
    exporter.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id,title,tags,meta"
    assert lines[-1] == "2,Reordered,[],"


@pytest.mark.parametrize("suffix", SUFFIXES)
async def test_missing_or_short_file_starts_over(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    exporter = exporter_for(path)
    exporter.open(3, 500)
    assert exporter.last_item == 0
    exporter.write(_rows(1, 2))
    exporter.close()
    assert [item["id"] for item in _read(path)] == [1, 2]

    path.write_bytes(b"short")
    exporter = exporter_for(path)
    exporter.open(3, 500)
    assert exporter.last_item == 0
    exporter.write(_rows(1, 1))
    exporter.close()
    assert [item["id"] for item in _read(path)] == [1]


def test_open_in_an_unwritable_place_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write feed"):
        exporter_for(tmp_path / "file" / "out.jsonl").open(0, 0)


def test_repr(tmp_path: Path) -> None:
    exporter = exporter_for(tmp_path / "out.jsonl")
    exporter.open(0, 0)
    exporter.write(_rows(1, 2))
    exporter.close()
    assert repr(exporter) == f"<JsonLinesExporter {tmp_path / 'out.jsonl'} last_item=2>"


@pytest.mark.parametrize("suffix", SUFFIXES)
async def test_a_file_the_state_never_wrote_is_appended_to(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    earlier = exporter_for(path)
    earlier.open(0, 0)
    earlier.write(_rows(1, 2))
    earlier.close()  # another crawl's feed, with its own item ids

    exporter = exporter_for(path)
    exporter.open(0, None)
    assert exporter.last_item == 0
    exporter.write(_rows(3, 5))
    assert await exporter.sync() == (5, exporter.file.tell())
    exporter.close()
    assert _read(path) == ITEMS
    if suffix == ".csv":
        assert path.read_text(encoding="utf-8").count("id,title,tags,meta") == 1


@pytest.mark.parametrize("existing", [b"", b"[]", b"[\n]\n", b" [ ] \n\n"])
def test_appending_to_an_empty_json_array(tmp_path: Path, existing: bytes) -> None:
    path = tmp_path / "out.json"
    path.write_bytes(existing)
    exporter = JsonExporter(path)
    exporter.open(0, None)
    exporter.write(_rows(1, 2))
    exporter.close()
    assert _read(path) == ITEMS[:2]


@pytest.mark.parametrize(
    ("name", "existing", "why"),
    [
        ("out.json", b'[\n{"id": 1},\n{"id": 2}', "it does not end with a JSON array's closing ]"),
        ("out.json", b'{"id": 1}\n', "it does not end with a JSON array's closing ]"),
        ("out.jsonl", b'{"id": 1}\n{"id"', "its last line is incomplete"),
        ("out.csv", b"id,title\r\n1,Du", "its last line is incomplete"),
    ],
)
def test_a_file_that_cannot_be_continued_is_refused_and_left_alone(
    tmp_path: Path, name: str, existing: bytes, why: str
) -> None:
    path = tmp_path / name
    path.write_bytes(existing)
    with pytest.raises(ConfigError) as caught:
        exporter_for(path).open(0, None)
    assert str(caught.value) == f"cannot append to feed {path}: {why}; -O {path} overwrites it"
    assert path.read_bytes() == existing


def test_overwrite_starts_the_file_anew(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_bytes(b"not json at all")
    exporter = exporter_for(path)
    exporter.open(0, 0)
    exporter.write(_rows(1, 1))
    exporter.close()
    assert _read(path) == ITEMS[:1]


def test_dash_means_stdout(tmp_path: Path) -> None:
    assert type(exporter_for(Path("-"))) is StdoutExporter
    assert exporter_for(Path("-")).path == STDOUT
    with pytest.raises(ConfigError, match="must end in one of"):
        exporter_for(tmp_path / "-")  # a file named - is given by its path, and needs a suffix


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_feed_fields_choose_and_order_the_fields(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    exporter = exporter_for(path, fields=["title", "id", "missing"])
    exporter.open(0, 0)
    exporter.write(_rows(1, 2))
    exporter.close()
    if suffix == ".csv":
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines == ["title,id,missing", "Dune,1,", '"Emma, a novel",2,']
    else:
        text = path.read_text()
        items = (
            json.loads(text) if suffix == ".json" else [json.loads(x) for x in text.splitlines()]
        )
        assert [list(item.items()) for item in items] == [
            [("title", "Dune"), ("id", 1)],
            [("title", "Emma, a novel"), ("id", 2)],
        ]


def test_a_csv_whose_columns_are_not_feed_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"id,title\r\n1,Dune\r\n")
    with pytest.raises(ConfigError) as caught:
        exporter_for(path, fields=["title", "id"]).open(0, None)
    assert str(caught.value) == (
        f"cannot append to feed {path}: its columns are id,title, not feed_fields; "
        f"-O {path} overwrites it"
    )
    assert path.read_bytes() == b"id,title\r\n1,Dune\r\n"

    same = exporter_for(path, fields=["id", "title"])
    same.open(0, None)
    same.write(_rows(2, 2))
    same.close()
    assert path.read_text(encoding="utf-8").splitlines()[1:] == ["1,Dune", '2,"Emma, a novel"']
