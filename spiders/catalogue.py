"""The catalogue spider: follows every link of the sandbox bookstore within the site and
records each page's title. A broad, link-following crawl: ``crawler run catalogue``."""

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class CatalogueSpider(Spider):
    name = "catalogue"
    base_url = "http://127.0.0.1:8765"
    allowed_domains = ["127.0.0.1"]
    custom_settings = {"max_depth": 5}

    async def start_requests(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base_url}/")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text(strip=True) if title else ""}
        for request in response.follow_all(css="a[href]"):
            yield request
