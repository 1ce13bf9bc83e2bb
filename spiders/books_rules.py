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
        main = response.css_first(".product_main")
        if main is None:
            return
        rows = {
            _text(row.css_first("th")): _text(row.css_first("td"))
            for row in response.css("table.table-striped tr")
        }
        rating = main.css_first("p.star-rating")
        classes = (rating.attributes.get("class") or "").split() if rating else []
        yield {
            "title": _text(main.css_first("h1")),
            "price": float(_text(main.css_first("p.price_color")).lstrip("£")),
            "category": _text(response.css_first("ul.breadcrumb li:nth-child(3) a")),
            "rating": next((RATINGS[c] for c in classes if c in RATINGS), 0),
            "in_stock": rows.get("Availability") == "In stock",
            "upc": rows.get("UPC", ""),
            "url": response.url,
        }


def _text(node: Any) -> str:
    return node.text(strip=True) if node is not None else ""
