"""Cookies: a login holds across the pages of one crawl, and a site cannot make the jar, or the
Cookie header sent back, grow without bound. Crawls of the loopback site, then the jar alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Request, Response, Spider
from crawler.cookies import BoundedCookieJar, NoCookieJar
from crawler.errors import FetchError
from crawler.fetcher import Fetcher
from crawler.settings import Settings
from tests.crawling import crawl
from tests.site import SESSION, TestSite

# --- crawls ---------------------------------------------------------------------------------


def _follower(*urls: str, headers: dict[str, str] | None = None) -> type[Spider]:
    """Fetches ``urls`` in order (each after the one before), follows every link, and yields
    what /account says of the visitor."""

    class Follower(Spider):
        name = "follower"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(urls[0], headers=headers, cb_kwargs={"rest": list(urls[1:])})

        async def parse(self, response: Response, rest: list[str] | None = None) -> Any:
            if (user := response.css_first("p.user")) is not None:
                yield {"url": response.url, "user": user.text()}
            if rest:
                yield Request(rest[0], headers=headers, cb_kwargs={"rest": rest[1:]})
            for link in response.css("a"):
                yield response.follow(link)

    return Follower


def _cookies_seen(site: TestSite, prefix: str) -> list[str]:
    """The Cookie header of each request for a path starting with ``prefix``, in order."""
    hits = sorted((hit for hit in site.log if hit.path.startswith(prefix)), key=lambda h: h.started)
    return [hit.headers.get("cookie", "") for hit in hits]


async def test_a_login_holds_for_the_next_page(site: TestSite, tmp_path: Path) -> None:
    result = await crawl(_follower(site.url("/login")), tmp_path, obey_robots=False)
    assert [item["user"] for item in result.items] == ["alice"]
    assert _cookies_seen(site, "/login") == [""]
    assert _cookies_seen(site, "/account") == [f"session={SESSION}"]


async def test_a_cookie_set_on_a_redirect_goes_with_the_next_hop(
    site: TestSite, tmp_path: Path
) -> None:
    result = await crawl(_follower(site.url("/login?redirect=1")), tmp_path, obey_robots=False)
    assert [item["user"] for item in result.items] == ["alice"]


async def test_cookies_stay_with_their_host(site: TestSite, tmp_path: Path) -> None:
    spider = _follower(site.url("/login"), site.url("/account", 1), site.url("/cookie-echo"))
    result = await crawl(spider, tmp_path, obey_robots=False)
    users = {item["url"]: item["user"] for item in result.items}
    assert users == {site.url("/account"): "alice", site.url("/account", 1): "anonymous"}
    assert _cookies_seen(site, "/cookie-echo") == [f"session={SESSION}"]


async def test_cookies_last_one_crawl(site: TestSite, tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    await crawl(_follower(site.url("/login")), tmp_path / "first", obey_robots=False)
    result = await crawl(_follower(site.url("/account")), tmp_path / "second", obey_robots=False)
    assert [item["user"] for item in result.items] == ["anonymous"]


async def test_cookies_can_be_turned_off(site: TestSite, tmp_path: Path) -> None:
    spider = _follower(site.url("/login"), site.url("/login?redirect=1"))
    result = await crawl(spider, tmp_path, obey_robots=False, cookies_enabled=False)
    assert {item["user"] for item in result.items} == {"anonymous"}
    assert set(_cookies_seen(site, "/")) == {""}


@pytest.mark.parametrize("cookies_enabled", [True, False])
async def test_a_cookie_header_the_spider_sets_is_sent_as_given(
    site: TestSite, tmp_path: Path, cookies_enabled: bool
) -> None:
    """Even past max_cookie_header_bytes, and with the jar holding a cookie for the site: the
    jar bounds what sites make it send, not what a spider asks for."""
    own = "mine=1; " + "x" * 300
    spider = _follower(site.url("/login"), site.url("/cookie-echo"), headers={"Cookie": own})
    await crawl(
        spider,
        tmp_path,
        obey_robots=False,
        cookies_enabled=cookies_enabled,
        max_cookie_header_bytes=100,
    )
    assert _cookies_seen(site, "/cookie-echo") == [own]


@pytest.mark.parametrize(
    ("transport", "per_response", "size"),
    [("httpcore", 1000, 20), ("aiohttp", 120, 4000)],  # aiohttp takes at most 128 headers
)
async def test_a_site_setting_cookies_on_every_page_cannot_grow_the_header(
    site: TestSite, tmp_path: Path, transport: str, per_response: int, size: int
) -> None:
    pages = 20
    start = site.url(f"/set-cookies/0?k={per_response}&size={size}&pages={pages}")
    result = await crawl(_follower(start), tmp_path, obey_robots=False, http_transport=transport)
    assert result.stats.status_counts == {"200": pages}
    seen = _cookies_seen(site, "/set-cookies/")
    assert len(seen) == pages
    assert seen[0] == ""
    assert max(len(header.encode()) for header in seen) <= 8192
    for n, header in enumerate(seen[1:], 1):
        names = [pair.partition("=")[0] for pair in header.split("; ")]
        assert len(names) <= 50
        # What is sent is what the page before set last, newest kept when the cap bites.
        assert f"c{n - 1}x{per_response - 1}" in names
        assert all(name.startswith(f"c{n - 1}x") for name in names)


@pytest.mark.parametrize(
    ("per_domain", "header_bytes", "sent"),
    # "cNx29=vvvvvvvvvv" is 16 bytes: two of them and "; " fit in 40 bytes, three do not.
    [(5, 8192, 5), (50, 40, 2)],
)
async def test_the_limits_are_settings(
    site: TestSite, tmp_path: Path, per_domain: int, header_bytes: int, sent: int
) -> None:
    start = site.url("/set-cookies/0?k=30&size=10&pages=4")
    await crawl(
        _follower(start),
        tmp_path,
        obey_robots=False,
        max_cookies_per_domain=per_domain,
        max_cookie_header_bytes=header_bytes,
    )
    seen = _cookies_seen(site, "/set-cookies/")[1:]
    assert [len(header.split("; ")) for header in seen] == [sent] * 3
    assert max(len(header.encode()) for header in seen) <= header_bytes


async def test_a_secure_cookie_goes_to_https_only() -> None:
    """The lowest seam: a transport that plays an https site and its http twin."""
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("cookie", "")
        cookies = [("Set-Cookie", "s=1; Secure"), ("Set-Cookie", "p=2")]
        return httpx.Response(200, headers=cookies, stream=httpx.ByteStream(b"ok"))

    fetcher = Fetcher(Settings(), transport=httpx.MockTransport(handler))
    try:
        for url in ("https://a.test/1", "https://a.test/2", "http://a.test/3"):
            await fetcher.fetch(Request(url))
    finally:
        await fetcher.close()
    assert seen == {
        "https://a.test/1": "",
        "https://a.test/2": "s=1; p=2",
        "http://a.test/3": "p=2",
    }
    assert len(fetcher.client.cookies) == 0  # httpx's own jar kept nothing


# --- the jar --------------------------------------------------------------------------------


def _jar(**limits: int) -> BoundedCookieJar:
    limits = {"max_cookies_per_domain": 50, "max_cookie_header_bytes": 8192, **limits}
    return BoundedCookieJar(**limits)


def _names(jar: BoundedCookieJar) -> list[str]:
    return sorted(cookie.name for cookie in jar)


def _assert_no_empty_tables(jar: BoundedCookieJar) -> None:
    """CookieJar's own tables (domain -> path -> name) hold no empty path or domain: what the
    jar forgets leaves nothing behind."""
    tables = jar._cookies  # type: ignore[attr-defined]
    assert all(paths and all(paths.values()) for paths in tables.values()), tables
    assert sum(len(names) for paths in tables.values() for names in paths.values()) == len(jar)


def test_a_domain_keeps_its_most_recently_set_cookies() -> None:
    jar = _jar(max_cookies_per_domain=3)
    jar.store("http://example.com/", ["a=1", "b=1", "c=1"])
    jar.store("http://example.com/", ["a=2"])  # set again: now the newest
    jar.store("http://example.com/", ["d=1", "e=1"])
    assert _names(jar) == ["a", "d", "e"]
    assert jar.cookie_header("http://example.com/") == "a=2; d=1; e=1"
    _assert_no_empty_tables(jar)


def test_a_domain_and_its_dotted_form_count_as_one() -> None:
    jar = _jar(max_cookies_per_domain=2)
    jar.store("http://www.example.com/", ["a=1; Domain=example.com", "b=1; Domain=.example.com"])
    jar.store("http://example.com/", ["c=1"])
    assert _names(jar) == ["b", "c"]
    # A subdomain's own cookies are its own; the parent's host-only cookie (c) is not its.
    jar.store("http://www.example.com/", ["d=1", "e=1"])
    assert _names(jar) == ["b", "c", "d", "e"]
    assert jar.cookie_header("http://www.example.com/") == "b=1; d=1; e=1"
    assert jar.cookie_header("http://example.com/") == "b=1; c=1"


def test_a_cookie_over_4096_bytes_is_ignored() -> None:
    jar = _jar()
    jar.store("http://example.com/", ["big=" + "x" * 4093, "keep=old"])
    jar.store("http://example.com/", ["bigger=" + "x" * 4091, "keep=" + "y" * 4093])
    assert _names(jar) == ["big", "keep"]
    assert jar.cookie_header("http://example.com/") == "big=" + "x" * 4093 + "; keep=old"
    # Bytes, not characters: 2,049 two-byte characters are over.
    jar.store("http://example.com/", ["é=" + "é" * 2048])
    assert "é" not in _names(jar)


def test_past_max_domains_the_one_least_recently_given_a_cookie_is_forgotten() -> None:
    jar = _jar(max_domains=3)
    for host in ("a.test", "b.test", "c.test"):
        jar.store(f"http://{host}/", ["x=1", "y=1"])
    jar.store("http://a.test/", ["z=1"])  # a.test is recent again: b.test is now the oldest
    jar.store("http://d.test/", ["x=1"])
    assert sorted({cookie.domain for cookie in jar}) == ["a.test", "c.test", "d.test"]
    assert jar.cookie_header("http://b.test/") is None
    _assert_no_empty_tables(jar)
    assert repr(jar).startswith("<BoundedCookieJar cookies=6 domains=3 ")


def test_past_max_cookies_the_oldest_domain_loses_its_oldest_first() -> None:
    jar = _jar(max_cookies=4)
    jar.store("http://a.test/", ["x=1", "y=1"])
    jar.store("http://b.test/", ["x=1", "y=1"])
    jar.store("http://c.test/", ["x=1"])
    assert jar.cookie_header("http://a.test/") == "y=1"
    jar.store("http://c.test/", ["y=1", "z=1"])
    assert jar.cookie_header("http://a.test/") is None
    assert jar.cookie_header("http://b.test/") == "y=1"
    assert len(jar) == 4
    _assert_no_empty_tables(jar)


def test_the_header_keeps_the_most_recently_set_cookies_that_fit() -> None:
    jar = _jar(max_cookie_header_bytes=len("c=333; d=4"))
    jar.store("http://example.com/", ["a=1", "b=22", "c=333", "d=4"])
    assert jar.cookie_header("http://example.com/") == "c=333; d=4"
    # A newer cookie too large to go is left out; older ones that fit still go.
    jar.store("http://example.com/", ["e=" + "5" * 20])
    assert jar.cookie_header("http://example.com/") == "c=333; d=4"
    assert len(jar) == 5  # left out of the header, not forgotten


def test_the_header_puts_longer_paths_first_then_the_earlier_set() -> None:
    jar = _jar()
    jar.store("http://example.com/a/b", ["x=1; Path=/", "y=1; Path=/a", "z=1; Path=/"])
    jar.store("http://example.com/a/b", ["w=1; Path=/a/b"])
    assert jar.cookie_header("http://example.com/a/b") == "w=1; y=1; x=1; z=1"
    assert jar.cookie_header("http://example.com/other") == "x=1; z=1"


def test_an_expired_cookie_is_deleted_and_never_sent() -> None:
    jar = _jar()
    jar.store("http://example.com/", ["a=1", "b=1; Path=/p", "c=1; Max-Age=1000"])
    jar.store("http://example.com/", ["b=0; Path=/p; Max-Age=0", "c=0; Expires=Thu, 01 Jan 1970"])
    assert _names(jar) == ["a"]
    _assert_no_empty_tables(jar)
    jar.store("http://example.com/", ["d=1; Expires=Thu, 01 Jan 2099 00:00:00 GMT"])
    assert jar.cookie_header("http://example.com/") == "a=1; d=1"


def test_a_dotless_host_and_a_port_get_their_cookies() -> None:
    jar = _jar()
    jar.store("http://localhost:8080/", ["a=1"])
    jar.store("http://127.0.0.1:8080/", ["b=1"])
    assert jar.cookie_header("http://localhost:9090/x") == "a=1"
    assert jar.cookie_header("http://127.0.0.1/") == "b=1"
    assert jar.cookie_header("http://127.0.0.2:8080/") is None


def test_endless_cookies_leave_the_jar_bounded() -> None:
    jar = _jar(max_cookies_per_domain=5, max_domains=4, max_cookies=12)
    for n in range(300):
        host = f"h{n % 7}.test"
        jar.store(f"http://{host}/", [f"c{n}x{i}=v; Path=/p{i % 3}" for i in range(8)])
        assert len(jar) <= 12
        assert len({cookie.domain for cookie in jar}) <= 4
    _assert_no_empty_tables(jar)
    # The last five set, x3 to x7; of those, x4 and x7 have Path=/p1.
    assert jar.cookie_header(f"http://h{299 % 7}.test/p1") == "c299x4=v; c299x7=v"


def test_clearing_keeps_the_counts() -> None:
    jar = _jar(max_cookies_per_domain=3)
    jar.store("http://example.com/", ["a=1; Path=/x", "b=1; Path=/x", "c=1; Path=/y"])
    jar.store("http://other.test/", ["d=1"])
    jar.clear("example.com", "/x")
    _assert_no_empty_tables(jar)
    jar.store("http://example.com/", ["e=1", "f=1"])
    assert _names(jar) == ["c", "d", "e", "f"]
    jar.clear("example.com")
    assert _names(jar) == ["d"]
    with pytest.raises(KeyError):
        jar.clear("example.com", "/", "e")
    jar.clear()
    assert len(jar) == 0
    assert repr(jar).startswith("<BoundedCookieJar cookies=0 domains=0 ")


def test_the_no_cookie_jar_keeps_nothing() -> None:
    jar = NoCookieJar()
    client = httpx.Client(cookies=jar)
    response = httpx.Response(
        200, headers=[("Set-Cookie", "a=1")], request=httpx.Request("GET", "http://a.test/")
    )
    client.cookies.extract_cookies(response)
    client.cookies.set("b", "2")
    assert len(jar) == 0
    client.close()


async def test_a_malformed_url_fails_as_an_invalid_url_with_cookies_in_the_jar(
    site: TestSite,
) -> None:
    fetcher = Fetcher(Settings(allow_private_addresses=True, max_retries=0))
    try:
        await fetcher.fetch(Request(site.url("/login")))  # a cookie in the jar
        with pytest.raises(FetchError, match="invalid URL"):
            await fetcher.fetch(Request("http://[::1/"))
    finally:
        await fetcher.close()
