"""Reading sitemaps: urlsets, indexes, gzip, namespaces, the protocol's caps, and hostile XML
(entity bombs, external entities, a gzip bomb, broken XML) failing cleanly."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from crawler.errors import SitemapError
from crawler.sitemaps import (
    MAX_SITEMAP_URLS,
    Sitemap,
    SitemapEntry,
    parse_lastmod,
    sitemap_urls_from_robots,
)

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
XHTML = 'xmlns:xhtml="http://www.w3.org/1999/xhtml"'


def urlset(*urls: str, attrs: str = NS) -> bytes:
    return f'<?xml version="1.0"?><urlset {attrs}>{"".join(urls)}</urlset>'.encode()


def read(body: bytes, **caps: int) -> tuple[Sitemap, list[SitemapEntry]]:
    sitemap = Sitemap(body, url="http://example.com/sitemap.xml", **caps)
    return sitemap, list(sitemap)


def test_a_urlset_entry_has_every_field() -> None:
    sitemap, entries = read(
        urlset(
            "<url><loc> https://example.com/a </loc><lastmod>2024-05-01T10:20:30+02:00</lastmod>"
            "<changefreq>daily</changefreq><priority>0.8</priority></url>",
            "<url><loc>https://example.com/b</loc></url>",
        )
    )
    assert sitemap.type == "urlset"
    assert entries == [
        {
            "loc": "https://example.com/a",
            "lastmod": datetime(2024, 5, 1, 10, 20, 30, tzinfo=timezone(timedelta(hours=2))),
            "changefreq": "daily",
            "priority": 0.8,
            "alternate": [],
            "hreflang": {},
        },
        {
            "loc": "https://example.com/b",
            "lastmod": None,
            "changefreq": None,
            "priority": None,
            "alternate": [],
            "hreflang": {},
        },
    ]


def test_an_index_lists_its_sitemaps() -> None:
    body = (
        f"<sitemapindex {NS}><sitemap><loc>https://example.com/s1.xml.gz</loc>"
        "<lastmod>2024-01-01</lastmod></sitemap>"
        "<sitemap><loc>https://example.com/s2.xml</loc></sitemap></sitemapindex>"
    ).encode()
    sitemap, entries = read(body)
    assert sitemap.type == "sitemapindex"
    assert [(e["loc"], e["lastmod"]) for e in entries] == [
        ("https://example.com/s1.xml.gz", datetime(2024, 1, 1, tzinfo=UTC)),
        ("https://example.com/s2.xml", None),
    ]


def test_alternate_links_with_their_languages() -> None:
    _, [entry] = read(
        urlset(
            "<url><loc>https://example.com/en</loc>"
            '<xhtml:link rel="alternate" hreflang="de" href="https://example.com/de"/>'
            '<xhtml:link rel="alternate" hreflang="fr" href="https://example.com/fr"/>'
            '<xhtml:link rel="canonical" href="https://example.com/c"/></url>',
            attrs=f"{NS} {XHTML}",
        )
    )
    assert entry["alternate"] == ["https://example.com/de", "https://example.com/fr"]
    assert entry["hreflang"] == {"de": "https://example.com/de", "fr": "https://example.com/fr"}


@pytest.mark.parametrize(
    "attrs",
    [
        "",  # no namespace at all
        'xmlns="http://www.google.com/schemas/sitemap/0.84"',  # an old one
        'xmlns:s="http://www.sitemaps.org/schemas/sitemap/0.9"',  # prefixed (tags below too)
    ],
)
def test_any_namespace_or_none_is_read(attrs: str) -> None:
    prefix = "s:" if "xmlns:s" in attrs else ""
    body = (
        f"<{prefix}urlset {attrs}><{prefix}url><{prefix}loc>https://example.com/</{prefix}loc>"
        f"</{prefix}url></{prefix}urlset>"
    ).encode()
    assert [e["loc"] for e in read(body)[1]] == ["https://example.com/"]


def test_entries_without_a_loc_are_skipped_and_bad_priorities_dropped() -> None:
    _, entries = read(
        urlset(
            "<url><lastmod>2024-01-01</lastmod></url>",
            "<url><loc>  </loc></url>",
            "<url><loc>https://example.com/</loc><priority>high</priority></url>",
            "<url><loc>https://example.com/2</loc><priority>7</priority></url>",
        )
    )
    assert [(e["loc"], e["priority"]) for e in entries] == [
        ("https://example.com/", None),
        ("https://example.com/2", None),
    ]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-06", datetime(2024, 5, 6, tzinfo=UTC)),
        ("2024-05-06T07:08Z", datetime(2024, 5, 6, 7, 8, tzinfo=UTC)),
        ("2024-05-06T07:08:09.5+00:00", datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)),
        ("2024-13", "2024-13"),
        ("last tuesday", "last tuesday"),
    ],
)
def test_lastmod_is_a_datetime_when_it_is_one(text: str, parsed: datetime | str) -> None:
    assert parse_lastmod(text) == parsed


def test_a_gzipped_sitemap_is_read_like_a_plain_one() -> None:
    body = urlset("<url><loc>https://example.com/</loc></url>")
    assert read(gzip.compress(body))[1] == read(body)[1]


def test_urls_past_the_cap_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    body = urlset(*(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(12)))
    sitemap, entries = read(body, max_urls=10)
    assert [e["loc"] for e in entries] == [f"https://example.com/{i}" for i in range(10)]
    assert sitemap.count == 10
    assert "entries past 10 dropped" in caplog.text


def test_the_protocol_caps_50000_urls() -> None:
    body = urlset(*(f"<url><loc>/{i}</loc></url>" for i in range(MAX_SITEMAP_URLS + 5)))
    assert len(read(body)[1]) == MAX_SITEMAP_URLS == 50_000


def test_a_sitemap_over_the_size_cap_fails_after_what_came_before() -> None:
    sitemap = Sitemap(
        urlset(*["<url><loc>https://example.com/</loc></url>"] * 1000), max_bytes=4096
    )
    entries = []
    with pytest.raises(SitemapError, match="over 4096 bytes uncompressed"):
        entries.extend(sitemap)
    assert 0 < len(entries) < 1000


def gzip_of(head: bytes, filler: bytes, size: int) -> bytes:
    """A gzip member of ``head`` then ``size`` bytes of ``filler``: a few kB inflating to GBs."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = filler * (1 << 20 // len(filler))
    parts = [packer.compress(head)]
    parts += [packer.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + packer.flush()


def test_a_gzip_bomb_stops_at_the_size_cap_without_inflating_it() -> None:
    head = f"<urlset {NS}><url><loc>https://example.com/</loc></url>".encode()
    bomb = gzip_of(head, b" ", 128 << 20)
    assert len(bomb) < 1 << 20  # 128 MB of spaces, packed
    tracemalloc.start()
    try:
        with pytest.raises(SitemapError, match="over 8388608 bytes uncompressed"):
            read(bomb, max_bytes=8 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Inflated a read at a time: what is held is the cap's worth of text at most (expat keeps
    # a text run until its next tag), not the 128 MB.
    assert peak < 12 << 20


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(urlset("<url><loc>https://example.com/</loc></url>"))[:-12],
        b"\x1f\x8b\x08\x00garbage that is not deflate data",
    ],
    ids=["truncated", "corrupt"],
)
def test_bad_gzip_fails_cleanly(body: bytes) -> None:
    with pytest.raises(SitemapError, match="gzip"):
        read(body)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset><url><loc>&lol9;</loc></url></urlset>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>https://example.com/&secret;</loc></url></urlset>"""

EXTERNAL_PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<urlset><url><loc>https://example.com/</loc></url></urlset>"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_PARAMETER_ENTITY, gzip.compress(BILLION_LAUGHS)],
    ids=["billion-laughs", "external-entity", "external-parameter-entity", "gzipped-laughs"],
)
def test_entity_declarations_fail_cleanly(body: bytes) -> None:
    with pytest.raises(SitemapError, match="Forbidden"):
        read(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "no element found"),
        (b"<urlset><url><loc>https://example.com/</loc>", "no element found"),
        (b"<urlset><url></urlset>", "mismatched tag"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not a sitemap's root"),
        (b"\x00\x01binary", "not well-formed"),
    ],
)
def test_malformed_xml_fails_cleanly(body: bytes, match: str) -> None:
    with pytest.raises(SitemapError, match=match):
        read(body)


def test_robots_txt_sitemap_lines_are_found_and_made_absolute() -> None:
    robots = (
        "User-agent: *\nDisallow: /private/\n"
        "Sitemap: https://example.com/sitemap.xml\n"
        "  sitemap:/news-sitemap.xml.gz\n"
        "# Sitemap: https://example.com/commented.xml\n"
        "SITEMAP : https://cdn.example.net/s.xml\n"
    )
    assert sitemap_urls_from_robots(robots, "https://example.com/robots.txt") == [
        "https://example.com/sitemap.xml",
        "https://example.com/news-sitemap.xml.gz",
        "https://cdn.example.net/s.xml",
    ]
