"""``-o`` appends or resumes, ``-O`` starts the feed anew from the state, ``-o -`` streams JSON
lines to stdout: what each writes across reruns and resumes of a real crawl."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, Spider
from crawler.errors import ConfigError
from crawler.runner import CrawlJob, run
from tests.site import TestSite
from tests.test_cli import ROOT, SLOW_SPIDER, crawler

LEAVES = 4
LEAVES_SPIDER = f"""
from crawler import Response, Spider


class Leaves(Spider):
    name = "leaves"
    start_urls = ["{{base}}/leaf/{{n}}".format(n=n) for n in range({LEAVES})]

    async def parse(self, response: Response):
        yield {{"url": response.url}}
"""


def _leaves(site: TestSite) -> type[Spider]:
    class Leaves(Spider):
        name = "leaves"
        start_urls = tuple(site.url(f"/leaf/{n}") for n in range(LEAVES))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    return Leaves


async def _run(
    site: TestSite,
    feed: Path,
    *,
    overwrite: bool = False,
    settings: dict[str, str] | None = None,
    **paths: Path,
) -> None:
    job = CrawlJob(
        _leaves(site),
        overrides={"obey_robots": False, **(settings or {})},
        feed=feed,
        overwrite_feed=overwrite,
        progress=False,
        **paths,
    )
    await run(job)


def _urls(path: Path) -> list[str]:
    return [json.loads(line)["url"] for line in path.read_text(encoding="utf-8").splitlines()]


def _expected(site: TestSite) -> list[str]:
    return [site.url(f"/leaf/{n}") for n in range(LEAVES)]


async def test_o_appends_to_a_file_it_did_not_write(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "out.jsonl"
    feed.write_text('{"url": "kept"}\n')
    await _run(site, feed)
    await _run(site, feed)  # a new crawl each time (no --state): appended again, as Scrapy's -o
    urls = _urls(feed)
    assert urls[0] == "kept"
    assert sorted(urls[1:]) == sorted(_expected(site) * 2)


async def test_o_appends_to_a_json_array(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "out.json"
    feed.write_text('[\n{"url": "kept"}\n]\n')
    await _run(site, feed)
    urls = [item["url"] for item in json.loads(feed.read_text())]
    assert urls[0] == "kept"
    assert sorted(urls[1:]) == _expected(site)


async def test_o_refuses_a_file_it_cannot_continue(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "out.json"
    feed.write_text('[\n{"url": "cut short"}')
    with pytest.raises(ConfigError, match=r"cannot append to feed .*; -O .* overwrites it"):
        await _run(site, feed)
    assert feed.read_text() == '[\n{"url": "cut short"}'
    assert site.hits_total() == 0  # refused before the crawl began


async def test_O_starts_the_file_anew(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "out.json"
    feed.write_text('[\n{"url": "cut short"}')
    await _run(site, feed, overwrite=True)
    assert sorted(item["url"] for item in json.loads(feed.read_text())) == _expected(site)


async def test_O_on_resume_writes_every_item_of_the_state_once(
    site: TestSite, tmp_path: Path
) -> None:
    feed, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    await _run(site, feed, state=state)
    feed.write_text("damaged")
    await _run(site, feed, overwrite=True, state=state)  # a recrawl: nothing changed
    assert sorted(_urls(feed)) == _expected(site)  # rewritten from the state
    assert site.hits_total() == 2 * LEAVES  # the start pages revisited, found unchanged

    await _run(site, feed, state=state)  # -o again: resumes at -O's checkpoint, adds nothing
    assert sorted(_urls(feed)) == _expected(site)


def test_o_dash_streams_json_lines_to_stdout_and_resumes(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "leaves.py").write_text(LEAVES_SPIDER.replace("{base}", site.base()))
    args = ("run", "leaves.py", "--state", "state.db", "-s", "obey_robots=false", "--no-progress")

    first = crawler(*args, "-o", "-", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(json.loads(line)["url"] for line in first.stdout.splitlines()) == sorted(
        _expected(site)
    )
    assert "items written to stdout" in first.stderr
    assert "done in" not in first.stdout  # logs and the summary stay on stderr

    again = crawler(*args, "-o", "-", cwd=tmp_path)  # every item was flushed: none again
    assert (again.returncode, again.stdout) == (0, "")
    everything = crawler(*args, "-O", "-", cwd=tmp_path)  # -O: the whole state, afresh
    assert everything.returncode == 0, everything.stderr
    assert len(everything.stdout.splitlines()) == LEAVES
    assert site.hits_total() == 3 * LEAVES  # each rerun revisits the start pages: unchanged


def test_a_closed_stdout_stops_the_crawl_with_one_line(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_SPIDER.format(base=site.base()))
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "slow.py", "-o", "-", "--no-progress",
         "-s", "obey_robots=false", "-s", "per_host_concurrency=1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert json.loads(process.stdout.readline())["leaf"] >= 0
    process.stdout.close()  # as `| head -1` does
    _, stderr = process.communicate(timeout=30)
    assert stderr.decode().splitlines()[-1] == (
        "error: -o -: stdout was closed by its reader; the crawl stopped"
    )
    assert b"Traceback" not in stderr
    assert process.returncode == 1  # the crawl broke under way (README "Exit codes")


def test_o_and_O_together_are_refused(tmp_path: Path) -> None:
    books = str(ROOT / "spiders" / "books.py")
    ran = crawler("run", books, "-o", "a.jsonl", "-O", "b.jsonl", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: -o appends and -O overwrites: give one of them"


async def test_feed_fields_are_the_csv_columns(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "out.csv"
    await _run(site, feed, settings={"FEED_FIELDS": "missing,url"})
    lines = feed.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "missing,url"
    assert sorted(lines[1:]) == [f",{url}" for url in _expected(site)]


async def test_a_new_feed_on_a_kept_state_gets_the_new_items_only(
    site: TestSite, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    await _run(site, tmp_path / "run-1.jsonl", state=state)
    await _run(site, tmp_path / "run-2.jsonl", state=state)  # nothing new: an empty feed
    assert sorted(_urls(tmp_path / "run-1.jsonl")) == _expected(site)
    assert _urls(tmp_path / "run-2.jsonl") == []
    await _run(site, tmp_path / "all.jsonl", overwrite=True, state=state)  # -O: the whole state
    assert sorted(_urls(tmp_path / "all.jsonl")) == _expected(site)


async def test_a_feed_is_one_feed_whatever_the_spelling_of_its_path(
    site: TestSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state.db"
    await _run(site, Path("out.jsonl"), state=state)
    await _run(site, tmp_path / "out.jsonl", state=state)  # the same file: its checkpoint
    assert sorted(_urls(tmp_path / "out.jsonl")) == _expected(site)


async def test_a_new_feeds_checkpoint_is_committed_before_the_crawl_starts(
    site: TestSite, tmp_path: Path
) -> None:
    # A kill before the first commit of the crawl must find the feed's starting point in the
    # state, or a resume would append again what this run wrote to the file.
    feed, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    seen: list[Any] = []

    class Peek(Spider):
        name = "leaves"

        async def start_requests(self) -> AsyncIterator[Any]:
            with sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True) as db:
                seen.extend(db.execute("SELECT key FROM meta WHERE key LIKE 'feed:%'"))
            return
            yield

    await run(CrawlJob(Peek, feed=feed, state=state, progress=False))
    assert seen == [(f"feed:{feed.resolve()}",)]


@pytest.mark.parametrize(
    ("before", "kept"), [("[1]", [1]), ("[ ]\n", []), ('[{"url": "a"}]', ["a"])]
)
async def test_o_continues_any_json_array(
    site: TestSite, tmp_path: Path, before: str, kept: list[Any]
) -> None:
    feed = tmp_path / "out.json"
    feed.write_text(before)
    await _run(site, feed)
    items = json.loads(feed.read_text())
    assert [i if not isinstance(i, dict) else i["url"] for i in items[: len(kept)]] == kept
    assert sorted(item["url"] for item in items[len(kept) :]) == _expected(site)
