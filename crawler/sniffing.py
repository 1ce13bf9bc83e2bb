"""What a response body is (HTML, XML, plain text or binary): its Content-Type, or a sniff of its
first bytes when the type is missing. A small cousin of the WHATWG MIME sniffing standard."""

from __future__ import annotations

import codecs
import enum


class BodyKind(enum.StrEnum):
    """The kind of a response body, which decides whether it is parsed as markup.

    HTML and XML are markup: selectolax parses them (XML with the HTML parser, which is enough
    to select elements of a sitemap or a feed). Text (plain text, JSON, CSS, scripts) and binary
    files (images, PDF, archives, media) are never parsed.
    """

    HTML = "html"
    XML = "xml"
    TEXT = "text"
    BINARY = "binary"

    @property
    def is_markup(self) -> bool:
        return self in (BodyKind.HTML, BodyKind.XML)


SNIFF_BYTES = 512  # browsers look at this much of a body; so do we
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_XML_TYPES = frozenset({"text/xml", "application/xml"})
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/ld+json",
    }
)
# Types that say nothing: a body served with them is sniffed as if it had no type.
_UNKNOWN_TYPES = frozenset({"", "unknown/unknown", "application/unknown", "*/*"})
_SIGNATURES = (
    b"%PDF-",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",  # JPEG
    b"PK\x03\x04",  # ZIP, and the office formats built on it
    b"\x1f\x8b\x08",  # gzip
)
# Control bytes no text file holds (tab, newline, form feed, carriage return and ESC are text).
_BINARY_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0c\r\x1b")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_WHITESPACE = b" \t\n\x0c\r"


def mime_type(content_type: str | None) -> str:
    """The type/subtype of a Content-Type header, lowercased, without parameters."""
    return (content_type or "").partition(";")[0].strip().lower()


def body_kind(content_type: str | None, body: bytes) -> BodyKind:
    """The kind of a body, from its declared type; sniffed when the type is missing or says
    nothing. A body that starts with the signature of a binary format is binary whatever its
    type claims, so a PNG served as text/html is not parsed.

    >>> body_kind("text/html; charset=utf-8", b"<p>hi")
    <BodyKind.HTML: 'html'>
    >>> body_kind(None, b"%PDF-1.7 ...")
    <BodyKind.BINARY: 'binary'>
    """
    if body.startswith(_SIGNATURES):
        return BodyKind.BINARY
    essence = mime_type(content_type)
    if essence in _UNKNOWN_TYPES:
        return sniff(body)
    if essence in _HTML_TYPES:
        return BodyKind.HTML
    if essence in _XML_TYPES or essence.endswith("+xml"):
        return BodyKind.XML
    if essence.startswith("text/") or essence in _TEXT_TYPES or essence.endswith("+json"):
        return BodyKind.TEXT
    return BodyKind.BINARY


def sniff(body: bytes) -> BodyKind:
    """The kind of a body served without a type, from its first 512 bytes."""
    head = body[:SNIFF_BYTES]
    if head.startswith(_UTF16_BOMS):
        head = head.decode("utf-16", "replace").encode("utf-8", "replace")
    head = head.removeprefix(codecs.BOM_UTF8).lstrip(_WHITESPACE)
    if head.startswith(_SIGNATURES):
        return BodyKind.BINARY
    if head[:5].lower() == b"<?xml":
        return BodyKind.XML
    if head.startswith(b"<"):
        return BodyKind.HTML
    if len(head.translate(None, _BINARY_BYTES)) < len(head):
        return BodyKind.BINARY
    return BodyKind.TEXT
