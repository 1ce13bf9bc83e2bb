"""Admission of new requests: recent-URL filter, callbacks, scope and depth, and the request value
it hands back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crawler import Request, Response, Spider
from crawler.admission import Admission
from crawler.scope import Scope
from crawler.stats import Stats
from tests.crawling import crawl
from tests.site import TestSite


class _Spider(Spider):
    name = "admission"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}


def _admission(max_depth: int | None = None, domains: tuple[str, ...] = ()) -> Admission:
    return Admission(_Spider(), Scope(domains, max_depth), Stats())


def test_a_plain_child_is_replaced_one_level_below_its_parent() -> None:
    admission = _admission()
    parent = Request("http://a.test/", depth=3)
    child = Request("http://a.test/child")
    admitted = admission.admit(child, parent)
    assert admitted is not None
    assert admitted is not child
    assert child.depth == 0  # the spider's own object is left as it was
    assert admitted.depth == 4
    assert admitted.to_record()["depth"] == 4  # what the frontier stores


def test_a_child_already_deeper_is_kept_as_it_is() -> None:
    admission = _admission()
    child = Request("http://a.test/child", depth=9)
    assert admission.admit(child, Request("http://a.test/", depth=1)) is child


def test_a_url_is_stored_as_the_standard_spells_it() -> None:
    admission = _admission()
    given = Request("HTTP://A.test/x/../p\tq?b=1", depth=2)
    admitted = admission.admit(given, None)
    assert admitted is not None
    assert (admitted.url, admitted.depth, given.url) == (
        "http://a.test/pq?b=1",
        2,
        "HTTP://A.test/x/../p\tq?b=1",
    )
    plain = Request("http://a.test/already/standard")
    assert admission.admit(plain, None) is plain


def test_max_depth_applies_to_plain_children() -> None:
    admission = _admission(max_depth=2)
    assert admission.admit(Request("http://a.test/x"), Request("http://a.test/", depth=2)) is None
    assert admission.stats.depth_filtered == 1


def test_a_url_met_too_deep_is_taken_when_met_shallower_later() -> None:
    admission = _admission(max_depth=2)
    deep = Request("http://a.test/page", depth=5)
    assert admission.admit(deep, None) is None
    shallow = admission.admit(Request("http://a.test/page", depth=1), None)
    assert shallow is not None
    assert admission.admit(Request("http://a.test/page", depth=1), None) is None  # now seen
    assert (admission.stats.depth_filtered, admission.stats.duplicates_filtered) == (1, 1)


def test_a_refused_callback_does_not_mark_the_url_seen() -> None:
    admission = _admission()
    assert admission.admit(Request("http://a.test/p", "no_such_method"), None) is None
    assert admission.stats.callback_errors == 1
    assert admission.admit(Request("http://a.test/p"), None) is not None


def test_offsite_urls_are_not_marked_seen_either() -> None:
    admission = _admission(domains=("b.test",))
    assert admission.admit(Request("http://a.test/p"), None) is None
    assert admission.stats.offsite_filtered == 1


def test_dont_filter_and_bodies_skip_the_recent_filter() -> None:
    admission = _admission()
    for _ in range(2):
        assert admission.admit(Request("http://a.test/p", dont_filter=True), None) is not None
        assert admission.admit(Request("http://a.test/form", body=b"x=1"), None) is not None


async def test_a_crawl_of_plain_requests_honours_max_depth(site: TestSite, tmp_path: Path) -> None:
    class Plain(Spider):
        name = "plain"
        start_urls = (site.url("/graph/0"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            node = response.css_first("h1.n")
            yield {"n": int(node.text()) if node else -1}
            for node in response.css("a[href]"):
                yield Request(response.urljoin(node.attributes.get("href") or ""))

    result = await crawl(Plain, tmp_path, obey_robots=False, max_depth=2)
    # Depth 0: node 0; depth 1: nodes 1 and 2; depth 2: nodes 3 to 6. Node 7 is never asked for.
    assert {item["n"] for item in result.items} == set(range(7))
    assert site.hits("/graph/7") == 0
    assert result.stats.depth_filtered > 0


async def test_a_page_linked_first_from_too_deep_is_crawled_from_a_shallow_page(
    site: TestSite, tmp_path: Path
) -> None:
    target = site.url("/leaf/1")

    class DeepFirst(Spider):
        name = "deep-first"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(site.url("/leaf/0"), depth=1)  # its link to the target is too deep
            yield Request(site.url("/paged?page=1"), self.parse_shallow, priority=-1)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            yield Request(target)

        async def parse_shallow(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            yield Request(target)

    result = await crawl(DeepFirst, tmp_path, obey_robots=False, max_depth=1, concurrency=1)
    assert site.hits("/leaf/1") == 1
    assert target in {item["url"] for item in result.items}


async def test_links_past_the_cap_are_dropped_and_counted(site: TestSite, tmp_path: Path) -> None:
    class Flood(Spider):
        name = "flood"
        start_urls = (site.url("/leaf/0"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            if response.url.endswith("/leaf/0"):
                for i in range(1, 2500):
                    yield Request(site.url(f"/leaf/{i}"), self.parse_leaf)

        async def parse_leaf(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    result = await crawl(Flood, tmp_path, obey_robots=False, max_links_per_page=1200)
    assert len(result.items) == 1201
    assert result.stats.links_dropped == 2499 - 1200
    assert site.hits("/leaf/1201") == site.hits("/leaf/2000") == 0


async def test_a_resumed_crawl_holds_its_queue_to_todays_scope(
    site: TestSite, tmp_path: Path, tmp_state: Path
) -> None:
    class Wide(Spider):
        name = "scoped"
        start_urls = (site.url("/graph/0"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    class Narrow(Wide):
        allowed_domains = (site.host(0).partition(":")[0],)

    await crawl(Wide, tmp_path, state=tmp_state, obey_robots=False, max_pages=1)
    assert site.hits_total(1) == 0  # graph/0 links to host 1: queued, not fetched yet
    result = await crawl(Narrow, tmp_path, state=tmp_state, obey_robots=False, max_pages=50)
    assert site.hits_total(1) == 0
    assert result.stats.offsite_filtered >= 1


async def test_a_resumed_crawl_skipping_more_requests_than_its_concurrency_ends(
    site: TestSite, tmp_path: Path, tmp_state: Path
) -> None:
    """Each queued request today's scope skips gives its global and host slot back (review:
    the engine's scope skip came before _download, so it never called release())."""

    class Wide(Spider):
        name = "scoped"
        start_urls = tuple(site.url(f"/leaf/{i}", 1) for i in range(6))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    class Narrow(Wide):
        allowed_domains = (site.host(0).partition(":")[0],)

    await crawl(Wide, tmp_path, state=tmp_state, obey_robots=False, max_pages=1)
    async with asyncio.timeout(20):
        result = await crawl(Narrow, tmp_path, state=tmp_state, obey_robots=False, concurrency=2)
    assert site.hits_total(1) == 1
    assert result.stats.offsite_filtered == 6 + 5  # the seeds again at admission, the queue
