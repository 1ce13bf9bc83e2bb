"""The ``crawler`` command as a user runs it: real subprocesses against the loopback site."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.sandbox import SandboxServer, expected_items
from tests.site import TestSite

ROOT = Path(__file__).resolve().parent.parent
SLOW_SPIDER = """
from crawler import Response, Spider


class Slow(Spider):
    name = "slow"
    start_urls = ["{base}/slow-links?delay=0.05&n=120"]

    async def parse(self, response: Response):
        for request in response.follow_all(css="a[href]", callback=self.parse_leaf):
            yield request

    async def parse_leaf(self, response: Response):
        yield {{"leaf": int(response.url.rsplit("=", 1)[1])}}
"""


def crawler(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Block until the feed holds more than ``count`` lines: the crawl is under way."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if lines(path) > count:
            return
        time.sleep(0.005)  # polling a file the other process writes; not synchronisation
    raise AssertionError(f"feed never grew past {count} lines")


def slow_crawl(site: TestSite, folder: Path, feed: Path, per_host: int) -> tuple[str, ...]:
    """Write the slow spider into ``folder``; the arguments of a resumable run of it."""
    (folder / "slow.py").write_text(SLOW_SPIDER.format(base=site.base()))
    state = folder / "state.db"
    return ("run", "slow.py", "-o", str(feed), "--state", str(state), "--no-progress",
            "-s", "obey_robots=false", "-s", f"per_host_concurrency={per_host}")  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_crawl_then_resume_gives_every_item_once(
    site: TestSite, tmp_path: Path
) -> None:
    feed = tmp_path / "items.jsonl"
    args = slow_crawl(site, tmp_path, feed, per_host=3)
    for _ in range(3):
        process = start(*args, cwd=tmp_path)
        wait_for_lines(feed, lines(feed), process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    finished = crawler(*args, cwd=tmp_path)

    assert finished.returncode == 0, finished.stderr
    leaves = [json.loads(line)["leaf"] for line in feed.read_text().splitlines()]
    assert sorted(leaves) == list(range(120))


@pytest.mark.slow
def test_sigint_finishes_in_flight_requests_and_resumes(site: TestSite, tmp_path: Path) -> None:
    feed = tmp_path / "items.json"
    args = slow_crawl(site, tmp_path, feed, per_host=1)
    process = start(*args, cwd=tmp_path)
    wait_for_lines(feed, 5, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 3, stderr  # stopped by a signal: resumable
    assert "resume" in stderr
    stopped = json.loads(feed.read_text())  # the feed is a complete JSON array after a stop
    assert 0 < len(stopped) < 120

    finished = crawler(*args, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    leaves = [item["leaf"] for item in json.loads(feed.read_text())]
    assert sorted(leaves) == list(range(120))


def test_books_spider_scrapes_the_sandbox_exactly(tmp_path: Path) -> None:
    feed = tmp_path / "books.csv"
    with SandboxServer() as server:
        server.start()
        result = crawler(
            "run",
            "books",
            "-a",
            f"base_url={server.base_url}",
            "-o",
            str(feed),
            "--stats",
            str(tmp_path / "stats.json"),
            "--no-progress",
        )
        expected = expected_items(server.base_url)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(feed.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == len(expected)
    assert {r["upc"]: (r["title"], float(r["price"]), int(r["rating"])) for r in rows} == {
        e["upc"]: (e["title"], e["price"], e["rating"]) for e in expected
    }
    stats = json.loads((tmp_path / "stats.json").read_text())
    for key in (
        "requests_total",
        "responses_total",
        "items_scraped",
        "items_dropped",
        "retries",
        "failures",
        "duplicates_filtered",
        "robots_blocked",
        "elapsed_s",
        "status_counts",
    ):
        assert key in stats
    assert stats["items_scraped"] == len(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "nosuchspider"), "unknown spider 'nosuchspider'"),
        (("run", "books", "-s", "concurrency=lots"), "bad setting concurrency='lots'"),
        (("run", "books", "-s", "concurency=4"), "did you mean 'concurrency'"),
        (("run", "books", "-s", "concurrency"), "expected key=value"),
        (("run", "books", "-o", "out.xml"), "must end in one of"),
        (("run", "missing.py"), "no spider file missing.py"),
        (("run", "books", "--config", "nope.toml"), "cannot read config file nope.toml"),
        (("fetch", "ftp://example.invalid/"), "is not an http"),
        (("new", "Bad-Name", "http://127.0.0.1/"), "must be lower-case"),
        (("new", "ok", "not-a-url"), "must be an http"),
        (("new", "class", "http://127.0.0.1/"), "'class' is a Python keyword: choose another"),
        (("new", "ok", "127.0.0.1:8801"), "(did you mean 'http://127.0.0.1:8801'?)"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "books.py").write_text((ROOT / "spiders" / "books.py").read_text())
    result = crawler(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_corrupt_state_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"this is not a database" * 100)
    result = crawler("run", str(ROOT / "spiders" / "books.py"), "--state", str(state), cwd=tmp_path)

    assert result.returncode == 2
    assert "is not a usable crawl state" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == b"this is not a database" * 100


def test_state_of_another_spider_is_refused(tmp_path: Path, site: TestSite) -> None:
    state = tmp_path / "state.db"
    (tmp_path / "slow.py").write_text(SLOW_SPIDER.format(base=site.base()))
    first = crawler(
        "run",
        "slow.py",
        "--state",
        str(state),
        "-s",
        "obey_robots=false",
        "--no-progress",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    second = crawler("run", str(ROOT / "spiders" / "books.py"), "--state", str(state), cwd=tmp_path)
    assert second.returncode == 2
    assert "belongs to spider 'slow'" in second.stderr


def test_new_then_list_then_fetch(site: TestSite, tmp_path: Path) -> None:
    made = crawler("new", "paged", site.url("/paged?page=1"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    listed = crawler("list", cwd=tmp_path)
    assert listed.stdout.split()[0] == "paged"

    fetched = crawler("fetch", site.url("/paged?page=2"), "--css", "span.name", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.split() == ["item-2-1", "item-2-2", "item-2-3"]

    ran = crawler("run", "paged", "-o", "out.jsonl", "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    urls = {json.loads(line)["url"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    assert urls == {site.url(f"/paged?page={n}") for n in range(1, 6)}
    assert os.path.exists(tmp_path / "spiders" / "paged.py")


def test_a_spider_file_that_does_not_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "broken.py").write_text(
        "from crawler import Spider\n\nclass B(Spider):\n    name = 'broken'\n"
        "    async def parse(self, response):\n        yield from []\n"
    )
    result = crawler("run", "broken", cwd=tmp_path)

    assert result.returncode == 2
    assert "broken.py does not import: SyntaxError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_fetch_reaches_its_own_url_but_not_a_redirect_to_another_loopback_host(
    site: TestSite, tmp_path: Path
) -> None:
    fetched = crawler("fetch", site.url("/leaf/1"), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr

    moved = crawler("fetch", site.url(f"/redirect?to={site.url('/leaf/2', 1)}"), cwd=tmp_path)
    assert moved.returncode == 2
    assert f"connection to {site.host(1)} refused: 127.0.0.2 is a loopback address" in moved.stderr
    assert site.hits_total(1) == 0


def test_fetch_css_takes_scrapy_selectors(site: TestSite, tmp_path: Path) -> None:
    url = site.url("/quotes/1")
    hrefs = crawler("fetch", url, "--css", "li.next a::attr(href)", cwd=tmp_path)
    assert hrefs.returncode == 0, hrefs.stderr
    assert hrefs.stdout.splitlines() == ["/quotes/2"]
    authors = crawler("fetch", url, "--css", "div.quote small.author::text", cwd=tmp_path)
    assert authors.stdout.splitlines() == ["Author 1", "Author 2"]
    as_html = crawler("fetch", url, "--css", "small.author", "--html", cwd=tmp_path)
    assert as_html.stdout.splitlines()[0] == '<small class="author">Author 1</small>'

    bad = crawler("fetch", url, "--css", "a::attr(", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1].startswith("error: CSS selector 'a::attr(': ")
    assert "Traceback" not in bad.stderr


def shell(
    *args: str, commands: str, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``crawler shell`` on piped commands: the standard console, whose prompts go to
    stdout; the printed lines come back without them."""
    ran = subprocess.run(
        [sys.executable, "-m", "crawler", "shell", *args],
        cwd=cwd,
        input=commands,
        env={**os.environ, "TMPDIR": str(cwd)},  # where view() saves pages
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    printed = [re.sub(r"^(?:>>> |\.\.\. )+", "", line) for line in ran.stdout.splitlines()]
    return ran, [line for line in printed if line.strip(">. ")]


def test_shell_fetches_selects_and_views_pages(site: TestSite, tmp_path: Path) -> None:
    commands = "\n".join(
        [
            "print(response.status, request.url)",
            'print(response.css("small.author::text").getall())',
            'print([q.css("span.text::text").get() for q in response.css("div.quote")])',
            'page = fetch(response.urljoin(response.css("li.next a::attr(href)").get()))',
            "print(page is response, response.url)",
            "print(view(response).read_text().count('<base href='))",
            "print(type(settings).__name__, settings.max_redirects)",
            'fetch("http://127.0.0.1:1/")',
            "print(response.url)",
        ]
    )
    ran, printed = shell(
        site.url("/quotes/1"), "-s", "max_redirects=3", commands=commands + "\n", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert printed == [
        f"200 {site.url('/quotes/1')}",
        "['Author 1', 'Author 2']",
        "['Quote 1.1 & more', 'Quote 1.2 & more']",
        f"True {site.url('/quotes/2')}",
        "1",
        "Settings 3",
        f"{site.url('/quotes/2')}",  # a failed fetch keeps the last response
    ]
    assert f"[200] {site.url('/quotes/1')}" in ran.stderr
    assert "fetch failed:" in ran.stderr
    assert "Traceback" not in ran.stderr
    [saved] = tmp_path.glob("crawler-*.html")
    assert f"saved {site.url('/quotes/2')} to {saved}" in ran.stderr


def test_shell_without_a_url_and_with_a_bad_selector(site: TestSite, tmp_path: Path) -> None:
    url = site.url("/quotes/1")
    commands = f"print(response)\nfetch({url!r})\nresponse.css('a[')\nprint('still here')\n"
    ran, printed = shell(commands=commands, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert printed == ["None", f"<Response 200 {site.url('/quotes/1')}>", "still here"]
    assert "SelectorError: cannot parse CSS selector 'a['" in ran.stderr

    refused, _ = shell("ftp://example.invalid/", commands="", cwd=tmp_path)
    assert refused.returncode == 2
    assert "is not an http" in refused.stderr
