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
        main = response.css_first(".product_main")
        if main is None:
            return
        rating = main.css_first("p.star-rating")
        classes = (rating.attributes.get("class") or "").split() if rating else []
        upc = next(
            (
                row.css_first("td")
                for row in response.css("table.table-striped tr")
                if (th := row.css_first("th")) is not None and th.text(strip=True) == "UPC"
            ),
            None,
        )
        yield {
            "title": _text(main.css_first("h1")),
            "price": float(_text(main.css_first("p.price_color")).lstrip("£")),
            "category": _text(response.css_first("ul.breadcrumb li:nth-child(3) a")),
            "rating": next((RATINGS[c] for c in classes if c in RATINGS), 0),
            "in_stock": _text(main.css_first("p.availability")) == "In stock",
            "upc": _text(upc),
            "url": response.url,
            "lastmod": response.meta["sitemap"]["lastmod"],
        }


def _text(node: Any) -> str:
    return node.text(strip=True) if node is not None else ""
