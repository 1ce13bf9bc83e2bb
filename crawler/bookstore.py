"""The sandbox's bookstore: a seeded catalogue of books and the pages that show it.

Pure data and rendering; `crawler.sandbox` serves the pages. `expected_items` is the truth a books
spider must scrape; `reprice` is how a book changes when the sandbox changes it.
"""

from __future__ import annotations

import gzip
import html
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

PAGE_SIZE = 20
# Uneven on purpose: Fiction needs a second listing page, Poetry stays tiny.
_SIZES = {"Fiction": 22, "Mystery": 11, "Science": 9, "History": 8, "Travel": 6, "Poetry": 4}
_RATINGS = ("One", "Two", "Three", "Four", "Five")
# fmt: off
_ADJECTIVES = ("Silent", "Crimson", "Hidden", "Last", "Forgotten", "Golden", "Restless", "Quiet",
               "Burning", "Distant")
_NOUNS = ("Garden", "Lighthouse", "Orchard", "Map", "Harbour", "Theory", "Archive", "River",
          "Empire", "Atlas", "Comet")
_PLACES = ("Lisbon", "the Northern Sea", "Kyoto", "Málaga", "the Andes", "Old Prague", "Zanzibar")
_NAMES = ("Zoë", "Margaret", "Tomás", "Ines", "Arthur", "Nadia", "Hugo", "Edith")
_PATTERNS = ("The {adj} {noun}", "{noun} of {place}", "{name}'s {noun}", "{noun} & {noun2}",
             "A {adj} {noun} in {place}", "The {adj} {noun}: Notes from {place}")
_THEMES = ("memory & loss", "a family's long summer", "an unlikely friendship",
           "the sea's patience")
_OPENERS = ("A luminous {genre} book about {theme}.", "An unhurried {genre} study of {theme}.",
            "This celebrated {genre} title follows {theme}.")
_CLOSERS = ('Readers call it "impossible to put down".', "Includes notes and a short afterword.",
            "The author's first book in a decade.")
# fmt: on


@dataclass(frozen=True, slots=True)
class Book:
    """One catalogue entry; its detail page lives at `/catalogue/<slug>/index.html`."""

    title: str
    slug: str
    upc: str
    price: float
    rating: int
    in_stock: bool
    category: str
    description: str

    @property
    def path(self) -> str:
        return f"/catalogue/{self.slug}/index.html"


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text.replace("'", "")).encode("ascii", "ignore")

    return re.sub(r"[^a-z0-9]+", "-", ascii_text.decode().lower()).strip("-")


def _title(rng: random.Random, taken: set[str]) -> str:
    while True:
        noun, noun2 = rng.sample(_NOUNS, 2)
        title = rng.choice(_PATTERNS).format(
            adj=rng.choice(_ADJECTIVES), noun=noun, noun2=noun2,
            place=rng.choice(_PLACES), name=rng.choice(_NAMES),
        )  # fmt: skip
        if title not in taken:
            taken.add(title)
            return title


def _description(rng: random.Random, category: str) -> str:
    opener = rng.choice(_OPENERS).format(genre=category.lower(), theme=rng.choice(_THEMES))
    return f"{opener} {rng.choice(_CLOSERS)}"


def _generate_catalogue(seed: int) -> tuple[Book, ...]:
    rng = random.Random(seed)
    categories = [name for name, size in _SIZES.items() for _ in range(size)]
    rng.shuffle(categories)
    taken: set[str] = set()
    books = []
    for number, category in enumerate(categories, start=1):
        title = _title(rng, taken)
        upc, pence = f"{rng.getrandbits(64):016x}", rng.randint(750, 5999)
        rating, in_stock = rng.randint(1, 5), rng.random() < 0.8
        slug, description = f"{_slugify(title)}_{number}", _description(rng, category)
        books.append(Book(title, slug, upc, pence / 100, rating, in_stock, category, description))
    return tuple(books)


CATALOGUE: tuple[Book, ...] = _generate_catalogue(1234)
CATEGORIES: tuple[str, ...] = tuple(_SIZES)
_NUMBERS = {book.slug: number for number, book in enumerate(CATALOGUE)}
# Every 20th book (from the 8th) recommends a "related" book that was never published.
_BROKEN_RELATED = {book.slug: f"out-of-print_{900 + i}" for i, book in enumerate(CATALOGUE[7::20])}
BROKEN_PATHS: tuple[str, ...] = (
    "/about.html",
    *(f"/catalogue/{slug}/index.html" for slug in _BROKEN_RELATED.values()),
)


def book_url(base_url: str, book: Book) -> str:
    """The absolute URL of a book's detail page: `<base_url>/catalogue/<slug>/index.html`."""
    return base_url + book.path


def expected_items(base_url: str, books: Sequence[Book] = CATALOGUE) -> list[dict[str, object]]:
    """What a correct spider scrapes from every detail page, in catalogue order (`books`: the
    catalogue as a sandbox serves it after changes, e.g. ``server.books``)."""
    return [
        {
            "title": book.title,
            "price": book.price,
            "category": book.category,
            "rating": book.rating,
            "in_stock": book.in_stock,
            "upc": book.upc,
            "url": book_url(base_url, book),
        }
        for book in books
    ]


def category_path(category: str, page: int = 1) -> str:
    """The path of one listing page of a category, e.g. `/catalogue/category/travel/index.html`."""
    name = "index.html" if page == 1 else f"page-{page}.html"
    return f"/catalogue/category/{_slugify(category)}/{name}"


# -- rendering -------------------------------------------------------------------------------------

_e = html.escape


def _document(title: str, body: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en-GB">
<head><meta charset="utf-8"><title>{_e(title)} | Sandbox Books</title></head>
<body id="top">
<header class="page_header"><a href="/">Sandbox Books</a></header>
<div class="container">{body}</div>
<footer><p>An offline catalogue for crawler tests. Prices in GBP.</p></footer>
</body>
</html>
""".encode()


NOT_FOUND = _document("Not found", "<h1>404 Not Found</h1><p>No such page.</p>")


def _stock(book: Book) -> str:
    if book.in_stock:
        return '<p class="instock availability">In stock</p>'
    return '<p class="outofstock availability">Out of stock</p>'


def _product_pod(book: Book, href: str) -> str:
    short = book.title if len(book.title) <= 30 else book.title[:27].rstrip() + "..."
    return (
        f'<li><article class="product_pod"><p class="star-rating {_RATINGS[book.rating - 1]}"></p>'
        f'<h3><a href="{href}" title="{_e(book.title)}">{_e(short)}</a></h3>'
        f'<div class="product_price"><p class="price_color">£{book.price:.2f}</p>'
        f"{_stock(book)}</div></article></li>"
    )


def _sidebar() -> str:
    links = "".join(f'<li><a href="{category_path(c)}">{_e(c)}</a></li>' for c in CATEGORIES)
    return f'<aside class="sidebar"><ul class="nav nav-list">{links}</ul></aside>'


def _listing_pages(
    heading: str, books: Sequence[Book], directory: str, first: str, up: str
) -> dict[str, bytes]:
    """Pages of 20 product pods named `first`, page-2.html, ...; `up` leads back to /catalogue/."""

    def name(number: int) -> str:
        return first if number == 1 else f"page-{number}.html"

    chunks = [books[i : i + PAGE_SIZE] for i in range(0, len(books), PAGE_SIZE)]
    pages = {}
    for number, chunk in enumerate(chunks, start=1):
        path = f"{directory}/{name(number)}"
        pods = "".join(_product_pod(b, f"{up}{b.slug}/index.html") for b in chunk)
        pager = f'<li class="current">Page {number} of {len(chunks)}</li>'
        if number > 1:
            pager = f'<li class="previous"><a href="{name(number - 1)}">previous</a></li>' + pager
        if number < len(chunks):
            pager += f'<li class="next"><a href="{name(number + 1)}">next</a></li>'
        body = (
            f"{_sidebar()}<section><h1>{_e(heading)}</h1>"
            f"<p><strong>{len(books)}</strong> results.</p>"
            f'<ol class="row">{pods}</ol><ul class="pager">{pager}</ul>'
            f'<p><a href="{path}#top">Back to top</a></p></section>'
        )
        pages[path] = _document(f"{heading} (page {number})", body)
    return pages


def _detail_page(book: Book, related: Sequence[Book]) -> bytes:
    links = [f'<li><a href="../{b.slug}/index.html">{_e(b.title)}</a></li>' for b in related]
    if book.slug in _BROKEN_RELATED:
        links.append(
            f'<li><a href="../{_BROKEN_RELATED[book.slug]}/index.html">Out of print</a></li>'
        )
    price, category = f"£{book.price:.2f}", _slugify(book.category)
    stock = "In stock" if book.in_stock else "Out of stock"
    rows = (("UPC", book.upc), ("Product Type", "Books"), ("Price", price), ("Availability", stock))
    table = "".join(f"<tr><th>{k}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    body = (
        '<ul class="breadcrumb"><li><a href="../../index.html">Home</a></li>'
        '<li><a href="/catalogue/page-1.html">Books</a></li>'
        f'<li><a href="../category/{category}/index.html">{_e(book.category)}</a></li>'
        f'<li class="active">{_e(book.title)}</li></ul>'
        f'<article class="product_page"><div class="product_main"><h1>{_e(book.title)}</h1>'
        f'<p class="price_color">{price}</p>{_stock(book)}'
        f'<p class="star-rating {_RATINGS[book.rating - 1]}"></p></div>'
        '<div id="product_description" class="sub-header"><h2>Product Description</h2></div>'
        f'<p>{_e(book.description)}</p><table class="table table-striped">{table}</table>'
        f'<section class="related"><h2>You might also like</h2><ul>{"".join(links)}</ul></section>'
        "</article>"
    )
    return _document(book.title, body)


def _home_page(base_url: str, count: int) -> bytes:
    items = "".join(
        f'<li><a href="{category_path(c)}">{_e(c)}</a> ({n})</li>' for c, n in _SIZES.items()
    )
    body = (
        "<h1>Welcome to Sandbox Books</h1>"
        f'<p>Browse <a href="{base_url}/catalogue/page-1.html">all {count} books</a>'
        f' or pick a category:</p><ul class="categories">{items}</ul>'
        '<p><a href="/about.html">About us</a> · <a href="/admin/index.html">Staff area</a></p>'
    )
    return _document("Home", body)


def book_lastmod(book: Book) -> str:
    """When a book's page last changed, as its sitemap entry says: one book every few days."""
    return (date(2025, 1, 1) + timedelta(days=3 * _NUMBERS[book.slug])).isoformat()


def reprice(book: Book, changes: int = 1) -> Book:
    """The book after `changes` more changes: £1.00 dearer each time, everything else the same."""
    return replace(book, price=round(book.price + changes, 2))


def _urlset(base_url: str, entries: Sequence[tuple[str, str]]) -> bytes:
    urls = "".join(
        f"<url><loc>{_e(base_url + path)}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n'
    ).encode()


def _sitemaps(
    base_url: str, books: Sequence[Book], changed_at: Mapping[str, str]
) -> dict[str, bytes]:
    """An index of two sitemaps: the listing pages (plain) and every book page (gzipped)."""
    updated = "2026-01-01T08:00:00+00:00"
    listings = [("/", updated), ("/catalogue/page-1.html", updated)]
    listings += [(category_path(c), updated) for c in CATEGORIES]
    entries = [(b.path, changed_at.get(b.slug) or book_lastmod(b)) for b in books]
    children = "".join(
        f"<sitemap><loc>{base_url}{path}</loc><lastmod>{updated}</lastmod></sitemap>"
        for path in ("/sitemap-pages.xml", "/sitemap-books.xml.gz")
    )
    index = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex '
        f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{children}</sitemapindex>\n'
    )
    return {
        "/sitemap.xml": index.encode(),
        "/sitemap-pages.xml": _urlset(base_url, listings),
        # mtime=0: the same bytes on every start
        "/sitemap-books.xml.gz": gzip.compress(_urlset(base_url, entries), mtime=0),
    }


def render_site(
    base_url: str, books: Sequence[Book] = CATALOGUE, changed_at: Mapping[str, str] | None = None
) -> dict[str, bytes]:
    """Every page of the site by path; `base_url` is used for the home page's absolute link, and
    in robots.txt's `Sitemap:` line and the sitemaps, which hold absolute URLs.

    `books` is the catalogue in catalogue order, changed or not; `changed_at` maps a changed
    book's slug to the W3C datetime its sitemap entry gives as lastmod.
    """
    home = _home_page(base_url, len(books))
    admin = "<h1>Staff area</h1><p>Stock control. Robots keep out.</p>"
    pages = {"/": home, "/index.html": home, "/admin/index.html": _document("Staff", admin)}
    robots = f"User-agent: *\nDisallow: /admin/\n\nSitemap: {base_url}/sitemap.xml\n"
    pages["/robots.txt"] = robots.encode()
    pages |= _sitemaps(base_url, books, changed_at or {})
    pages |= _listing_pages("All books", books, "/catalogue", "page-1.html", "../catalogue/")
    for category in CATEGORIES:
        shelf = [b for b in books if b.category == category]
        directory = category_path(category).rsplit("/", 1)[0]
        pages |= _listing_pages(category, shelf, directory, "index.html", "../../")
        for i, book in enumerate(shelf):
            related = [shelf[(i + step) % len(shelf)] for step in (1, 2)]
            pages[book.path] = _detail_page(book, related)
    return pages
