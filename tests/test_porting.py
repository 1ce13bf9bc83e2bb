"""What a new user, often coming from Scrapy, runs into: each mistake gets one clear line."""

from __future__ import annotations

from pathlib import Path

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
