"""CrawlSpider crawls of the loopback test site and of the sandbox bookstore: rule order, follow,
callbacks and their arguments, the process_* hooks, errbacks, and a resumed crawl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler import (
    CrawlSpider,
    Failure,
    Link,
    LinkExtractor,
    Request,
    Response,
    Rule,
    SpiderError,
)
from crawler.sandbox import SandboxServer, expected_items
from spiders.books_rules import BooksRulesSpider
from tests.crawling import crawl
from tests.site import RULES_PAGES, TestSite

ITEMS = [10 * n + i for n in range(1, RULES_PAGES + 1) for i in (1, 2, 3)]


class Shop(CrawlSpider):
    """Callbacks that record which one saw which page, with what arguments."""

    name = "shop"
    allowed_domains = ("127.0.0.1",)

    def first(self, response: Response, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield self.seen("first", response, kwargs)

    def second(self, response: Response, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield self.seen("second", response, kwargs)

    def seen(self, name: str, response: Response, kwargs: dict[str, Any]) -> dict[str, Any]:
        path = "/" + response.url.split("/", 3)[3]
        return {"callback": name, "path": path, "kwargs": kwargs, "meta": response.meta}


def shop_spider(site: TestSite, *rules: Rule) -> type[CrawlSpider]:
    """A Shop crawling from /rules/list/1 with these rules."""
    return type("Shop", (Shop,), {"start_urls": (site.url("/rules/list/1"),), "rules": rules})


def by_path(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["path"]: item["callback"] for item in items}


async def test_the_first_rule_that_extracts_a_link_gets_it(site: TestSite, tmp_path: Path) -> None:
    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow=r"/rules/list/")),
        Rule(LinkExtractor(allow=r"/rules/item/1\d$"), callback="first"),
        Rule(LinkExtractor(allow=r"/rules/item/"), callback="second"),
    )
    result = await crawl(spider, tmp_path, obey_robots=False)

    seen = by_path(result.items)
    assert seen == {f"/rules/item/{n}": ("first" if 10 <= n < 20 else "second") for n in ITEMS}
    assert len(result.items) == len(ITEMS)  # each page once, whatever rules matched it
    for n in range(1, RULES_PAGES + 1):
        assert site.hits(f"/rules/list/{n}", 0) == 1


async def test_follow_defaults_to_true_only_without_a_callback(
    site: TestSite, tmp_path: Path
) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "follow").mkdir()
    lists = Rule(LinkExtractor(allow=r"/rules/list/"))
    extras = Rule(LinkExtractor(allow=r"/rules/extra/"), callback="second")
    result = await crawl(
        shop_spider(site, lists, Rule(LinkExtractor(allow="/item/"), callback="first"), extras),
        tmp_path / "default",
        obey_robots=False,
    )
    assert sorted(by_path(result.items).values()) == ["first"] * len(ITEMS)
    assert not any(site.hits(f"/rules/extra/{n}", 0) for n in ITEMS)

    followed = Rule(LinkExtractor(allow="/item/"), callback="first", follow=True)
    result = await crawl(
        shop_spider(site, lists, followed, extras), tmp_path / "follow", obey_robots=False
    )
    seen = by_path(result.items)
    assert {path for path, name in seen.items() if name == "second"} == {
        f"/rules/extra/{n}" for n in ITEMS
    }


async def test_links_a_rule_drops_never_reach_the_site(site: TestSite, tmp_path: Path) -> None:
    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow="/rules/list/", restrict_css="nav.pager")),
        Rule(
            LinkExtractor(deny=["/private/", "/list/"], deny_domains="127.0.0.2"), callback="first"
        ),
    )
    result = await crawl(spider, tmp_path, obey_robots=False)

    assert set(by_path(result.items)) == {f"/rules/item/{n}" for n in ITEMS}
    assert site.hits_total(1) == 0
    for path in ("/rules/private/1", "/rules/files/report.PDF", "/rules/files/site.tar.gz"):
        assert site.hits(path) == 0


async def test_rule_cb_kwargs_reach_the_callback_with_the_link_text(
    site: TestSite, tmp_path: Path
) -> None:
    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow="/item/"), "first", {"shelf": "items"}),
    )
    result = await crawl(spider, tmp_path, obey_robots=False)

    assert {item["path"] for item in result.items} == {
        "/rules/item/11",
        "/rules/item/12",
        "/rules/item/13",
    }
    for item in result.items:
        assert item["kwargs"] == {"shelf": "items"}
        assert item["meta"]["link_text"] == item["path"]  # the anchors' text is their href
        assert item["meta"]["rule"] == 0


async def test_process_links_and_process_request(site: TestSite, tmp_path: Path) -> None:
    class Hooked(Shop):
        start_urls = (site.url("/rules/list/1"),)
        rules = (
            Rule(LinkExtractor(allow="/list/"), process_request="tag"),
            Rule(
                LinkExtractor(allow="/item/"),
                callback="first",
                process_links="odd_only",
                process_request="tag",
            ),
        )

        def odd_only(self, links: list[Link]) -> list[Link]:
            return [link for link in links if int(link.url.rsplit("/", 1)[1]) % 2]

        def tag(self, request: Request, response: Response) -> Request | None:
            if request.url.endswith("/13"):
                return None
            return request.replace(headers={"X-From": response.url}, cb_kwargs={"priority": 1})

    result = await crawl(Hooked, tmp_path, obey_robots=False)

    expected = {n for n in ITEMS if n % 2 and n != 13}
    assert set(by_path(result.items)) == {f"/rules/item/{n}" for n in expected}
    assert all(item["kwargs"] == {"priority": 1} for item in result.items)
    assert site.hits("/rules/item/13") == 0
    referrers = {hit.path: hit.headers.get("x-from") for hit in site.log}
    assert referrers["/rules/item/21"] == site.url("/rules/list/2")


async def test_process_hooks_may_be_methods(site: TestSite, tmp_path: Path) -> None:
    def first_link_only(links: list[Link]) -> list[Link]:
        return links[:1]

    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow="/item/"), callback="first", process_links=first_link_only),
    )
    result = await crawl(spider, tmp_path, obey_robots=False)
    assert by_path(result.items) == {"/rules/item/11": "first"}


async def test_a_rule_errback_gets_the_failure(site: TestSite, tmp_path: Path) -> None:
    class Broken(CrawlSpider):
        name = "broken"
        start_urls = (site.url("/rules/broken"),)
        rules = (
            Rule(LinkExtractor(allow="/rules/item/"), callback="item"),
            Rule(LinkExtractor(allow="/hang-up"), callback="item", errback="failed"),
        )

        def item(self, response: Response) -> dict[str, str]:
            return {"ok": response.url}

        def failed(self, failure: Failure) -> dict[str, str]:
            return {"error": type(failure.value).__name__, "url": failure.request.url}

    result = await crawl(Broken, tmp_path, obey_robots=False, max_retries=0)
    assert {"ok": site.url("/rules/item/1")} in result.items
    errors = [item for item in result.items if "error" in item]
    assert errors == [{"error": "TransientError", "url": site.url("/hang-up")}]


async def test_parse_start_url_sees_the_start_pages(site: TestSite, tmp_path: Path) -> None:
    class Start(Shop):
        start_urls = (site.url("/rules/list/1"),)
        rules = (Rule(LinkExtractor(allow="/rules/list/")),)

        def parse_start_url(self, response: Response, **kwargs: Any) -> dict[str, str]:
            return {"start": response.url}

    result = await crawl(Start, tmp_path, obey_robots=False)
    assert result.items == [{"start": site.url("/rules/list/1")}]
    assert site.hits(f"/rules/list/{RULES_PAGES}") == 1


async def test_process_results_sees_each_callback_output(site: TestSite, tmp_path: Path) -> None:
    class Stamped(Shop):
        start_urls = (site.url("/rules/list/1"),)
        rules = (Rule(LinkExtractor(allow="/item/1"), callback="first"),)

        def process_results(self, response: Response, results: list[Any]) -> Iterator[Any]:
            for result in results:
                yield {**result, "stamped": len(results)}

    result = await crawl(Stamped, tmp_path, obey_robots=False)
    assert len(result.items) == 3
    assert all(item["stamped"] == 1 for item in result.items)


async def test_rule_requests_are_one_level_deeper(site: TestSite, tmp_path: Path) -> None:
    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow="/list/")),
        Rule(LinkExtractor(allow="/item/"), callback="first"),
    )
    result = await crawl(spider, tmp_path, obey_robots=False, max_depth=1)
    assert set(by_path(result.items)) == {"/rules/item/11", "/rules/item/12", "/rules/item/13"}
    assert site.hits("/rules/list/2") == 1  # depth 1: fetched, its links are too deep
    assert site.hits("/rules/item/21") == 0


def test_a_rule_naming_a_missing_method_fails_at_start() -> None:
    class Typo(CrawlSpider):
        name = "typo"
        rules = (Rule(callback="parse_itme"),)

    with pytest.raises(SpiderError, match="parse_itme"):
        Typo()


async def test_a_resumed_crawl_finds_the_rule_callbacks_again(
    site: TestSite, tmp_path: Path
) -> None:
    spider = shop_spider(
        site,
        Rule(LinkExtractor(allow=r"/rules/list/")),
        Rule(LinkExtractor(allow=r"/rules/item/\d*[13]$"), callback="first", cb_kwargs={"odd": 1}),
        Rule(LinkExtractor(allow=r"/rules/item/"), callback="second"),
    )
    state = tmp_path / "state.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stopped = await crawl(spider, tmp_path / "a", state=state, obey_robots=False, max_pages=2)
    assert stopped.stats.responses_total == 2
    resumed = await crawl(spider, tmp_path / "b", state=state, obey_robots=False)

    items = stopped.items + resumed.items
    assert by_path(items) == {
        f"/rules/item/{n}": ("first" if n % 10 in (1, 3) else "second") for n in ITEMS
    }
    assert len(items) == len(ITEMS)
    assert all(
        item["kwargs"] == ({"odd": 1} if item["callback"] == "first" else {}) for item in items
    )
    assert resumed.stats.callback_errors == 0


async def test_a_resume_with_fewer_rules_says_which_rule_is_gone(
    site: TestSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lists = Rule(LinkExtractor(allow=r"/rules/list/"))
    items = Rule(LinkExtractor(allow=r"/rules/item/"), callback="first")
    state = tmp_path / "state.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    await crawl(shop_spider(site, lists, items), tmp_path / "a", state=state, max_pages=1)
    resumed = await crawl(shop_spider(site, items), tmp_path / "b", state=state)

    assert resumed.stats.callback_errors > 0
    assert "request names rule 1, but Shop has 1 rules" in caplog.text


async def test_a_crawl_spider_scrapes_the_sandbox_exactly(tmp_path: Path) -> None:
    with SandboxServer() as server:
        server.start()

        class Local(BooksRulesSpider):
            start_urls = (server.base_url + "/",)

        result = await crawl(Local, tmp_path)
        expected = expected_items(server.base_url)

    assert sorted(result.items, key=lambda i: str(i["upc"])) == sorted(
        expected, key=lambda i: str(i["upc"])
    )
    assert result.stats.callback_errors == 0
