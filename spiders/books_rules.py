"""The books spider as a CrawlSpider: rules find the listing pages and the books, as in Scrapy.

crawler sandbox &                      # serves the bookstore on http://127.0.0.1:8765
crawler run books_rules -o books.jsonl
"""

from collections.abc import Iterator
from typing import Any

from crawler import CrawlSpider, LinkExtractor, Response, Rule

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


class BooksRulesSpider(CrawlSpider):
    name = "books_rules"
    allowed_domains = ["127.0.0.1"]
    start_urls = ["http://127.0.0.1:8765/"]

    rules = (
        # "All books" and its pages: followed, nothing scraped.
        Rule(LinkExtractor(allow=r"/catalogue/page-\d+\.html$")),
        # A book: /catalogue/<slug>/index.html (category pages have two segments, so no match).
        Rule(LinkExtractor(allow=r"/catalogue/[^/]+/index\.html$"), callback="parse_book"),
    )

    def parse_book(self, response: Response) -> Iterator[dict[str, Any]]:
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
        }
