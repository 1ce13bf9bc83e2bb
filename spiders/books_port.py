"""A Scrapy spider ported by changing its imports: ``start_requests`` with meta, cb_kwargs, an
errback, dont_filter, per-request headers and cookies, and a dedupe pipeline with open_spider.

In Scrapy it began ``from scrapy import Request, Spider``, ``from scrapy.exceptions import
DropItem`` and the HttpError and Failure imports; below them only two things changed: the type
annotations (mypy --strict checks this folder), and ``ITEM_PIPELINES = {"...DedupePipeline": 300}``
in settings.py became the ``pipelines`` attribute (objects, not dotted paths). The seen UPCs live
in ``spider.state``, so a crawl stopped or killed and resumed (``--state``) exports each book once.

crawler sandbox &                      # serves the bookstore on http://127.0.0.1:8765
crawler run books_port -o books.jsonl --state books.db
"""

from collections.abc import Iterator
from typing import Any

from crawler import DropItem, Failure, HttpError, Request, Response, Spider


class DedupePipeline:
    """Drops a book already exported: the same book is reached from two listings."""

    def open_spider(self, spider: Spider) -> None:
        self.seen: dict[str, bool] = spider.state.setdefault("seen_upcs", {})

    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        if item["upc"] in self.seen:
            raise DropItem(f"duplicate book {item['upc']}")
        self.seen[item["upc"]] = True
        return item

    def close_spider(self, spider: Spider) -> None:
        spider.logger.info("%d distinct books exported", len(self.seen))


class BooksPortSpider(Spider):
    name = "books_port"
    base_url = "http://127.0.0.1:8765"  # crawler run books_port -a base_url=http://host:port
    pipelines = (DedupePipeline(),)

    def start_requests(self) -> Iterator[Request]:
        yield Request(
            f"{self.base_url}/catalogue/page-1.html",
            callback=self.parse_listing,
            meta={"listing": "All books"},
            headers={"Accept-Language": "en-GB"},
            cookies={"currency": "GBP"},
        )
        yield Request(f"{self.base_url}/about.html", callback=self.parse, errback=self.missing)

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"page": response.url, "title": response.css("title::text").get()}

    def parse_listing(self, response: Response, category: str | None = None) -> Iterator[Any]:
        listing = response.meta["listing"]
        for href in response.css("article.product_pod h3 a::attr(href)").getall():
            # A book is in "All books" and in its category's listing: fetched from both
            # (dont_filter), the pipeline keeps the first.
            yield response.follow(
                href,
                callback=self.parse_book,
                meta={"listing": listing},
                cb_kwargs={"category": category},
                dont_filter=True,
            )
        if (next_page := response.css("li.next a::attr(href)").get()) is not None:
            yield response.follow(
                next_page, callback=self.parse_listing, meta={"listing": listing},
                cb_kwargs={"category": category},
            )  # fmt: skip
        if category is None and response.url.endswith("/catalogue/page-1.html"):
            for link in response.css("aside.sidebar a"):
                name = link.css("::text").get() or ""
                yield response.follow(
                    link, callback=self.parse_listing, meta={"listing": name},
                    cb_kwargs={"category": name},
                )  # fmt: skip

    def parse_book(self, response: Response, category: str | None) -> Iterator[dict[str, Any]]:
        rows = response.css("table.table-striped tr")
        table = dict(zip(rows.css("th::text").getall(), rows.css("td::text").getall(), strict=True))
        yield {
            "upc": table.get("UPC", ""),
            "title": response.css(".product_main h1::text").get(),
            "price": float(
                response.css(".product_main p.price_color::text").re_first(r"[\d.]+", "0")
            ),
            "category": category or response.css("ul.breadcrumb li:nth-child(3) a::text").get(),
            "listing": response.meta["listing"],
            "url": response.url,
        }

    def missing(self, failure: Failure) -> None:
        if failure.check(HttpError) and failure.response is not None:
            self.logger.info(
                "no page at %s (HTTP %d)", failure.request.url, failure.response.status
            )
            self.state.setdefault("missing", []).append(failure.request.url)
        else:
            self.logger.warning("%s failed: %s", failure.request.url, failure.getErrorMessage())

    def closed(self, reason: str) -> None:
        self.logger.info("closed (%s); pages missing: %s", reason, self.state.get("missing", []))
