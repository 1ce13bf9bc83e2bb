"""URL canonicalisation and request fingerprints: when two URLs are the same page."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are when re-quoting: RFC 3986 reserved and unreserved ones.
# URLs already in canonical form but for a fragment, the common case: no query, no escapes,
# lower-case scheme and host. They skip the general path below.
_SIMPLE = re.compile(r"(https?)://[a-z0-9.\-]+(?::(\d+))?(/[A-Za-z0-9/._~\-!$'()*+,;=:@]*)?")
_PATH_SAFE = "/!$&'()*+,;=:@-._~%"
_QUERY_SAFE = "/?!$'()*+,;:@-._~%="


def _requote(part: str, safe: str) -> str:
    # unquote then quote normalises percent-escape case (%2f -> %2F) and escapes raw bytes,
    # but %25 and escaped delimiters must survive, so only unreserved escapes are decoded.
    out = []
    i = 0
    while i < len(part):
        ch = part[i]
        if ch == "%" and i + 2 < len(part) and _is_hex(part[i + 1 : i + 3]):
            decoded = chr(int(part[i + 1 : i + 3], 16))
            if decoded.isascii() and (decoded.isalnum() or decoded in "-._~"):
                out.append(decoded)
            else:
                out.append("%" + part[i + 1 : i + 3].upper())
            i += 3
            continue
        out.append(quote(ch, safe=safe) if ch != "%" else "%25")
        i += 1
    return "".join(out)


def _plain_port(scheme: str, port: str | None) -> bool:
    """Whether a URL's port is spelled as canonicalize would spell it."""
    if port is None:
        return True
    return port[0] != "0" and int(port) != _DEFAULT_PORTS[scheme]


def join_url(base: str, href: str) -> str:
    """``urljoin`` with a fast path for the links pages are made of: absolute, root-relative
    and document-relative paths (dot segments resolved as RFC 3986 says).

    >>> join_url("http://a.test/x/y.html", "../z.html?q=1#top")
    'http://a.test/z.html?q=1#top'
    """
    href = href.strip()
    if href.startswith(("http://", "https://")):
        return href
    head = href[:1]
    if head in ("", "?", "#") or href.startswith("//") or ":" in href.partition("/")[0]:
        return urljoin(base, href)  # empty, query- or fragment-only, scheme-relative, a scheme
    start = base.find("//") + 2
    end = base.find("/", start)
    if end < 0 or not base.startswith(("http://", "https://")):
        return urljoin(base, href)
    origin = base[:end]
    cut = min((i for i in (href.find("?"), href.find("#")) if i >= 0), default=len(href))
    path, rest = href[:cut], href[cut:]
    if head != "/":
        base_path = base[end:].partition("?")[0].partition("#")[0]
        path = base_path[: base_path.rfind("/") + 1] + path
    if "//" in path:
        return urljoin(base, href)  # urljoin drops empty segments; keep its answer
    if "." in path:
        path = _remove_dot_segments(path)
    return origin + path + rest


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out) or "/"


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def host_of(url: str) -> str:
    """The politeness key of a URL: lower-case host, with the port when it is not the default.

    >>> host_of("HTTP://Example.COM:80/a")
    'example.com'
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host


def canonicalize(url: str) -> str:
    """The one spelling of a URL used for dedup: scheme and host lower-cased, default port,
    fragment and empty query dropped, query arguments sorted, percent-escapes normalised.
    Path case is kept: servers may treat /A and /a differently.

    >>> canonicalize("HTTP://Example.com:80/a%7eb/?b=2&a=1#top")
    'http://example.com/a~b/?a=1&b=2'
    """
    url = url.strip()
    simple = _SIMPLE.fullmatch(url.partition("#")[0])
    if simple is not None and _plain_port(simple.group(1), simple.group(2)):
        return simple.group(0) if simple.group(3) else simple.group(0) + "/"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = host_of(url)
    if parts.username or parts.password:
        userinfo = parts.username or ""
        if parts.password:
            userinfo += ":" + parts.password
        netloc = f"{userinfo}@{netloc}"
    path = _requote(parts.path, _PATH_SAFE) or "/"
    query = ""
    if parts.query:
        query = "&".join(sorted(_requote(p, _QUERY_SAFE) for p in parts.query.split("&") if p))
    return urlunsplit((scheme, netloc, path, query, ""))


def fingerprint(method: str, url: str, body: bytes = b"") -> int:
    """A signed 64-bit fingerprint of a request, from its method, canonical URL and body.

    Sixty-four bits keep the seen set compact; a collision is expected once in ~4e9 URLs squared.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(method.upper().encode())
    digest.update(b" ")
    digest.update(canonicalize(url).encode())
    if body:
        digest.update(b" ")
        digest.update(body)
    return int.from_bytes(digest.digest(), "big", signed=True)


def is_http(url: str) -> bool:
    """Whether the crawler can fetch this URL at all: http(s), a host, a valid port."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme.lower() in _DEFAULT_PORTS and bool(parts.hostname)
