"""Failures are loud and precise: one line and exit 2 for bad input, a counted and logged error
that the crawl goes on past, exit codes that tell a failed crawl from a finished one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site import TestSite

HEADER = """
from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider
"""


def crawler(*args: str, cwd: Path, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    """``crawler ARGS`` in a subprocess; ``as_nobody``: as user nobody when we are root (who
    may write anywhere), through setpriv."""
    command = [sys.executable, "-m", "crawler", *args]
    if as_nobody and os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def spider_file(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(HEADER + body)
    return path


def run_args(*extra: str) -> tuple[str, ...]:
    return ("--no-progress", "-s", "obey_robots=false", "-s", "max_retries=0", *extra)


def test_a_spider_whose_init_raises_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spider_file(
        tmp_path,
        "picky",
        """
class Picky(Spider):
    name = "picky"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raise ValueError("needs -a category=...")
""",
    )
    result = crawler("run", "picky.py", *run_args(), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: spider 'picky' failed to start: ValueError: needs -a category=..."
    ]


def test_start_requests_that_raise_midway_keep_what_they_yielded(
    site: TestSite, tmp_path: Path
) -> None:
    spider_file(
        tmp_path,
        "starts",
        f"""
class Starts(Spider):
    name = "starts"

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request({site.url("/leaf/1")!r})
        yield Request({site.url("/leaf/2")!r})
        raise KeyError("page")

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {{"url": response.url}}
""",
    )
    result = crawler("run", "starts.py", "-o", "out.jsonl", *run_args(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "start_requests raised after 2 requests; crawling those" in result.stderr
    assert "KeyError: 'page'" in result.stderr
    assert "2 items (0 dropped), 1 callback errors" in result.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_a_crawl_whose_every_callback_raised_fails_with_exit_1(
    site: TestSite, tmp_path: Path
) -> None:
    spider_file(
        tmp_path,
        "typo",
        f"""
class Typo(Spider):
    name = "typo"
    start_urls = [{site.url("/leaf/1")!r}, {site.url("/leaf/2")!r}]

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        for price in response.css("p.v::text(").getall():
            yield {{"price": price}}
""",
    )
    result = crawler("run", "typo.py", *run_args(), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert "SelectorError in parse(" in result.stderr
    assert "Traceback" not in result.stderr  # our own errors are one line each
    assert "2 pages, 0 items (0 dropped), 2 callback errors" in result.stderr
    assert "failed: 2 callback errors and no item" in result.stderr


def test_the_summary_counts_off_site_and_robots_drops(site: TestSite, tmp_path: Path) -> None:
    site.robots = "User-agent: *\nDisallow: /leaf/2\n"
    hrefs = json.dumps([site.url("/leaf/1"), site.url("/leaf/2"), site.url("/leaf/3", 1)])
    spider_file(
        tmp_path,
        "links",
        f"""
class Links(Spider):
    name = "links"
    start_urls = [{site.url("/links?h=" + hrefs)!r}]
    allowed_domains = ["127.0.0.1"]

    async def parse(self, response: Response) -> AsyncIterator[Request | dict[str, Any]]:
        yield {{"url": response.url}}
        for request in response.follow_all(css="a[href]"):
            yield request
""",
    )
    result = crawler("run", "links.py", "--no-progress", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "not fetched: 0 duplicates, 1 off-site, 1 blocked by robots.txt" in result.stderr
    assert "2 pages, 2 items (0 dropped), 0 callback errors, 0 failures" in result.stderr
    assert site.hits_total(1) == 0


def test_a_broken_spider_file_that_is_not_asked_for_is_a_warning(
    site: TestSite, tmp_path: Path
) -> None:
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    spider_file(
        spiders,
        "good",
        f"""
class Good(Spider):
    name = "good"
    start_urls = [{site.url("/leaf/1")!r}]

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {{"url": response.url}}
""",
    )
    (spiders / "broken.py").write_text("class Broken(:\n")

    ran = crawler("run", "good", *run_args(), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    warnings = [line for line in ran.stderr.splitlines() if "broken.py" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: spiders/broken.py does not import: SyntaxError")
    assert "1 pages, 1 items" in ran.stderr

    unknown = crawler("run", "nosuch", cwd=tmp_path)
    assert unknown.returncode == 2
    [line] = unknown.stderr.strip().splitlines()
    assert line.startswith(
        "error: unknown spider 'nosuch' (known: good); "
        "skipped spiders/broken.py does not import: SyntaxError"
    )


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="crawler-test-"))
    folder.chmod(0o777)
    yield folder
    for path in folder.rglob("*"):
        path.chmod(0o777)
    shutil.rmtree(folder)


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root, and no setpriv"
)
def test_a_state_in_a_read_only_folder_is_named_as_such(
    site: TestSite, shared_folder: Path
) -> None:
    spider_file(
        shared_folder,
        "one",
        f"""
class One(Spider):
    name = "one"
    start_urls = [{site.url("/leaf/1")!r}]

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {{"url": response.url}}
""",
    )
    locked = shared_folder / "locked"
    locked.mkdir()
    state = locked / "state.db"
    first = crawler("run", "one.py", "--state", str(state), *run_args(), cwd=shared_folder)
    assert first.returncode == 0, first.stderr
    state.chmod(0o666)
    locked.chmod(0o555)
    before = state.read_bytes()

    again = crawler(
        "run", "one.py", "--state", str(state), *run_args(), cwd=shared_folder, as_nobody=True
    )

    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: --state {state}: permission denied: folder {locked} is not writable"
        " (SQLite keeps state.db-wal and state.db-shm beside the state)"
    ]
    assert state.read_bytes() == before

    state.chmod(0o444)
    locked.chmod(0o777)
    read_only = crawler(
        "run", "one.py", "--state", str(state), *run_args(), cwd=shared_folder, as_nobody=True
    )
    assert read_only.returncode == 2
    assert read_only.stderr.strip().splitlines() == [
        f"error: --state {state}: permission denied (the file must be readable and writable)"
    ]

    state.chmod(0o000)
    unreadable = crawler(
        "run", "one.py", "--state", str(state), *run_args(), cwd=shared_folder, as_nobody=True
    )
    assert (unreadable.returncode, unreadable.stderr) == (2, read_only.stderr)


def test_debug_logs_a_line_per_response_and_no_library_noise(
    site: TestSite, tmp_path: Path
) -> None:
    start = site.url("/links?h=" + json.dumps(["/leaf/1"]))
    spider_file(
        tmp_path,
        "follow",
        f"""
class Follow(Spider):
    name = "follow"
    start_urls = [{start!r}]

    async def parse(self, response: Response) -> AsyncIterator[Request]:
        for request in response.follow_all(css="a[href]"):
            yield request
""",
    )
    debug = crawler("run", "follow.py", "--state", "s.db", *run_args("-s", "log_level=DEBUG"),
                    cwd=tmp_path)  # fmt: skip
    assert debug.returncode == 0, debug.stderr
    crawled = [line.split(": ", 1)[1] for line in debug.stderr.splitlines() if "Crawled (" in line]
    sent = start.replace('"', "%22")  # as it goes on the wire
    assert crawled == [
        f"Crawled (200) <GET {sent}> (referer: None)",
        f"Crawled (200) <GET {site.url('/leaf/1')}> (referer: {sent})",
    ]
    for noise in ("aiosqlite", "asyncio", "httpx", "httpcore", "aiohttp"):
        assert f" {noise}" not in debug.stderr

    info = crawler("run", "follow.py", *run_args(), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "Crawled (" not in info.stderr


def test_fetch_obeys_robots_txt_unless_told(site: TestSite, tmp_path: Path) -> None:
    site.robots = "User-agent: *\nDisallow: /leaf/\n"
    url = site.url("/leaf/1")

    refused = crawler("fetch", url, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: robots.txt disallows {url} for 'crawler'; -s obey_robots=false fetches it anyway"
    ]
    assert site.hits("/leaf/1") == 0

    moved = crawler("fetch", site.url("/redirect?to=/leaf/1"), cwd=tmp_path)
    assert moved.returncode == 2
    assert moved.stderr.strip().splitlines() == [
        "error: redirect not followed: robots.txt disallows it; -s obey_robots=false fetches it"
        " anyway"
    ]
    assert site.hits("/leaf/1") == 0

    fetched = crawler("fetch", url, "-s", "obey_robots=false", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert site.hits("/leaf/1") == 1
    allowed = crawler("fetch", site.url("/quotes/1"), cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert site.hits("/robots.txt") == 4  # one a check: refused, redirect, hop, allowed
