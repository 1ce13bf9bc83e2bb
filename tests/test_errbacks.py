"""Errbacks: each failure reaches the request's errback as a Failure (request, error, response
when there was one), and what the errback yields (items, a retry) is taken in as a callback's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Failure, HttpError, Request, Response, Spider
from crawler.errors import TransientError
from crawler.testing import LoopbackSite, Page, make_response, run_callback, serve
from tests.crawling import crawl


def _recorder(*urls: str, handled: tuple[int, ...] = ()) -> type[Spider]:
    """Requests ``urls`` with an errback that yields what the failure says."""

    class Recorder(Spider):
        name = "recorder"
        handle_httpstatus_list = handled

        async def start_requests(self) -> AsyncIterator[Request]:
            for url in urls:
                yield Request(url, errback=self.failed, meta={"tag": url.rpartition("/")[2]})

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"parsed": response.url, "status": response.status}

        async def failed(self, failure: Failure) -> AsyncIterator[Any]:
            response = failure.response
            yield {
                "url": failure.request.url,
                "tag": failure.request.meta["tag"],
                "error": failure.type.__name__,
                "is_http_error": failure.check(TransientError, HttpError) is HttpError,
                "status": response.status if response is not None else None,
                "body": response.text if response is not None else None,
                "message": failure.getErrorMessage(),
            }

    return Recorder


ROUTES = {
    "/ok": "<p>fine</p>",
    "/gone": Page("<p>this page is gone</p>", status=410),
    "/teapot": Page("short and stout", status=418, headers={"Content-Type": "text/plain"}),
    "/busy": Page("try later", status=503),
}


async def test_a_non_2xx_response_reaches_the_errback_as_an_http_error(tmp_path: Path) -> None:
    with serve(ROUTES) as site:
        spider = _recorder(site.url("/ok"), site.url("/gone"), site.url("/teapot"))
        result = await crawl(spider, tmp_path, obey_robots=False)
    by_tag = {item.get("tag", "ok"): item for item in result.items}
    assert by_tag["ok"] == {"parsed": site.url("/ok"), "status": 200}
    assert by_tag["gone"] == {
        "url": site.url("/gone"),
        "tag": "gone",
        "error": "HttpError",
        "is_http_error": True,
        "status": 410,
        "body": "<p>this page is gone</p>",
        "message": "HTTP 410",
    }
    assert by_tag["teapot"]["status"] == 418
    assert by_tag["teapot"]["body"] == "short and stout"
    # Counted as before: a failure of its status, not a page crawled.
    assert result.stats.failure_reasons == {"http_410": 1, "http_418": 1}
    assert result.stats.pages_crawled == 1
    assert result.stats.items_scraped == 3


async def test_a_status_in_handle_httpstatus_list_goes_to_the_callback_only(
    tmp_path: Path,
) -> None:
    with serve(ROUTES) as site:
        spider = _recorder(site.url("/gone"), handled=(410,))
        result = await crawl(spider, tmp_path, obey_robots=False)
    assert result.items == [{"parsed": site.url("/gone"), "status": 410}]
    assert result.stats.failures == 0


async def test_a_retryable_status_reaches_the_errback_with_its_response_once_retries_are_spent(
    tmp_path: Path,
) -> None:
    with serve(ROUTES) as site:
        spider = _recorder(site.url("/busy"))
        result = await crawl(spider, tmp_path, obey_robots=False, max_retries=1, retry_backoff=0)
    assert site.hits["/busy"] == 2
    [item] = result.items
    assert (item["error"], item["status"], item["body"]) == ("HttpError", 503, "try later")
    assert result.stats.failure_reasons == {"RetryableStatus": 1}


async def test_a_connection_failure_reaches_the_errback_without_a_response(
    tmp_path: Path,
) -> None:
    with serve({}) as closed:
        url = closed.url("/nothing-listens-here")
    # The site is stopped: its port refuses connections.
    result = await crawl(_recorder(url), tmp_path, obey_robots=False, max_retries=0)
    [item] = result.items
    assert item["error"] == "TransientError"
    assert (item["status"], item["body"], item["is_http_error"]) == (None, None, False)
    assert item["tag"] == "nothing-listens-here"


def _retrier(url: str) -> type[Spider]:
    """Retries a failed page from its errback, at most twice, then gives up with an item."""

    class Retrier(Spider):
        name = "retrier"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(url, errback=self.retry, meta={"tries": 0})

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"ok": response.url}

        async def retry(self, failure: Failure) -> AsyncIterator[Any]:
            tries = failure.request.meta["tries"] + 1
            if tries <= 2:
                yield failure.request.replace(dont_filter=True, meta={"tries": tries})
            else:
                yield {"gave_up": failure.request.url, "tries": tries - 1}

    return Retrier


async def test_an_errback_may_retry_with_a_new_request(tmp_path: Path) -> None:
    with serve(ROUTES) as site:
        result = await crawl(_retrier(site.url("/gone")), tmp_path, obey_robots=False)
    assert site.hits["/gone"] == 3
    assert result.items == [{"gave_up": site.url("/gone"), "tries": 2}]
    assert result.stats.failure_reasons == {"http_410": 3}


async def test_failure_checks_and_raises_as_scrapy_s_does() -> None:
    response = make_response("http://example.com/x", "<p>no</p>", status=404, meta={"tag": "x"})
    failure = Failure(HttpError(response), response.request)
    assert failure.check(ValueError) is None
    assert failure.check(TransientError, HttpError) is HttpError
    assert failure.response is response
    assert "404" in repr(failure)
    with pytest.raises(HttpError):
        failure.raiseException()
    output = await run_callback(_recorder()().failed, failure)  # type: ignore[attr-defined]
    assert output.items[0]["status"] == 404


def test_a_loopback_site_has_no_url_before_it_starts() -> None:
    site = LoopbackSite({})
    with pytest.raises(RuntimeError, match="has not started"):
        site.url("/")
