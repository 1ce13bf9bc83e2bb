"""The sandbox's books found through its sitemaps, as with Scrapy's SitemapSpider: robots.txt
names the index, the index a plain sitemap of listings and a gzipped one of every book.

crawler sandbox &                      # serves the bookstore on http://127.0.0.1:8765
crawler run books_sitemap -o books.jsonl
crawler run books_sitemap -a since=2025-06-01 -o changed.jsonl   # pages changed since then
"""

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from crawler import Response, SitemapSpider
from crawler.sitemaps import SitemapEntry, parse_lastmod

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


class BooksSitemapSpider(SitemapSpider):
    name = "books_sitemap"
    sitemap_urls = ["http://127.0.0.1:8765/robots.txt"]
    sitemap_rules = [(r"_\d+/index\.html$", "parse_book")]  # book pages; listings match none
    since = ""  # -a since=2025-06-01: skip pages whose sitemap lastmod is older

    def sitemap_filter(self, entries: Iterable[SitemapEntry]) -> Iterable[SitemapEntry]:
        since = parse_lastmod(self.since) if self.since else None
        for entry in entries:
            lastmod = entry["lastmod"]
            # Unknown or unreadable dates are crawled: better a page too many than one missed.
            if isinstance(lastmod, datetime) and isinstance(since, datetime) and lastmod < since:
                continue
            yield entry

    async def parse_book(self, response: Response) -> AsyncIterator[Any]:
        # Written as in Scrapy: ::text, ::attr(), get(), getall() and re_first().
        table = response.css("table.table-striped tr")
        rows = dict(
            zip(table.css("th::text").getall(), table.css("td::text").getall(), strict=True)
        )
        rating = response.css("p.star-rating::attr(class)").re_first(r"star-rating (\w+)")
        yield {
            "title": response.css(".product_main h1::text").get(),
            "price": float(
                response.css(".product_main p.price_color::text").re_first(r"[\d.]+", "0")
            ),
            "category": response.css("ul.breadcrumb li:nth-child(3) a::text").get(),
            "rating": RATINGS.get(rating or "", 0),
            "in_stock": rows.get("Availability") == "In stock",
            "upc": rows.get("UPC", ""),
            "url": response.url,
            "lastmod": response.meta["sitemap"]["lastmod"],
        }
