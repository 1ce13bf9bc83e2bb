"""Spider arguments (``-a key=value``) and the Scrapy spider attributes that are settings."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler import Response, Spider
from crawler.errors import ConfigError
from crawler.settings import load_settings
from crawler.spider import SETTING_ATTRIBUTES, spider_settings
from tests.crawling import crawl
from tests.site import TestSite
from tests.test_cli import crawler

DELAY = 0.25
SLACK = 0.02  # the server's clock reads a request a little after the client sent it


class Listing(Spider):
    name = "listing"
    start_urls = ("http://127.0.0.1:1/",)
    allowed_domains: ClassVar[list[str]] = []
    tags: ClassVar[list[str]] = ["default"]
    category = "all"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}

    def helper(self) -> None: ...


def test_an_argument_whose_attribute_is_a_list_is_split_on_commas() -> None:
    spider = Listing(
        start_urls="http://a.test/, http://b.test/x?a=1,",
        allowed_domains="a.test,b.test",
        tags="one",
        category="poetry,prose",
    )
    assert spider.start_urls == ["http://a.test/", "http://b.test/x?a=1"]
    assert spider.allowed_domains == ["a.test", "b.test"]
    assert spider.tags == ["one"]
    assert spider.category == "poetry,prose"  # a string attribute stays one string
    assert Listing.start_urls == ("http://127.0.0.1:1/",)  # the class is left alone


def test_a_new_argument_is_an_attribute() -> None:
    assert Listing(since="2025-06-01").since == "2025-06-01"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("parse", "-a parse: Listing.parse is not a spider argument"),
        ("start_requests", "-a start_requests: Listing.start_requests is not a spider argument"),
        ("helper", "-a helper: Listing.helper is not a spider argument"),
        ("name", "-a name: Listing.name is not a spider argument"),
        ("custom_settings", "-a custom_settings: Listing.custom_settings is not a spider"),
        ("state", "-a state: Listing.state is not a spider argument"),
        ("pipelines", "-a pipelines: Listing.pipelines is not a spider argument"),
        ("logger", "-a logger: Listing.logger is not a spider argument"),
        ("item_model", "-a item_model: Listing.item_model is not a spider argument"),
        ("__class__", "-a __class__: a spider argument is a name such as category"),
        ("no-dash", "-a no-dash: a spider argument is a name such as category"),
        ("download_delay", "-a download_delay: that is a setting; use -s download_delay=1"),
        ("max_concurrent_requests", "-a max_concurrent_requests: that is a setting; use -s per"),
    ],
)
def test_an_argument_the_framework_owns_is_refused(key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Listing(**{key: "1"})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_setting_attributes_count_as_custom_settings() -> None:
    class Scrapyish(Listing):
        download_delay = 1.5
        max_concurrent_requests = 3
        user_agent = "scrapyish/1"
        download_timeout = 12
        download_maxsize = 4096
        custom_settings: ClassVar[dict[str, Any]] = {"USER_AGENT": "custom/2", "concurrency": 5}

    assert set(SETTING_ATTRIBUTES) == {
        "download_delay",
        "max_concurrent_requests",
        "user_agent",
        "download_timeout",
        "download_maxsize",
    }
    assert spider_settings(Scrapyish) == {
        "download_delay": 1.5,
        "per_host_concurrency": 3,
        "user_agent": "custom/2",  # custom_settings over an attribute
        "request_timeout": 12,
        "max_response_bytes": 4096,
        "concurrency": 5,
    }
    overridden = load_settings(
        {"download_delay": 9}, spider_settings(Scrapyish), {"DOWNLOAD_DELAY": "0"}
    )
    assert overridden.download_delay == 0  # -s over an attribute, an attribute over the file
    assert load_settings({"request_timeout": 9}, spider_settings(Scrapyish)).request_timeout == 12
    assert spider_settings(Listing) == {}


async def test_setting_attributes_shape_the_crawl(site: TestSite, tmp_path: Path) -> None:
    class Polite(Spider):
        name = "polite"
        start_urls = tuple(site.url(f"/leaf/{n}") for n in range(4))
        download_delay = DELAY
        max_concurrent_requests = 1
        user_agent = "scrapyish/1.0"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Polite, tmp_path, obey_robots=False)

    assert len(result.items) == 4
    starts = sorted(hit.started for hit in site.log)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= DELAY - SLACK
    assert site.peak_concurrency(0) == 1
    assert {hit.headers["user-agent"] for hit in site.log} == {"scrapyish/1.0"}


ARGUED_SPIDER = """
from crawler import Response, Spider


class Argued(Spider):
    name = "argued"

    async def parse(self, response: Response):
        yield {"url": response.url}
"""


def test_start_urls_from_the_command_line(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "argued.py").write_text(ARGUED_SPIDER)
    urls = [site.url("/leaf/1"), site.url("/leaf/2")]
    ran = crawler(
        "run", "argued.py", "-a", f"start_urls={','.join(urls)}", "-o", "out.jsonl",
        "-s", "OBEY_ROBOTS=false", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    got = [json.loads(line)["url"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(got) == urls

    refused = crawler("run", "argued.py", "-a", "parse=x", "-o", "no.jsonl", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: -a parse: Argued.parse is not a spider argument"
    assert not (tmp_path / "no.jsonl").exists()  # refused before anything is written
