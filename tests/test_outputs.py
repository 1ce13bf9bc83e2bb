"""What a crawl writes is safe to open: CSV cells that would run as formulas are neutralised,
rows cannot be forged, files are private, links are refused, outputs never overwrite each
other, spider files are written without injection, and log lines escape what pages wrote."""

from __future__ import annotations

import ast
import csv
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, Spider
from crawler.errors import ConfigError
from crawler.exporters import exporter_for
from crawler.logs import SafeFormatter, redact
from crawler.runner import CrawlJob, run
from crawler.sandbox import SandboxServer
from tests.site import TestSite

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ['=HYPERLINK("http://evil.test")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _write_csv(path: Path, items: list[dict[str, Any]], **options: bool) -> list[list[str]]:
    exporter = exporter_for(path, **options)
    exporter.open(0, 0)
    exporter.write([(i, _json(item)) for i, item in enumerate(items, 1)])
    exporter.close()
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def _json(item: dict[str, Any]) -> bytes:
    return json.dumps(item).encode()


def test_csv_cells_that_start_a_formula_are_neutralised(tmp_path: Path) -> None:
    rows = _write_csv(tmp_path / "out.csv", [{"v": value, "n": -5} for value in HOSTILE])
    assert [row[0] for row in rows[1:]] == ["'" + value for value in HOSTILE]
    assert {row[1] for row in rows[1:]} == {"-5"}  # numbers are numbers, not formulas


def test_csv_formula_escaping_can_be_turned_off(tmp_path: Path) -> None:
    rows = _write_csv(tmp_path / "out.csv", [{"v": "=1+1"}], escape_formulas=False)
    assert rows[1] == ["=1+1"]


def test_a_bare_cr_or_lf_cannot_forge_a_row(tmp_path: Path) -> None:
    items = [{"a": "one\rforged,row", "b": "x"}, {"a": "two\nlines", "b": "y"}]
    rows = _write_csv(tmp_path / "out.csv", items)
    assert rows == [["a", "b"], ["one\rforged,row", "x"], ["two\nlines", "y"]]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _crawl(site: TestSite, tmp_path: Path, **paths: Path | None) -> None:
    class One(Spider):
        name = "one"
        start_urls = (site.url("/leaf/1"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    await run(CrawlJob(One, overrides={"obey_robots": False}, progress=False, **paths))


async def test_state_feed_and_stats_are_created_private(site: TestSite, tmp_path: Path) -> None:
    outputs = {"feed": tmp_path / "a.jsonl", "state": tmp_path / "s.db", "stats": tmp_path / "t"}
    await _crawl(site, tmp_path, **outputs)
    assert {name: _mode(path) for name, path in outputs.items()} == dict.fromkeys(outputs, 0o600)


@pytest.mark.parametrize("option", ["feed", "state", "stats"])
async def test_an_output_that_is_a_symlink_is_refused(
    site: TestSite, tmp_path: Path, option: str
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        await _crawl(site, tmp_path, **{option: link})
    assert target.read_text() == "precious"
    assert site.hits_total() == 0


@pytest.mark.parametrize(
    ("feed", "state", "stats"),
    [
        ("x.jsonl", "x.jsonl", None),
        ("a.jsonl", "s.db", "s.db"),
        ("s.db-wal", "s.db", None),
        ("a.jsonl", "s.db", "sub/../a.jsonl"),
    ],
)
async def test_outputs_that_are_one_file_are_refused_before_the_crawl(
    site: TestSite, tmp_path: Path, feed: str, state: str, stats: str | None
) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match="is the same file as"):
        await _crawl(
            site,
            tmp_path,
            feed=tmp_path / feed,
            state=tmp_path / state,
            stats=tmp_path / stats if stats else None,
        )
    assert site.hits_total() == 0
    assert sorted(os.listdir(tmp_path)) == ["sub"]


async def test_stats_into_a_missing_folder_fails_before_the_crawl(
    site: TestSite, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"folder .*missing does not exist"):
        await _crawl(site, tmp_path, stats=tmp_path / "missing" / "stats.json")
    assert site.hits_total() == 0


def test_crawler_new_writes_literals_and_refuses_quotes(tmp_path: Path) -> None:
    def new(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crawler", "new", "evil", url, "--spiders-dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    injected = 'http://a.test/"]\nimport os; os.system("touch pwned")\nx=["'
    refused = new(injected)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "quotes, backslashes, spaces or control characters" in refused.stderr
    assert not (tmp_path / "evil.py").exists()

    url = "http://a.test/search?q=a&b=%22c%22#top"
    written = new(url)
    assert written.returncode == 0, written.stderr
    source = (tmp_path / "evil.py").read_text()
    tree = ast.parse(source)
    literals = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]
    assert url in literals


def test_log_messages_escape_controls_and_hide_passwords() -> None:
    assert redact("see http://bob:hunter2@a.test/x") == "see http://bob:***@a.test/x"
    assert redact("ftp://u:p@h and https://v:q@h2") == "ftp://u:***@h and https://v:***@h2"
    assert redact("no password http://bob@a.test/") == "no password http://bob@a.test/"
    assert redact("\x1b[31mred\x07\nforged line\u202e") == "\\x1b[31mred\\x07\\nforged line\\u202e"


def test_the_formatter_redacts_the_message_but_keeps_the_traceback_lines() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "crawler", logging.ERROR, __file__, 1, "fetch %s", ("http://u:pw@a.test/\x1b[2J",),
            sys.exc_info(),
        )  # fmt: skip
    text = formatter.format(record)
    first, *rest = text.splitlines()
    assert first == "ERROR fetch http://u:***@a.test/\\x1b[2J"
    assert rest[0] == "Traceback (most recent call last):"


def test_files_in_a_private_umask_are_not_widened(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        exporter = exporter_for(tmp_path / "f.jsonl")
        exporter.open(0, 0)
        exporter.close()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f.jsonl") == 0o600


async def test_csv_resume_keeps_columns_whose_names_start_like_formulas(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    first = exporter_for(path)
    first.open(0, 0)
    first.write([(1, _json({"@type": "Product", "name": "=a"}))])
    checkpoint = await first.sync()
    first.close()
    again = exporter_for(path)
    again.open(*checkpoint)
    again.write([(2, _json({"@type": "Offer", "name": "b"}))])
    again.close()
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows == [["@type", "name"], ["Product", "'=a"], ["Offer", "b"]]


def test_the_sandbox_hangs_up_on_an_idle_connection() -> None:
    with SandboxServer(idle_timeout_s=0.2) as server:
        server.start()
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            assert idle.recv(1) == b""  # closed by the server, long before our own timeout


@pytest.mark.parametrize("option", ["stats", "state", "feed"])
async def test_an_output_that_is_a_folder_is_refused_before_the_crawl(
    tmp_path: Path, option: str
) -> None:
    class Never(Spider):
        name = "never"

    folder = tmp_path / "a-folder"
    folder.mkdir()
    job = CrawlJob(Never, progress=False, **{option: folder})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is a folder; give a file's path"):
        await run(job)
    assert list(folder.iterdir()) == []
