"""What a new user, often coming from Scrapy, runs into: each mistake gets one clear line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Response, Spider
from tests.crawling import crawl
from tests.site import PAGED_PAGES, TestSite
from tests.test_cli import crawler

QUOTES = """
from crawler import Spider


class {cls}(Spider):
    name = "quotes"
    start_urls = ["http://127.0.0.1:1/"]

    async def parse(self, response):
        yield {{"url": response.url}}
"""


def test_two_spiders_with_one_name_are_refused_naming_both_files(tmp_path: Path) -> None:
    folder = tmp_path / "spiders"
    folder.mkdir()
    (folder / "quotes.py").write_text(QUOTES.format(cls="Quotes"))
    (folder / "dup2.py").write_text(QUOTES.format(cls="Copy"))

    ran = crawler("run", "quotes", "--no-progress", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        "error: spider name 'quotes' is defined in spiders/dup2.py and spiders/quotes.py:"
        " rename one of them"
    ]

    listed = crawler("list", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stderr.strip().splitlines() == [
        "warning: spider name 'quotes' is defined in spiders/dup2.py and spiders/quotes.py:"
        " rename one of them"
    ]
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["quotes", "spiders/dup2.py"],
        ["quotes", "spiders/quotes.py"],
    ]


@pytest.mark.parametrize("form", ["{host}", "http://{host}/", "{hostname}"])
async def test_allowed_domains_with_a_port_or_scheme_stand_for_their_host(
    form: str, site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = site.host(0)
    entry = form.format(host=host, hostname=host.partition(":")[0])

    class Paged(Spider):
        name = "paged"
        start_urls = (site.url("/paged?page=1"),)
        allowed_domains = (entry,)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a.next"):
                yield request

    with caplog.at_level(logging.WARNING, "crawler.scope"):
        result = await crawl(Paged, tmp_path, obey_robots=False)

    assert len(result.items) == PAGED_PAGES
    warnings = [r.getMessage() for r in caplog.records if r.name == "crawler.scope"]
    if entry == host.partition(":")[0]:
        assert warnings == []
    else:
        assert warnings == [
            f"allowed_domains accepts only host names: {entry!r} is read as '127.0.0.1'"
        ]


GATED = """
import os

# Importing this spider waits at a FIFO the test holds: the run is interrupted right there.
with open(os.environ["SPIDER_GATE"]) as gate:
    gate.read()

from crawler import Spider


class Gated(Spider):
    name = "gated"
    start_urls = ["http://127.0.0.1:1/"]
"""


def test_ctrl_c_before_the_crawl_began_is_one_line_and_exit_3(tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "gated.py").write_text(GATED)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "gated", "--state", "crawl.db"],
        cwd=tmp_path,
        env={**os.environ, "SPIDER_GATE": str(gate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Opening a FIFO returns on both ends at once: the spider's import has reached the gate.
    with gate.open("w"):
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)

    assert process.returncode == 3
    assert err.splitlines() == ["stopped before the crawl began; nothing was lost"]
    assert out == ""
    assert not (tmp_path / "crawl.db").exists()


async def test_xpath_is_a_one_line_callback_error_saying_to_use_css(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Scrapyish(Spider):
        name = "scrapyish"
        start_urls = (site.url("/paged?page=1"), site.url("/paged?page=2"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            yield {"names": response.xpath("//span[@class='name']/text()").getall()}

    with caplog.at_level(logging.ERROR, "crawler"):
        result = await crawl(Scrapyish, tmp_path, obey_robots=False)

    assert sorted(item["url"] for item in result.items) == [
        site.url("/paged?page=1"),
        site.url("/paged?page=2"),
    ]
    assert result.stats.callback_errors == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    for record in errors:
        assert record.exc_info is None
        assert record.getMessage().endswith(
            "): xpath() is not supported: use css() (selectolax);"
            " ::text and ::attr(name) work as in Scrapy"
        )
        assert record.getMessage().startswith("SpiderError in parse(")
