"""Unit tests of crawler.urls: canonical spellings, politeness keys and request fingerprints."""

import pytest

from crawler.urls import canonicalize, fingerprint, host_of, is_http


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://EXAMPLE.com/a", "http://example.com/a"),
        ("https://Example.COM/Path/To", "https://example.com/Path/To"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com/a#top", "http://example.com/a"),
        ("http://example.com/a?#top", "http://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com?b=1", "http://example.com/?b=1"),
        ("http://example.com/?b=2&a=1&c=0", "http://example.com/?a=1&b=2&c=0"),
        ("http://example.com/?a=1&&b=2&", "http://example.com/?a=1&b=2"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%7eb%41%2D%5F%2e", "http://example.com/a~bA-_."),
        ("http://example.com/%25", "http://example.com/%25"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/%zz", "http://example.com/%25zz"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://example.com/?q=a%2bb&r=%7e", "http://example.com/?q=a%2Bb&r=~"),
        ("http://example.com/?q=a%26b", "http://example.com/?q=a%26b"),
        ("  http://example.com/a  ", "http://example.com/a"),
        ("http://User:Pw@Example.com:80/", "http://User:Pw@example.com/"),
    ],
)
def test_canonicalize(url: str, expected: str) -> None:
    assert canonicalize(url) == expected


def test_canonicalize_keeps_path_case() -> None:
    assert canonicalize("http://example.com/A") != canonicalize("http://example.com/a")


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://Example.com:80/a%7eb/?b=2&a=1#top",
        "http://example.com/a%2f/?z=%41&y=",
        "https://example.com:8443/caf\u00e9?q=a b",
    ],
)
def test_canonicalize_is_idempotent(url: str) -> None:
    once = canonicalize(url)
    assert canonicalize(once) == once


def test_canonicalize_sorts_query_after_normalising_escapes() -> None:
    assert canonicalize("http://example.com/?a=%62&a=a") == canonicalize(
        "http://example.com/?a=b&a=a"
    )


def test_canonicalize_keeps_ipv6_brackets() -> None:
    assert host_of("http://[::1]:8080/a") == "[::1]:8080"
    assert canonicalize("http://[::1]:8080/a") == "http://[::1]:8080/a"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://127.0.0.1:8765/x", "127.0.0.1:8765"),
        ("http://user:pw@Example.com:8080/", "example.com:8080"),
    ],
)
def test_host_of(url: str, expected: str) -> None:
    assert host_of(url) == expected


def test_fingerprint_is_equal_for_canonically_equal_urls() -> None:
    a = fingerprint("GET", "HTTP://Example.com:80/a%7e?b=2&a=1#frag")
    b = fingerprint("get", "http://example.com/a~?a=1&b=2")
    assert a == b
    assert -(2**63) <= a < 2**63


def test_fingerprint_differs_by_url_method_and_body() -> None:
    url = "http://example.com/a"
    prints = {
        fingerprint("GET", url),
        fingerprint("GET", "http://example.com/A"),
        fingerprint("POST", url),
        fingerprint("POST", url, b"x=1"),
        fingerprint("POST", url, b"x=2"),
    }
    assert len(prints) == 5
    assert fingerprint("POST", url, b"x=1") == fingerprint("POST", url, b"x=1")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/", True),
        ("HTTPS://example.com", True),
        ("ftp://example.com/", False),
        ("mailto:a@example.com", False),
        ("javascript:void(0)", False),
        ("/relative/path", False),
        ("http:///no-host", False),
        ("", False),
    ],
)
def test_is_http(url: str, expected: bool) -> None:
    assert is_http(url) is expected


@pytest.mark.parametrize("url", ["http://example.com:abc/", "http://example.com:99999/"])
def test_is_http_refuses_a_url_with_a_bad_port(url: str) -> None:
    assert is_http(url) is False


def test_join_url_agrees_with_urljoin_on_many_links() -> None:
    import random
    from urllib.parse import urljoin

    from crawler.urls import join_url

    bases = [
        "http://a.test/x/y.html",
        "http://a.test",
        "http://a.test:81/p/q/r.html?z=1#f",
        "https://b.test/a/b/c/",
    ]
    pieces = ["a", "..", ".", "b.html", "", "x?y", "#z", "c#d?e", "mailto:q", "//h.test"]
    rng = random.Random(7)
    hrefs = ["/".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    for base in bases:
        for href in hrefs:
            assert join_url(base, href) == urljoin(base, href.strip()), (base, href)
