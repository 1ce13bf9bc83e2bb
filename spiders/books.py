"""The books spider: crawls the sandbox bookstore (``crawler sandbox``) and scrapes every book.

crawler sandbox &                      # serves the bookstore on http://127.0.0.1:8765
crawler run books -o books.jsonl
"""

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field, HttpUrl

from crawler import Request, Response, Spider

RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


class Book(BaseModel):
    title: str = Field(min_length=1)
    price: float = Field(ge=0)
    category: str
    rating: int = Field(ge=1, le=5)
    in_stock: bool
    upc: str = Field(pattern=r"^[0-9a-f]{16}$")
    url: HttpUrl


class BooksSpider(Spider):
    name = "books"
    base_url = "http://127.0.0.1:8765"  # crawler run books -a base_url=http://host:port
    item_model = Book

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/catalogue/page-1.html")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        """A listing page: every book on it, then the next page."""
        for link in response.css("article.product_pod h3 a"):
            yield response.follow(link, callback=self.parse_book)
        if (next_page := response.css_first("li.next a")) is not None:
            yield response.follow(next_page)

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
            "price": _text(main.css_first("p.price_color")).lstrip("£"),
            "category": _text(response.css_first("ul.breadcrumb li:nth-child(3) a")),
            "rating": next((RATINGS[c] for c in classes if c in RATINGS), 0),
            "in_stock": _text(main.css_first("p.availability")) == "In stock",
            "upc": _text(upc),
            "url": response.url,
        }


def _text(node: Any) -> str:
    return node.text(strip=True) if node is not None else ""
