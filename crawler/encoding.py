"""Which encoding a response body is in, and its text, as browsers decide: the WHATWG Encoding
Standard's labels and decoders, in the HTML standard's order (BOM, Content-Type, ``<meta>``).

>>> detect_encoding("text/html; charset=iso-8859-1", b"caf\\xe9 \\x93")  # a latin-1 label...
'cp1252'
>>> decode(b"caf\\xe9 \\x93", "cp1252")  # ...means windows-1252 on the web
'café \u201c'
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import webencodings
from webencodings.labels import LABELS

__all__ = [
    "BOMS",
    "Encoding",
    "bom_encoding",
    "decode",
    "detect",
    "detect_encoding",
    "lookup",
    "prescan",
    "xml_declared",
]


@dataclass(frozen=True, slots=True)
class Encoding:
    """A WHATWG encoding: its ``name`` in the standard (lower-cased, as webencodings spells
    it), the Python ``codec`` name callers see as ``Response.encoding`` ("cp1252", "gbk",
    "cp932"), its byte order mark if it has one, and its decoder."""

    name: str
    codec: str
    bom: bytes
    decode: Callable[[bytes], str]


_BOMS = {
    "utf-8": codecs.BOM_UTF8,
    "utf-16le": codecs.BOM_UTF16_LE,
    "utf-16be": codecs.BOM_UTF16_BE,
}

# WHATWG's GBK decoder *is* its gb18030 decoder; Python's gbk codec rejects the 4-byte forms.
_DECODE_AS = {"gbk": "gb18030"}
# The standard's encodings that are not single-byte ones (each of those is a table over bytes).
_MULTI_BYTE = frozenset(
    {"utf-8", "utf-16le", "utf-16be", "gbk", "gb18030", "big5", "euc-jp", "iso-2022-jp"}
    | {"shift_jis", "euc-kr", "replacement", "x-user-defined"}
)
# Not ASCII-compatible, or ASCII bytes are escapes: no shortcut for an all-ASCII body.
_NO_ASCII_SHORTCUT = frozenset({"utf-16le", "utf-16be", "iso-2022-jp", "replacement"})
# The three bytes where a WHATWG single-byte index differs from Python's codec other than by
# Python leaving a C1 byte undefined (index-koi8-u.txt, index-windows-1255.txt).
_INDEX_FIXES = {"koi8-u": {0xAE: "\u045e", 0xBE: "\u040e"}, "windows-1255": {0xCA: "\u05ba"}}


def _gb18030_errors(error: UnicodeError) -> tuple[str, int]:
    """Python's gb18030 codec, corrected: the standard reads a lone 0x80 as the euro sign, as
    Windows' code page 936 writes it; any other error is one U+FFFD, like "replace"."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    if error.object[error.start] == 0x80:
        return "\u20ac", error.start + 1
    return "\ufffd", error.end


_GB18030_ERRORS = "crawler.encoding.gb18030"
codecs.register_error(_GB18030_ERRORS, _gb18030_errors)


def _single_byte_decoder(codec: codecs.CodecInfo, fixes: dict[int, str]) -> Callable[[bytes], str]:
    """A charmap decoder from Python's codec, made to agree with the standard's index: a byte in
    0x80-0x9F that Python leaves undefined is the C1 control of that number (as every windows-*
    index has it); other undefined bytes stay errors."""
    chars = []
    for byte in range(256):
        try:
            char = codec.decode(bytes((byte,)))[0]
        except UnicodeDecodeError:
            char = chr(byte) if 0x80 <= byte <= 0x9F else "\ufffe"  # charmap's "undefined"
        chars.append(fixes.get(byte, char))
    table = "".join(chars)
    return lambda data: codecs.charmap_decode(data, "replace", table)[0]


def _decoder(name: str, codec: codecs.CodecInfo) -> Callable[[bytes], str]:
    if name == "replacement":
        # The standard's guard against ISO-2022-KR/CN and HZ: the whole body is one error.
        return lambda data: "\ufffd" if data else ""
    if name == "utf-8":
        return lambda data: data.decode("utf-8", "replace")
    if name not in _MULTI_BYTE:
        decoder = _single_byte_decoder(codec, _INDEX_FIXES.get(name, {}))
    elif name == "x-user-defined":
        decoder = lambda data: codec.decode(data, "replace")[0]  # noqa: E731
    else:
        python_name = _DECODE_AS.get(name, codec.name)
        errors = _GB18030_ERRORS if python_name == "gb18030" else "replace"
        decoder = lambda data: data.decode(python_name, errors)  # noqa: E731
    if name in _NO_ASCII_SHORTCUT:
        return decoder
    # ASCII is the same bytes in all the others, and Python's ASCII decoder is the fastest.
    return lambda data: data.decode("ascii") if data.isascii() else decoder(data)


@cache
def _encoding(name: str) -> Encoding:
    found = webencodings.lookup(name)
    if found is None:
        raise LookupError(name)
    codec = found.codec_info
    return Encoding(name, codec.name, _BOMS.get(name, b""), _decoder(name, codec))


@lru_cache(maxsize=1024)
def lookup(label: str) -> Encoding | None:
    """The standard's "get an encoding": ``lookup(" Latin1 ").name == "windows-1252"``; None
    for a label it does not know."""
    found = webencodings.lookup(label)
    return _encoding(found.name) if found is not None else None


_UTF8 = _encoding("utf-8")
_WINDOWS_1252 = _encoding("windows-1252")
_BY_BOM = {bom: _encoding(name) for name, bom in _BOMS.items()}
_BOM_LEADS = frozenset(bom[0] for bom in _BY_BOM)
# (BOM, the Python codec it means). The standard has no UTF-32: its LE BOM reads as UTF-16LE's.
BOMS = tuple((bom, encoding.codec) for bom, encoding in _BY_BOM.items())
# Response.encoding holds a Python codec name (and users may set one): the way back to the
# standard's encoding. iso8859-8 stands for ISO-8859-8 and -8-I alike: they decode alike.
_BY_CODEC = {
    found.codec_info.name: found.name
    for found in map(webencodings.lookup, sorted(set(LABELS.values())))
    if found is not None
}


def bom_encoding(body: bytes) -> Encoding | None:
    """UTF-8 or UTF-16 by a byte order mark, which outranks every declaration."""
    if not body or body[0] not in _BOM_LEADS:
        return None
    for bom, encoding in _BY_BOM.items():
        if body.startswith(bom):
            return encoding
    return None


_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_HTML_TYPES = frozenset(("", "text/html", "application/xhtml+xml"))
# Formats whose own specifications make UTF-8 the default (RFC 8259; XML 1.0, 4.3.3).
_UTF8_TYPES = frozenset(("application/json", "text/json"))


def detect(content_type: str | None, body: bytes) -> Encoding:
    """The encoding of a body: a BOM, the Content-Type charset, a declaration in the body (HTML
    ``<meta>``, XML ``<?xml encoding=?>``), then UTF-8 if the body holds UTF-8 sequences and no
    invalid ones, else windows-1252 (the standard's default; ASCII reads the same in both)."""
    if found := bom_encoding(body):
        return found
    media = ""
    if content_type:
        header = _HEADER_CHARSET.search(content_type)
        if header and (found := lookup(header.group(1))):
            return found
        media = content_type.partition(";")[0].strip().lower()
    xml = media.endswith(("/xml", "+xml"))
    if (xml or not media) and (found := xml_declared(body)):
        return found
    if media in _HTML_TYPES and (found := prescan(body)):
        return found
    return _sniff(body, utf8_default=xml or media in _UTF8_TYPES or media.endswith("+json"))


def detect_encoding(content_type: str | None, body: bytes) -> str:
    """:func:`detect`, as the Python codec name ``Response.encoding`` reports."""
    return detect(content_type, body).codec


def decode(body: bytes, codec: str) -> str:
    """``body`` decoded as the standard decodes the encoding a Python codec name stands for (as
    ``Response.encoding`` holds it): errors become U+FFFD, a leading BOM of that encoding is
    dropped. A name the standard does not know is decoded by Python's codec of that name."""
    name = _BY_CODEC.get(codec)
    encoding = _encoding(name) if name else lookup(codec)
    if encoding is None:
        return body.decode(codec, "replace")
    if encoding.bom and body.startswith(encoding.bom):
        body = body[len(encoding.bom) :]
    return encoding.decode(body)


def _sniff(body: bytes, *, utf8_default: bool) -> Encoding:
    if body.isascii():
        return _UTF8 if utf8_default else _WINDOWS_1252
    try:
        codecs.utf_8_decode(body, "strict", True)
    except UnicodeDecodeError:
        return _WINDOWS_1252
    return _UTF8


def _as_read(found: Encoding | None) -> Encoding | None:
    """A declaration that was read as ASCII cannot mean UTF-16 (then it is UTF-8), and the
    HTML standard reads x-user-defined there as windows-1252."""
    if found is None:
        return None
    if found.name in ("utf-16le", "utf-16be"):
        return _UTF8
    return _WINDOWS_1252 if found.name == "x-user-defined" else found


_XML_DECLARATION = re.compile(
    rb"""<\?xml\s+version\s*=\s*(["'])[^"'<>]*\1\s+encoding\s*=\s*(["'])([A-Za-z][\w.\-]*)\2"""
)


def xml_declared(body: bytes) -> Encoding | None:
    """The encoding an XML declaration names: ``<?xml version="1.0" encoding="..."?>``."""
    declaration = _XML_DECLARATION.match(body) if body.startswith(b"<?xml") else None
    return _as_read(lookup(declaration.group(3).decode("ascii"))) if declaration else None


# --- the HTML standard's prescan of a byte stream for <meta charset> ---------------------------

# The standard prescans 1024 bytes; browsers then keep looking while the markup is still what a
# <head> holds (Blink stops at the first other tag past 1024 bytes; Gecko reloads the page on a
# late <meta> in the head), and pages do put the charset after kilobytes of inline script and
# style. We walk like Blink, up to 64 KiB: a head larger than that is not worth the walk.
_UNCONDITIONAL_BYTES = 1024
_PRESCAN_BYTES = 64 * 1024
_HEAD_TAGS = frozenset(
    (b"script", b"noscript", b"style", b"link", b"meta", b"object", b"title", b"base")
)
# Markup inside these is text to a browser: it does not end the head.
_RAW_TEXT_TAGS = frozenset((b"script", b"style", b"title"))

_META_OPEN = re.compile(rb"<meta[\t\n\f\r /]", re.I)
_MARKUP = re.compile(rb"<(?:(!--)|(meta)[\t\n\f\r /]|(/?)([A-Za-z][^\t\n\f\r />]*+)|[!/?])", re.I)
# An attribute as the standard's "get an attribute" reads it. A quoted value missing its
# closing quote runs to the end of what we read, where the prescan gives up.
_ATTRIBUTE = re.compile(
    rb"""[\t\n\f\r /]*+(?:>|([^\t\n\f\r />][^\t\n\f\r />=]*+)(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"""
    rb"""(?:"([^"]*+)("?)|'([^']*+)('?)|([^\t\n\f\r >"'][^\t\n\f\r >]*+))?)?)"""
)
# The attributes of a tag up to its ">", skipped in one match; and the rest of any other tag.
_ATTRIBUTES = (
    rb"""(?>[\t\n\f\r /]*+[^\t\n\f\r />][^\t\n\f\r />=]*+(?>[\t\n\f\r ]*+=[\t\n\f\r ]*+"""
    rb"""(?:"[^"]*+"?|'[^']*+'?|[^\t\n\f\r >"'][^\t\n\f\r >]*+)?)?)*+[\t\n\f\r /]*+>"""
)
_ATTRIBUTES_END = re.compile(_ATTRIBUTES)
_TAG_REST = re.compile(rb"[^\t\n\f\r >]*+" + _ATTRIBUTES)
# Where a script, style or title ends, for reading it as text (a browser's tokenizer does).
_RAW_TEXT_END = {
    name: re.compile(rb"</" + name + rb"[\t\n\f\r />]", re.I) for name in _RAW_TEXT_TAGS
}
_CONTENT_CHARSET = re.compile(
    rb"""charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:"([^"]*)"|'([^']*)'|(["'])|([^\t\n\f\r ;]*))"""
)


class _Head:
    """Whether the markup walked so far could all be in a <head>, as Blink judges it."""

    __slots__ = ("open", "raw_text")

    def __init__(self) -> None:
        self.open = True
        self.raw_text = b""

    def __repr__(self) -> str:
        return f"<_Head open={self.open} raw_text={self.raw_text!r}>"

    def see(self, name: bytes, closing: bool) -> None:
        if self.raw_text:
            if closing and name == self.raw_text:
                self.raw_text = b""
        elif name not in _HEAD_TAGS and (closing or name not in (b"html", b"head")):
            self.open = False
        elif not closing and name in _RAW_TEXT_TAGS:
            self.raw_text = name


def prescan(body: bytes) -> Encoding | None:
    """The encoding a ``<meta charset>`` or ``<meta http-equiv=Content-Type content=...>``
    declares, found as the HTML standard's prescan finds it (comments, quoting, attributes in
    any order), or None."""
    end = min(len(body), _PRESCAN_BYTES)
    if not _META_OPEN.search(body, 0, end):  # the common "no": one scan in C
        return None
    pos, head = 0, _Head()
    while (start := body.find(b"<", pos, end)) >= 0:
        if start >= _UNCONDITIONAL_BYTES:
            if not head.open:
                return None
            if head.raw_text:  # past the prescan's kilobyte, read as Blink does: as text
                close = _RAW_TEXT_END[head.raw_text].search(body, start, end)
                if close is None:
                    return None
                start = close.start()
        markup = _MARKUP.match(body, start, end)
        if markup is None:  # a "<" that starts nothing
            pos = start + 1
            continue
        if markup.group(2):
            found, pos = _meta(body, markup.end(), end)
            if found:
                return found
        else:
            pos = _skip(body, markup, end, head)
        if pos < 0:  # a tag or comment left open at the end: the prescan fails
            return None
    return None


def _skip(body: bytes, markup: re.Match[bytes], end: int, head: _Head) -> int:
    """Where the comment, tag or ``<!...>`` that ``markup`` starts ends; -1 if it does not."""
    if markup.group(1):  # the "-->" may share its dashes with the "<!--"
        close = body.find(b"-->", markup.start() + 2, end)
        return close + 3 if close >= 0 else -1
    name = markup.group(4)
    if name is None:  # <!doctype>, </3>, <?pi>
        close = body.find(b">", markup.end(), end)
        return close + 1 if close >= 0 else -1
    head.see(name.lower(), bool(markup.group(3)))
    rest = _TAG_REST.match(body, markup.end(), end)
    return rest.end() if rest else -1


def _meta(body: bytes, pos: int, end: int) -> tuple[Encoding | None, int]:
    """What a <meta> whose attributes start at ``pos`` declares, and where it ends (-1: it does
    not). The attribute steps of the standard's prescan, in order."""
    tag = _ATTRIBUTES_END.match(body, pos, end)
    if tag is None:
        return None, -1
    if b"charset" not in body[pos : tag.end()].lower():  # no charset=, no declaration
        return None, tag.end()
    seen: set[bytes] = set()
    got_pragma, need_pragma, failed = False, None, False
    charset: Encoding | None = None
    while attribute := _ATTRIBUTE.match(body, pos, end):
        pos = attribute.end()
        if attribute.group(1) is None:  # the ">"
            if need_pragma is None or (need_pragma and not got_pragma):
                return None, pos
            return _as_read(charset), pos
        if attribute.group(3) == b"" or attribute.group(5) == b"":  # a quote left open
            return None, -1
        name = attribute.group(1).lower()
        if name in seen:
            continue
        seen.add(name)
        value = (attribute.group(2) or attribute.group(4) or attribute.group(6) or b"").lower()
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content" and charset is None and not failed:
            if found := _content_charset(value):
                charset, need_pragma = found, True
        elif name == b"charset":
            charset = lookup(value.decode("latin-1"))
            need_pragma, failed = False, charset is None
    return None, -1


def _content_charset(value: bytes) -> Encoding | None:
    """The HTML standard's "extracting a character encoding from a meta element"."""
    found = _CONTENT_CHARSET.search(value)
    if found is None or found.group(3):  # a quote never closed
        return None
    label = found.group(1) or found.group(2) or found.group(4) or b""
    return lookup(label.decode("latin-1"))
