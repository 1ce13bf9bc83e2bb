"""Unit tests of crawler.encoding: the order BOM > Content-Type > <meta> > sniff, the HTML prescan,
the standard's labels and decoders; and a crawl of a windows-1252 page labelled latin-1."""

import codecs
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webencodings.labels import LABELS

from crawler import Request, Response, Spider
from crawler.encoding import decode, detect_encoding, lookup, prescan
from tests.crawling import crawl
from tests.site import TestSite

CURLY = b"\x93quoted\x94 \x96 \x80 caf\xe9"  # windows-1252 bytes latin-1 has no letters for
CURLY_TEXT = "\u201cquoted\u201d \u2013 \u20ac caf\u00e9"


def _text(content_type: str | None, body: bytes) -> str:
    return decode(body, detect_encoding(content_type, body))


def _declared(body: bytes) -> str | None:
    found = prescan(body)
    return found.name if found else None


# --- the order of the evidence --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "encoding", "text"),
    [
        ("text/html; charset=iso-8859-2", codecs.BOM_UTF8 + "č".encode(), "utf-8", "č"),
        (
            "text/html; charset=utf-8",
            codecs.BOM_UTF16_LE + "č".encode("utf-16-le"),
            "utf-16-le",
            "č",
        ),
        ("text/html", codecs.BOM_UTF16_BE + "č".encode("utf-16-be"), "utf-16-be", "č"),
        (
            None,
            codecs.BOM_UTF8 + b"<meta charset=koi8-r>\xc3\xa9",
            "utf-8",
            "<meta charset=koi8-r>é",
        ),
    ],
)
def test_a_bom_outranks_header_and_meta_and_is_dropped(
    content_type: str | None, body: bytes, encoding: str, text: str
) -> None:
    assert detect_encoding(content_type, body) == encoding
    assert _text(content_type, body) == text


def test_the_header_outranks_meta() -> None:
    body = b"<meta charset=utf-8><p>\xcf\xf0"
    assert detect_encoding("text/html; charset=windows-1251", body) == "cp1251"
    assert _text("text/html; charset=windows-1251", body).endswith("<p>Пр")


def test_an_unknown_header_label_leaves_meta_then_the_sniff_to_decide() -> None:
    assert detect_encoding("text/html; charset=x-no-such", b"<meta charset=koi8-r>") == "koi8-r"
    assert detect_encoding("text/html; charset=x-no-such", "\u00e9".encode()) == "utf-8"
    assert detect_encoding("text/html; charset=x-no-such", b"caf\xe9") == "cp1252"


@pytest.mark.parametrize(
    ("content_type", "body", "encoding"),
    [
        (None, "caf\u00e9 \u2603".encode(), "utf-8"),  # UTF-8 sequences and no invalid ones
        (None, b"caf\xe9", "cp1252"),
        (None, b"caf\xc3\xa9 \xe9", "cp1252"),
        # ASCII reads the same either way; windows-1252 is the standard's default.
        ("text/html", b"<p>plain</p>", "cp1252"),
        (None, b"", "cp1252"),
        # JSON and XML are UTF-8 unless they say otherwise.
        ("application/json", b'{"a": 1}', "utf-8"),
        ("application/ld+json", b'{"a": 1}', "utf-8"),
        ("application/rss+xml", b"<rss/>", "utf-8"),
    ],
)
def test_the_sniff_when_nothing_is_declared(
    content_type: str | None, body: bytes, encoding: str
) -> None:
    assert detect_encoding(content_type, body) == encoding


# --- <meta> and XML declarations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (b"<meta charset=koi8-r>", "koi8-r"),
        (b"<META CHARSET='KOI8-R'>", "koi8-r"),
        (b'<meta charset="\n koi8-r \n">', "koi8-r"),
        (b"<meta/charset=koi8-r>", "koi8-r"),
        (b"<meta charset=bogus><meta charset=koi8-r>", "koi8-r"),
        (b"<meta charset=koi8-r charset=iso-8859-2>", "koi8-r"),  # the first of a name counts
        (b"<metacharset=koi8-r>", None),
        (b"</meta charset=koi8-r>", None),
        (b"<meta charset=koi8-r", None),  # a tag the body ends inside declares nothing
        (b'<meta charset="koi8-r>', None),
        (b"<!-- <meta charset=koi8-r> --><meta charset=iso-8859-2>", "iso-8859-2"),
        (b"<!--><meta charset=koi8-r>", "koi8-r"),  # "<!-->" is a whole comment
        (b"<!-- <meta charset=koi8-r>", None),
        (b'<p title="x><meta charset=koi8-r>">', None),  # inside another tag's attribute
        (b'<p title="x>"><meta charset=koi8-r>', "koi8-r"),
        (b"<script>document.write('<meta charset=\"koi8-r\">')</script>", "koi8-r"),
    ],
)
def test_the_prescan_reads_markup_as_the_html_standard_does(
    body: bytes, declared: str | None
) -> None:
    assert _declared(body) == declared


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">', "koi8-r"),
        (b"<meta content='text/html;charset=\"koi8-r\"' http-equiv=content-type>", "koi8-r"),
        (b'<meta content="text/html; charset=koi8-r">', None),  # no pragma
        (b'<meta http-equiv="refresh" content="text/html; charset=koi8-r">', None),
        (b'<meta http-equiv="Content-Type " content="text/html; charset=koi8-r">', None),
        (b'<meta http-equiv=content-type content="charset=\'koi8-r">', None),  # quote left open
        (b'<meta http-equiv=content-type content="x; charset=bogus">', None),
        # The charset attribute outranks content, and needs no pragma.
        (b'<meta content="text/html; charset=koi8-r" charset=iso-8859-2>', "iso-8859-2"),
    ],
)
def test_http_equiv_content_type(body: bytes, declared: str | None) -> None:
    assert _declared(body) == declared


@pytest.mark.parametrize(
    ("label", "encoding"),
    [
        ("utf-16", "utf-8"),
        ("UTF-16LE", "utf-8"),
        ("utf-16be", "utf-8"),
        ("x-user-defined", "cp1252"),
    ],
)
def test_a_meta_read_as_ascii_cannot_mean_utf16_nor_x_user_defined(
    label: str, encoding: str
) -> None:
    body = f'<meta charset="{label}"><p>caf'.encode() + b"\xc3\xa9"
    assert detect_encoding(None, body) == encoding


def test_a_late_meta_is_found_while_the_markup_could_be_a_head() -> None:
    script = b"<script>var tag = '<div>' + (a < b);</script>" * 200  # 9 KiB of inline script
    head = (
        b"<!doctype html><html><head><title>t</title>" + script + b"<!-- " + b"x" * 8192 + b" -->"
    )
    body = head + b"<meta charset=windows-1251></head><body><p>\xcf</p>"
    assert detect_encoding("text/html", body) == "cp1251"
    assert _text("text/html", body).endswith("<p>П</p>")
    # Past the first kilobyte a script is text, as to a browser: a <meta> in it is no declaration.
    quoted = b"<head><script>" + b"x" * 2000 + b"'<meta charset=koi8-r>'</script><meta charset=l2>"
    assert _declared(quoted) == "iso-8859-2"


def test_past_the_first_kilobyte_a_meta_after_body_content_is_not_looked_for() -> None:
    assert _declared(b"<p>text</p><meta charset=koi8-r>") == "koi8-r"  # in the first 1024 bytes
    late = b"<html><head></head><body><p>" + b"x" * 2000 + b"</p><meta charset=koi8-r>"
    assert _declared(late) is None
    huge_head = b"<head><style>" + b"p{}" * 30_000 + b"</style><meta charset=koi8-r>"
    assert len(huge_head) > 64 * 1024
    assert _declared(huge_head) is None


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "text/css", "application/javascript"]
)
def test_bodies_that_are_not_html_are_not_prescanned(content_type: str) -> None:
    body = b'{"html": "<meta charset=koi8-r>", "name": "caf\xc3\xa9"}'
    assert detect_encoding(content_type, body) == "utf-8"


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/xml", "cp1251"),
        ("text/xml", "cp1251"),
        ("application/atom+xml", "cp1251"),
        (None, "cp1251"),
        ("text/html", "cp1252"),  # HTML ignores an XML declaration
    ],
)
def test_an_xml_declaration_names_the_encoding_of_xml(
    content_type: str | None, encoding: str
) -> None:
    body = b"<?xml version='1.0' encoding=\"windows-1251\"?><a>\xcf</a>"
    assert detect_encoding(content_type, body) == encoding
    xml_utf16 = b'<?xml version="1.0" encoding="UTF-16"?><a/>'  # read as ASCII: not UTF-16
    assert detect_encoding("application/xml", xml_utf16) == "utf-8"


# --- labels and decoders ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["iso-8859-1", "ISO_8859-1:1987", "latin1", "l1", "us-ascii", "ascii", "windows-1252"]
)
def test_latin1_and_ascii_labels_mean_windows_1252(label: str) -> None:
    assert detect_encoding(f"text/html; charset={label}", CURLY) == "cp1252"
    assert _text(f"text/html; charset={label}", CURLY) == CURLY_TEXT


def test_windows_single_byte_encodings_map_bytes_python_leaves_undefined_to_c1_controls() -> None:
    # The standard's windows-125x indexes give 0x81 etc. the C1 control of the same number;
    # Python's cp125x codecs make them errors. We follow the standard: no byte of a windows
    # page turns into U+FFFD, so a page round-trips through text.
    assert decode(b"\x81\x8d\x8f\x90\x9d", "cp1252") == "\x81\x8d\x8f\x90\x9d"
    for label in ("windows-874", "windows-1250", "windows-1251", "windows-1253", "windows-1258"):
        found = lookup(label)
        assert found is not None
        assert "\ufffd" not in found.decode(bytes(range(0x80, 0xA0))), label


@pytest.mark.parametrize(
    ("labels", "codec", "body", "text"),
    [
        (("gb2312", "gbk", "chinese", "x-gbk"), "gbk", "中文镕".encode("gbk"), "中文镕"),
        (("gbk", "gb18030"), None, "𠀀".encode("gb18030") + b"\x80", "𠀀€"),  # 4 bytes; euro
        (("big5", "big5-hkscs", "x-x-big5"), "big5hkscs", "中文嘅".encode("big5hkscs"), "中文嘅"),
        (("shift_jis", "sjis", "x-sjis", "windows-31j"), "cp932", "①㈱".encode("cp932"), "①㈱"),
        (("euc-kr", "ks_c_5601-1987", "korean"), "cp949", "한국어똠".encode("cp949"), "한국어똠"),
        (("windows-874", "dos-874", "iso-8859-11", "tis-620"), "cp874", b"\xa1\x80", "ก€"),
        (("iso-8859-9", "latin5"), "cp1254", b"\x80\xd0", "€Ğ"),
        (("koi8-u", "koi8-ru"), "koi8-u", b"\xae\xbe", "ўЎ"),
        (("windows-1255", "cp1255"), "cp1255", b"\xca\xe0", "\u05ba\u05d0"),
        (("iso-8859-8-i", "logical"), "iso8859-8", b"\xe0", "\u05d0"),
        (("x-mac-cyrillic", "x-mac-ukrainian"), "mac-cyrillic", b"\x80", "\u0410"),
        (("macintosh", "mac"), "mac-roman", b"\x80", "Ä"),
        (("euc-jp",), "euc_jp", "日本語かな".encode("euc_jp"), "日本語かな"),
        (("iso-2022-jp",), "iso2022_jp", "日本語".encode("iso2022_jp"), "日本語"),
    ],
)
def test_labels_resolve_to_the_standards_decoders(
    labels: tuple[str, ...], codec: str | None, body: bytes, text: str
) -> None:
    for label in labels:
        content_type = f"text/html; charset={label}"
        if codec is not None:
            assert detect_encoding(content_type, body) == codec, label
        assert _text(content_type, body) == text, label


@pytest.mark.parametrize(
    "label", ["replacement", "iso-2022-kr", "csiso2022kr", "hz-gb-2312", "iso-2022-cn-ext"]
)
def test_the_replacement_encoding_decodes_a_body_to_one_error(label: str) -> None:
    # The standard's guard against encodings whose escapes smuggle markup past a filter.
    assert detect_encoding(f"text/html; charset={label}", b"a") == "replacement"
    assert _text(f"text/html; charset={label}", b"<p>\x1b$)C\x0e!!</p>") == "\ufffd"
    assert _text(f"text/html; charset={label}", b"") == ""
    assert detect_encoding(None, f"<meta charset={label}>".encode()) == "replacement"


def test_x_user_defined_maps_high_bytes_to_the_private_use_area() -> None:
    assert detect_encoding("text/html; charset=x-user-defined", b"") == "x-user-defined"
    assert _text("text/html; charset=x-user-defined", b"A\x80\xff") == "A\uf780\uf7ff"


def test_every_label_of_the_standard_resolves_and_its_codec_name_leads_back() -> None:
    every_byte = bytes(range(256))
    for label, name in LABELS.items():
        found = lookup(label.upper())
        assert found is not None, label
        assert found.name == name
        if name not in ("replacement", "x-user-defined"):
            codecs.lookup(found.codec)  # Response.encoding stays a Python codec name
        assert decode(every_byte, found.codec) == found.decode(every_byte), label
    assert lookup("no-such-label") is None
    assert lookup(" \tutf8\n") == lookup("UTF-8")


# --- through Response and a crawl --------------------------------------------------------------


def test_response_text_follows_an_encoding_set_by_hand() -> None:
    url = "http://example.com/"
    headers = httpx.Headers({"content-type": "text/html; charset=utf-8"})
    response = Response(url, 200, headers, b"\xcf\x93", request=Request(url))
    response.encoding = "cp1251"
    assert response.text == "П“"
    other = Response(url, 200, headers, b"\xcf\x93", request=Request(url))
    other.encoding = "latin-1"  # not a label of the standard: Python's codec decodes
    assert other.text == "\xcf\x93"


async def test_a_windows_1252_page_labelled_latin1_yields_the_right_items(
    site: TestSite, tmp_path: Path
) -> None:
    class Deals(Spider):
        name = "deals"
        start_urls = (site.url("/charset/windows-1252"),)

        async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
            title, price = response.css_first("h1"), response.css_first("p")
            assert title is not None
            assert price is not None
            yield {"title": title.text(), "price": price.text(), "encoding": response.encoding}

    result = await crawl(Deals, tmp_path, obey_robots=False)

    assert result.items == [
        {"title": "Café “deals”", "price": "€5 \u2013 €9… \u2018now\u2019", "encoding": "cp1252"}
    ]
