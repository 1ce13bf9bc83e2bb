"""The benchmark site: deterministic static catalogue pages over several hosts, and their counts.

    python benchmarks/site.py OUTDIR --pages 3000 --hosts 4 --seed 1

Host ``h`` is served at ``127.0.0.1:(base_port + h)`` from ``OUTDIR/host{h}``; its pages are
``/p/<id>.html`` and its start URL is ``/p/0.html``. ``OUTDIR/expected.json`` holds what a correct
crawl finds: pages (200 responses), items, 404 URLs linked, and the start URLs.

``--endless`` writes the scale-run site instead: one server-side-include template per host that
every ``/e/*.html`` URL serves, whose ``--links-per-page`` links are new URLs on every response
(each SSI echo of nginx's ``$request_id`` is a fresh random id), so a crawl's frontier grows by
that many URLs per page fetched, whatever order the crawler fetches in.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BASE_PORT = 18080
DEFAULT_ENDLESS_LINKS = 100
# The nav menu links the first pages of each host, like category landing pages.
_NAV_PAGES = 12

# fmt: off
_ADJECTIVES = (
    "Sturdy", "Compact", "Vintage", "Modern", "Classic", "Deluxe", "Rustic", "Elegant",
    "Portable", "Quiet", "Bright", "Smart", "Handmade", "Organic", "Premium", "Foldable",
    "Wireless", "Ergonomic", "Durable", "Lightweight",
)
_NOUNS = (
    "Lamp", "Chair", "Kettle", "Backpack", "Blender", "Desk", "Mirror", "Speaker", "Jacket",
    "Teapot", "Clock", "Rug", "Bottle", "Notebook", "Pillow", "Drill", "Headphones", "Umbrella",
    "Skillet", "Toaster",
)
_WORDS = (
    "quality", "design", "everyday", "material", "finish", "comfortable", "easy", "clean",
    "warranty", "shipping", "durable", "colour", "size", "fits", "home", "office", "kitchen",
    "garden", "travel", "gift", "perfect", "includes", "crafted", "steel", "cotton", "wood",
    "glass", "recycled", "packaging", "reliable", "tested", "smooth", "compact", "storage",
    "simple",
)
# fmt: on

_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | Benchmark Store</title>
<link rel="stylesheet" href="/static/site.css">
<style>
body{{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}}
header,footer{{background:#20232a;color:#eee;padding:12px 24px}}
nav ul{{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:12px}}
nav a,footer a{{color:#61dafb;text-decoration:none}}
main{{max-width:1100px;margin:0 auto;padding:16px}}
.products{{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:16px}}
.product{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}}
.product h2{{font-size:1.05em;margin:0 0 6px}}.price{{font-weight:bold;color:#b12704}}
.related li{{margin:2px 0}}.crumbs{{font-size:.9em;color:#666}}
</style>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}
gtag("js",new Date());gtag("config","BENCH-0000");</script>
</head>
<body id="top">
<header><a class="logo" href="{home}">Benchmark Store</a>
<form class="search" action="/search" method="get"><input name="q" placeholder="Search"></form>
</header>
"""

_FOOTER = """<footer>
<p>Benchmark Store is a generated site for crawler benchmarks. Prices include VAT where
applicable. Delivery times are estimates and may vary by region and season. Returns are
accepted within thirty days of delivery for unused items in their original packaging.</p>
<p>&copy; Benchmark Store. All rights reserved. {links}</p>
</footer>
</body>
</html>
"""


@dataclass
class Page:
    """One catalogue page while it is built: the links it holds, resolved to (host, id)."""

    host: int
    id: int
    products: int = 0
    targets: set[tuple[int, int]] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


@dataclass
class SiteSpec:
    """What to generate."""

    pages: int
    hosts: int
    seed: int
    base_port: int = DEFAULT_BASE_PORT
    links_per_page: int | None = None

    def host_pages(self, host: int) -> int:
        return self.pages // self.hosts + (1 if host < self.pages % self.hosts else 0)

    def origin(self, host: int) -> str:
        return f"http://127.0.0.1:{self.base_port + host}"


class _PageWriter:
    """Builds one page's HTML, recording every link so the expected counts come from the graph."""

    def __init__(self, spec: SiteSpec, rng: random.Random, page: Page) -> None:
        self.spec = spec
        self.rng = rng
        self.page = page
        self.links = 1  # the header's logo link

    def href(self, host: int, page_id: int, fragment: str = "") -> str:
        """A link to a page in one of the spellings real sites mix."""
        self.links += 1
        self.page.targets.add((host, page_id))
        fragment = f"#{fragment}" if fragment else ""
        if host != self.page.host:
            return f"{self.spec.origin(host)}/p/{page_id}.html{fragment}"
        spelling = self.rng.randrange(5)
        if spelling == 0:
            return f"{page_id}.html{fragment}"
        if spelling == 1:
            return f"./{page_id}.html{fragment}"
        if spelling == 2:
            return f"../p/{page_id}.html{fragment}"
        if spelling == 3:
            return f"/p/{page_id}.html{fragment}"
        return f"{self.spec.origin(host)}/p/{page_id}.html{fragment}"

    def missing_href(self) -> str:
        """A link to a page that is gone: ids past the host's last page, shared across pages."""
        self.links += 1
        host = self.page.host
        path = f"/p/{self.spec.host_pages(host) + self.rng.randrange(25)}.html"
        self.page.missing.add(f"{self.spec.origin(host)}{path}")
        return path

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(low, high)))


def _nav(w: _PageWriter) -> str:
    host = w.page.host
    count = min(_NAV_PAGES, w.spec.host_pages(host))
    items = "".join(
        f'<li><a href="{w.href(host, i)}">Category {i}</a></li>' for i in range(1, count)
    )
    return f"<nav><ul>{items}</ul></nav>\n"


def _crumbs(w: _PageWriter) -> str:
    page = w.page
    parts = [f'<a href="{w.href(page.host, 0)}">Home</a>']
    if page.id > 0:
        parent = (page.id - 1) // 2
        parts.append(f'<a href="{w.href(page.host, parent)}">Page {parent}</a>')
    return f'<p class="crumbs">{" &rsaquo; ".join(parts)} &rsaquo; Page {page.id}</p>\n'


def _product(w: _PageWriter, sku: int) -> str:
    rng = w.rng
    title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {sku}"
    price = f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
    detail_host = w.page.host
    detail_id = rng.randrange(w.spec.host_pages(detail_host))
    href = w.href(detail_host, detail_id, fragment=f"sku-{sku}")
    w.page.products += 1
    return (
        f'<div class="product" data-sku="{sku}">\n'
        f'<img src="/img/{sku}.jpg" alt="{title}" width="200" height="200" loading="lazy">\n'
        f'<h2 class="title">{title}</h2>\n'
        f'<p class="desc">{w.words(40, 70)}.</p>\n'
        f'<span class="price">{price}</span> <span class="stock">In stock</span>\n'
        f'<a class="detail" href="{href}">View details</a>\n'
        "</div>\n"
    )


def _related(w: _PageWriter, budget: int) -> str:
    """Filler links: same-host, cross-host, fragment duplicates and a few 404s."""
    spec, rng, page = w.spec, w.rng, w.page
    items = []
    for _ in range(budget):
        roll = rng.random()
        if roll < 0.02:
            href = w.missing_href()
        else:
            host = rng.randrange(spec.hosts) if roll < 0.30 else page.host
            target = rng.randrange(spec.host_pages(host))
            fragment = rng.choice(("reviews", "specs", "")) if roll > 0.85 else ""
            href = w.href(host, target, fragment)
        items.append(f'<li><a href="{href}">{w.words(2, 4).title()}</a></li>')
    return f'<section class="related"><h3>Related</h3><ul>{"".join(items)}</ul></section>\n'


def render_page(spec: SiteSpec, rng: random.Random, page: Page, first_sku: int) -> str:
    """One catalogue page; ``page`` collects its link targets as a side effect."""
    w = _PageWriter(spec, rng, page)
    total_links = spec.links_per_page or rng.randint(30, 60)
    head = _HEAD.format(title=f"Page {page.id}", home="/p/0.html")
    nav = _nav(w) + _crumbs(w)
    products = "".join(_product(w, first_sku + i) for i in range(rng.randint(10, 20)))
    # The "next" and the two child links make every page reachable from page 0.
    count = spec.host_pages(page.host)
    pager = [
        f'<a class="{rel}" href="{w.href(page.host, i)}">{label}</a>'
        for rel, label, i in (
            ("next", "Next", page.id + 1),
            ("child", "More", 2 * page.id + 1),
            ("child", "Even more", 2 * page.id + 2),
        )
        if i < count
    ]
    footer_links = f'<a href="{w.href(page.host, 0)}">Home</a> <a href="#top">Back to top</a>'
    w.links += 1  # "#top"
    related = _related(w, max(0, total_links - w.links))
    footer = _FOOTER.format(links=footer_links)
    return (
        f"{head}{nav}<main>\n<h1>Page {page.id}</h1>\n"
        f'<div class="products">\n{products}</div>\n'
        f'<div class="pager">{" ".join(pager)}</div>\n{related}</main>\n{footer}'
    )


def _reachable(spec: SiteSpec, pages: dict[tuple[int, int], Page]) -> set[tuple[int, int]]:
    seen = {(h, 0) for h in range(spec.hosts)}
    queue = deque(seen)
    while queue:
        for target in pages[queue.popleft()].targets:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def generate(spec: SiteSpec, outdir: Path) -> dict[str, Any]:
    """Write the catalogue site to ``outdir`` and return (and write) its expected counts."""
    if spec.hosts < 1 or spec.pages < spec.hosts:
        raise ValueError("need at least one host and at least one page per host")
    rng = random.Random(spec.seed)
    pages: dict[tuple[int, int], Page] = {}
    sku = 0
    for host in range(spec.hosts):
        directory = outdir / f"host{host}" / "p"
        directory.mkdir(parents=True, exist_ok=True)
        for page_id in range(spec.host_pages(host)):
            page = Page(host, page_id)
            html = render_page(spec, rng, page, sku)
            sku += page.products
            (directory / f"{page_id}.html").write_text(html, encoding="utf-8")
            pages[host, page_id] = page
    reachable = _reachable(spec, pages)
    missing = set().union(*(pages[key].missing for key in reachable))
    expected = {
        "kind": "catalogue",
        "pages": len(reachable),
        "items": sum(pages[key].products for key in reachable),
        "not_found": len(missing),
        "start_urls": [f"{spec.origin(h)}/p/0.html" for h in range(spec.hosts)],
        "hosts": spec.hosts,
        "base_port": spec.base_port,
        "seed": spec.seed,
        "links_per_page": spec.links_per_page,
    }
    if len(reachable) != spec.pages:
        raise AssertionError(f"{spec.pages - len(reachable)} pages are unreachable")
    (outdir / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def generate_endless(
    hosts: int, links_per_page: int, base_port: int, outdir: Path
) -> dict[str, Any]:
    """Write the scale-run site: a template per host whose links are fresh on every response."""
    # SSI gives every echo of $request_id a fresh random id; the index suffix is belt and braces.
    link = '<li><a href="/e/<!--# echo var="request_id" -->-{i}.html">Listing {i}</a></li>'
    body = "".join(link.format(i=i) for i in range(links_per_page))
    html = (
        _HEAD.format(title="Listing", home="/e/start.html")
        + f'<main><h1>Listing</h1><ul class="listing">{body}</ul></main>\n'
        + _FOOTER.format(links="")
    )
    for host in range(hosts):
        (outdir / f"host{host}").mkdir(parents=True, exist_ok=True)
        (outdir / f"host{host}" / "e.html").write_text(html, encoding="utf-8")
    expected = {
        "kind": "endless",
        "links_per_page": links_per_page,
        "start_urls": [f"http://127.0.0.1:{base_port + h}/e/start.html" for h in range(hosts)],
        "hosts": hosts,
        "base_port": base_port,
    }
    (outdir / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument(
        "--links-per-page",
        type=int,
        default=None,
        help="links on every page (default: 30-60 on catalogue pages, "
        f"{DEFAULT_ENDLESS_LINKS} with --endless)",
    )
    parser.add_argument("--endless", action="store_true", help="write the scale-run site")
    args = parser.parse_args(argv)
    if args.endless:
        links = args.links_per_page or DEFAULT_ENDLESS_LINKS
        expected = generate_endless(args.hosts, links, args.base_port, args.outdir)
    else:
        spec = SiteSpec(args.pages, args.hosts, args.seed, args.base_port, args.links_per_page)
        expected = generate(spec, args.outdir)
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
