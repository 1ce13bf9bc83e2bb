"""Unit tests of crawler.robots: how robots.txt answers become rules, as RFC 9309 reads them."""

import pytest

from crawler.errors import RobotsUnavailable, TransientError
from crawler.robots import ROBOTS_MAX_BYTES, RobotsRules, product_token, robots_url

ROBOTS = b"""\
User-agent: *
Disallow: /private
Crawl-delay: 2

User-agent: special-bot
Disallow: /
Allow: /open
Crawl-delay: 0.5
"""


@pytest.mark.parametrize("status", [200, 203, 299])
def test_2xx_rules_apply(status: int) -> None:
    rules = RobotsRules.from_response(status, ROBOTS)
    assert not rules.allows("http://example.com/private", "crawler")
    assert not rules.allows("http://example.com/private/page?x=1", "crawler")
    assert rules.allows("http://example.com/", "crawler")
    assert rules.allows("http://example.com/public/private", "crawler")


def test_user_agent_specific_group() -> None:
    rules = RobotsRules.from_response(200, ROBOTS)
    assert not rules.allows("http://example.com/page", "special-bot")
    assert rules.allows("http://example.com/open", "special-bot")
    assert rules.allows("http://example.com/page", "other-bot")


def test_crawl_delay() -> None:
    rules = RobotsRules.from_response(200, ROBOTS)
    assert rules.crawl_delay("crawler") == 2.0
    assert rules.crawl_delay("special-bot") == 0.5
    assert RobotsRules.from_response(200, b"User-agent: *\nDisallow:\n").crawl_delay("x") is None


def test_empty_robots_allows_everything() -> None:
    rules = RobotsRules.from_response(200, b"")
    assert rules.allows("http://example.com/anything", "crawler")


def test_bytes_past_the_cap_are_ignored() -> None:
    body = b"User-agent: *\n" + b"#" * ROBOTS_MAX_BYTES + b"\nDisallow: /late\n"
    rules = RobotsRules.from_response(200, body)
    assert rules.allows("http://example.com/late", "crawler")


def test_invalid_utf8_does_not_raise() -> None:
    rules = RobotsRules.from_response(200, b"User-agent: *\nDisallow: /caf\xe9\nDisallow: /x\n")
    assert not rules.allows("http://example.com/x", "crawler")


def test_utf8_bom_is_ignored() -> None:
    rules = RobotsRules.from_response(200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /private\n")
    assert not rules.allows("http://example.com/private", "crawler")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_4xx_allows_everything(status: int) -> None:
    rules = RobotsRules.from_response(status, b"User-agent: *\nDisallow: /\n")
    assert rules.parser is None
    assert rules.allows("http://example.com/private", "crawler")
    assert rules.crawl_delay("crawler") is None


# A 3xx only reaches here when redirects were not followed; the module treats it as "others".
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599, 302])
def test_429_5xx_and_others_mean_unavailable(status: int) -> None:
    with pytest.raises(RobotsUnavailable, match=f"robots.txt answered HTTP {status}") as caught:
        RobotsRules.from_response(status, b"")
    assert isinstance(caught.value, TransientError)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a/b?c=1#d", "http://example.com/robots.txt"),
        ("https://example.com:8443/x", "https://example.com:8443/robots.txt"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/robots.txt"),
    ],
)
def test_robots_url(url: str, expected: str) -> None:
    assert robots_url(url) == expected


@pytest.mark.parametrize(
    ("user_agent", "token"),
    [
        ("crawler/0.1", "crawler"),
        ("FooBot/1.0 (+http://foo.test/bot)", "FooBot"),
        ("my-bot", "my-bot"),
        ("  spaced bot ", "spaced"),
        ("", ""),
    ],
)
def test_product_token(user_agent: str, token: str) -> None:
    assert product_token(user_agent) == token


GROUPS = b"""User-agent: Mozilla
Allow: /

User-agent: crawler-news
Allow: /

User-agent: FooBot/1.0
Disallow: /foo-only

User-agent: CRAWLER
Disallow: /mine

User-agent: *
Disallow: /
"""


def test_groups_match_the_product_token_exactly() -> None:
    rules = RobotsRules.from_response(200, GROUPS)
    # Its own group, whatever the case; not the Mozilla group, not a longer name that starts alike.
    assert not rules.allows("http://a.test/mine", "crawler")
    assert rules.allows("http://a.test/other", "crawler")
    assert rules.allows("http://a.test/other", "Crawler")
    # A group line's value counts up to the first character a token cannot hold.
    assert not rules.allows("http://a.test/foo-only", "foobot")
    assert rules.allows("http://a.test/else", "FooBot")
    # A prefix of a group's name is not that group.
    assert not rules.allows("http://a.test/else", "crawl")
    assert not rules.allows("http://a.test/else", "Moz")


def test_a_value_that_is_not_a_token_matches_only_the_star_group() -> None:
    rules = RobotsRules.from_response(200, GROUPS)
    assert not rules.allows("http://a.test/other", "crawler/0.1")
    assert not rules.allows("http://a.test/other", "Mozilla/5.0 (compatible; crawler/0.1)")


def test_crawl_delay_follows_the_same_group() -> None:
    body = b"User-agent: crawler-slow\nCrawl-delay: 9\n\nUser-agent: crawler\nCrawl-delay: 1\n"
    rules = RobotsRules.from_response(200, body)
    assert rules.crawl_delay("crawler") == 1.0
    assert rules.crawl_delay("other") is None


def test_an_unknown_line_does_not_end_a_group() -> None:
    body = b"User-agent: crawler\nUnknown-Field: x\nUser-agent: *\nDisallow: /\n"
    rules = RobotsRules.from_response(200, body)
    assert not rules.allows("http://a.test/page", "crawler")


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf", b"\xef\xbb", b"\xef"])
def test_a_bom_or_part_of_one_is_skipped(bom: bytes) -> None:
    rules = RobotsRules.from_response(200, bom + b"User-agent: crawler\nDisallow: /x\n")
    assert not rules.allows("http://a.test/x", "crawler")
