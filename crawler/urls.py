"""URLs as the WHATWG URL Standard reads them (what a browser requests): joining links, the
politeness key, and the canonical spelling and fingerprint that deduplication compares."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Final
from urllib.parse import quote, quote_plus, unquote_to_bytes

import ada_url

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# A URL the standard would serialise exactly as it is written: http(s), a lower-case ASCII host
# (dotted-quad IPv4, or labels whose last one starts with a letter, so it cannot be read as an
# IPv4 number, and none an "xn--" label that IDNA would check), a port that is neither default
# nor zero-padded, and a path, query and fragment of characters the standard copies unchanged
# (no "%", so no "%2e" dot segment; no "'" in the query, which the standard escapes there).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL = r"(?!xn--)[a-z0-9-]+"
_STANDARD = re.compile(
    rf"(https?)://((?:{_OCTET}\.){{3}}{_OCTET}|(?:{_LABEL}\.)*(?=[a-z]){_LABEL})"  # scheme, host
    r"(?::([1-9][0-9]{0,4}))?"  # port
    r"(/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)"  # path
    r"(\?[A-Za-z0-9._~!$&()*+,;=:@/?%-]*)?"  # query
    r"(?:#[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)?"
)
# A relative link of the same characters, with no scheme (no ":" in its path) and no host
# (no leading "//"): the standard resolves it by string operations alone.
_PLAIN_LINK = re.compile(
    r"(?P<path>(?!//)[A-Za-z0-9._~!$&'()*+,;=@/-]*)"
    r"(?P<query>\?[A-Za-z0-9._~!$&()*+,;=:@/?%-]*)?"
    r"(?P<fragment>#[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)?"
)
# Escapes to normalise, and characters to escape, in a canonical path or userinfo: unreserved
# characters and the reserved ones RFC 3986 allows there stay as they are (an escape of a reserved
# one means something else, so both spellings are kept apart; "[" and "]" are not allowed raw, so
# only their escapes count).
_PATH_ESCAPES = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9._~:@!$&'()*+,;=/]")
_USERINFO_ESCAPES = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9._~!$&'()*+,;=:]")
# A query argument, once decoded, is re-encoded leaving only these unescaped, none of which can be
# mistaken for its syntax.
_FORM_SAFE = "!$()*,/:;?@"
_FORM_PLAIN = re.compile(r"[A-Za-z0-9._~!$()*,/:;?@-]*")


# What the crawl asks of an http(s) URL, worked out once per URL: its canonical spelling, its
# host with the port when it is not the default (the politeness key), its host alone, and whether
# the URL is spelled exactly as the standard serialises it. A tuple: it is built per new URL.
_Http = tuple[str, str, str, bool]
_CANONICAL: Final = 0
_HOST: Final = 1
_HOSTNAME: Final = 2
_IS_STANDARD: Final = 3


def join_url(base: str, href: str) -> str:
    """The URL a browser resolves ``href`` to on a page at ``base``, as the WHATWG URL
    Standard serialises it: tabs and newlines dropped, backslashes read as slashes, dot
    segments resolved, the host in IDNA ASCII form, default ports dropped, unsafe characters
    percent-encoded. The fragment is kept.

    Never raises. If the standard rejects the link (or the base), the link comes back as
    given: then it is not a URL ``is_http`` accepts, unless the link was an absolute http(s)
    URL on its own and only the base was broken.

    >>> join_url("http://a.test/x/y.html", "..\\\\z.html?q=1#top")
    'http://a.test/z.html?q=1#top'
    >>> join_url("http://a.test/", "http://[")
    'http://['
    """
    joined = _fast_join(base, href)
    if joined is None:
        joined = _parse(href, base)
    return href if joined is None else joined


def _fast_join(base: str, href: str) -> str | None:
    """``join_url`` by string operations for the plain links pages are mostly made of, when
    ``base`` is in the standard's form already; None for every other link."""
    if href.startswith(("http://", "https://")):
        parsed = _read(href)
        return href if parsed is not None and parsed[_IS_STANDARD] else None
    link = _PLAIN_LINK.fullmatch(href)
    parts = _base_parts(base) if link is not None and href else None
    if link is None or parts is None:
        return None
    origin, directory, path_and_query = parts
    path, query, fragment = link["path"], link["query"] or "", link["fragment"] or ""
    if not path:
        if query:
            return origin + path_and_query.partition("?")[0] + query + fragment
        return origin + path_and_query + fragment
    if path[0] != "/":
        # Leading "./" and "../" are most of the dot segments links have: cheap to do here.
        while path.startswith("./"):
            path = path[2:]
        while path.startswith("../"):
            path = path[3:]
            directory = directory[: directory.rfind("/", 0, -1) + 1] or "/"
        path = directory + path
    if "/." in path:
        path = _remove_dot_segments(path)
    return origin + path + query + fragment


@functools.lru_cache(maxsize=256)
def _base_parts(base: str) -> tuple[str, str, str] | None:
    """(origin with any userinfo, directory, path and query) of an http(s) base URL that is
    spelled as the standard serialises it, which makes its parts plain to split; else None."""
    parsed = _read(base)
    if parsed is None or not parsed[_IS_STANDARD]:
        return None
    origin = base[: base.index("/", base.index("//") + 2)]
    path_and_query = base[len(origin) :].partition("#")[0]
    path = path_and_query.partition("?")[0]
    return origin, path[: path.rfind("/") + 1], path_and_query


def _remove_dot_segments(path: str) -> str:
    """The standard's path walk over an absolute path: "." is dropped, ".." drops the segment
    before it (never the root), and either one last leaves a trailing slash."""
    out: list[str] = []
    segments = path[1:].split("/")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        elif segment == ".":
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def is_http(url: str) -> bool:
    """Whether the crawler can fetch this URL at all: one the URL standard accepts, with an
    http(s) scheme (so it has a host, and a port in range).

    >>> is_http("HTTPS://Example.com"), is_http("http://[::1"), is_http("mailto:a@b.test")
    (True, False, False)
    """
    return _read(url) is not None


def fetchable(url: str) -> bool:
    """Whether the crawler may request this URL: ``is_http``, no userinfo (credentials belong
    in headers, never in a link a page can write), and a host name whose labels DNS can carry
    (1 to 63 characters each, 253 in all).

    >>> fetchable("http://a.test/"), fetchable("http://u:p@a.test/")
    (True, False)
    >>> fetchable("http://" + "a" * 64 + ".test/")
    False
    """
    parsed = _read(url)
    if parsed is None:
        return False
    if "@" in parsed[_CANONICAL].partition("://")[2].partition("/")[0]:
        return False
    name = parsed[_HOSTNAME]
    if name.startswith("["):
        return True
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def standard_url(url: str) -> str:
    """``url`` as the standard serialises it, which is what the crawler sends; as given if
    ``is_http`` refuses it.

    >>> standard_url("HTTP://a.test/x/../y\\tz")
    'http://a.test/yz'
    """
    parsed = _read(url)
    if parsed is None or parsed[_IS_STANDARD]:
        return url
    return _parse(url) or url


def host_of(url: str) -> str:
    """The politeness key of a URL: its host as the standard spells it (lower case, IDNA
    ASCII, IPv4 dotted, IPv6 in brackets), with the port when it is not the default.
    "" for a URL that ``is_http`` refuses.

    >>> host_of("HTTP://Bücher.Example:80/a"), host_of("http://0x7f.1:8080/")
    ('xn--bcher-kva.example', '127.0.0.1:8080')
    """
    parsed = _read(url)
    return "" if parsed is None else parsed[_HOST]


def hostname(url: str) -> str:
    """The host of a URL as the standard spells it, without the port; "" if ``is_http``
    refuses the URL.

    >>> hostname("http://Bücher.Example:8080/")
    'xn--bcher-kva.example'
    """
    parsed = _read(url)
    return "" if parsed is None else parsed[_HOSTNAME]


def domain(name: str) -> str:
    """A domain name as hosts are spelled in URLs (lower case, IDNA ASCII); the name
    lower-cased if it is not one.

    >>> domain("Bücher.Example")
    'xn--bcher-kva.example'
    """
    return ada_url.idna_to_ascii(name).decode("ascii", "replace") or name.lower()


def canonicalize(url: str) -> str:
    """The one spelling of a URL used for dedup: the standard's form (host lower-cased and
    IDNA-encoded, dot segments resolved, default port dropped), then fragment and empty query
    dropped, query arguments decoded as a form and sorted, and percent-escapes normalised in the
    path (upper-case hex; unreserved characters decoded, reserved ones kept escaped).
    Path case is kept: servers may treat /A and /a differently. Never raises: a URL that
    ``is_http`` refuses comes back as given.

    >>> canonicalize("HTTP://Example.com:80/a/../a%7eb/?b=2&a=1&c=a+b#top")
    'http://example.com/a~b/?a=1&b=2&c=a+b'
    """
    parsed = _read(url)
    return url if parsed is None else parsed[_CANONICAL]


# Most URLs are read several times in a row (joined, scope-checked, fingerprinted, given a
# politeness slot), so the last few thousand are remembered.
@functools.lru_cache(maxsize=2048)
def _read(url: str) -> _Http | None:
    """What the crawl needs of an http(s) URL the standard accepts; None for any other."""
    return _read_standard(url) or _read_parsed(url)


def _read_standard(url: str) -> _Http | None:
    """``_read`` by string operations, for a URL already spelled as the standard spells it."""
    match = _STANDARD.fullmatch(url)
    if match is None:
        return None
    scheme, host, port, path, query = match.groups()
    if port is not None and (port == _DEFAULT_PORTS[scheme] or (len(port) == 5 and port > "65535")):
        return None
    if "/." in path and any(s in (".", "..") for s in path.split("/")):
        return None
    end = match.end(4)
    head = url if end == len(url) else url[:end]
    canonical = head + _canonical_query(query) if query else head
    return canonical, host + ":" + port if port else host, host, True


def _read_parsed(url: str) -> _Http | None:
    href = _parse(url)
    if href is None or not href.startswith(("http://", "https://")):
        return None
    # The standard's serialisation is plain to split: "/", "?" and "#" are escaped in the
    # parts before the one they start, and so is "@" in the userinfo.
    origin, _, rest = href.partition("://")[2].partition("/")
    userinfo, at, host = origin.rpartition("@")
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port, or the colons of an IPv6 address
        name = host
    path, _, query = rest.partition("#")[0].partition("?")
    if at:
        userinfo = _USERINFO_ESCAPES.sub(_normalise_escape, userinfo) + "@"
    scheme = href.partition(":")[0]
    path = _PATH_ESCAPES.sub(_normalise_escape, "/" + path)
    canonical = f"{scheme}://{userinfo}{host}{path}{_canonical_query('?' + query)}"
    return canonical, host, name, href == url


def _parse(url: str, base: str | None = None) -> str | None:
    """The standard's serialisation of ``url`` (resolved against ``base``); None if it fails."""
    try:
        return ada_url.join_url(base, url) if base is not None else ada_url.normalize_url(url)
    except ValueError:
        return None


def _normalise_escape(match: re.Match[str]) -> str:
    """An escape in upper-case hex, or the character it stands for if that is unreserved; an
    unsafe character (a "%" that starts no escape included) escaped."""
    text = match[0]
    if len(text) == 3:
        char = chr(int(text[1:], 16))
        return char if char in _UNRESERVED else text.upper()
    return quote(text, safe="")


def _canonical_query(query: str) -> str:
    """A query ("?..." or "") as a form would read it: arguments split at "&", each at its
    first "=", "+" read as a space, then re-encoded one way and sorted; "" if none is left."""
    pairs = []
    for arg in query[1:].split("&"):
        if arg:
            key, _, value = arg.partition("=")
            pairs.append(f"{_form_part(key)}={_form_part(value)}")
    return "?" + "&".join(sorted(pairs)) if pairs else ""


def _form_part(text: str) -> str:
    if _FORM_PLAIN.fullmatch(text):
        return text
    return quote_plus(unquote_to_bytes(text.replace("+", " ")), safe=_FORM_SAFE)


def fingerprint(method: str, url: str, body: bytes = b"") -> int:
    """A signed 64-bit fingerprint of a request, from its method, canonical URL and body.

    Sixty-four bits keep the seen set compact; a collision is expected once in ~4e9 URLs squared.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(method.upper().encode())
    digest.update(b" ")
    digest.update(canonicalize(url).encode("utf-8", "surrogatepass"))  # a lone surrogate too
    if body:
        digest.update(b" ")
        digest.update(body)
    return int.from_bytes(digest.digest(), "big", signed=True)
