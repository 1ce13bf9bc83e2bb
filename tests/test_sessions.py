"""Cookie sessions and a request's own cookies, Scrapy-style: ``meta["cookiejar"]`` picks a
separate jar, ``Request(cookies=...)`` adds cookies to that one request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crawler import Request, Response, Spider
from crawler.cookies import BoundedCookieJar, CookieJars, with_cookies
from tests.crawling import crawl
from tests.site import SESSION, TestSite


def _sessions(site: TestSite) -> type[Spider]:
    """Logs in within session "alice", then asks /account from each session in turn."""

    class Sessions(Spider):
        name = "sessions"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(site.url("/login"), self.logged_in, meta={"cookiejar": "alice"})

        async def logged_in(self, response: Response) -> AsyncIterator[Any]:
            for session in ("alice", "bob", None, 1):
                url = site.url(f"/account?as={session}")
                yield Request(url, self.account, meta={"cookiejar": session})

        async def account(self, response: Response) -> AsyncIterator[Any]:
            user = response.css_first("p.user")
            assert user is not None
            yield {"session": response.meta["cookiejar"], "user": user.text()}

    return Sessions


async def test_each_cookiejar_key_is_a_separate_session(site: TestSite, tmp_path: Path) -> None:
    result = await crawl(_sessions(site), tmp_path, obey_robots=False)
    users = {item["session"]: item["user"] for item in result.items}
    assert users == {"alice": "alice", "bob": "anonymous", None: "anonymous", 1: "anonymous"}


def _own_cookies(*requests: tuple[str, dict[str, str]]) -> type[Spider]:
    """Fetches each URL in order with its own cookies, after the one before."""

    class OwnCookies(Spider):
        name = "own_cookies"

        async def start_requests(self) -> AsyncIterator[Request]:
            url, cookies = requests[0]
            yield Request(url, cookies=cookies, cb_kwargs={"rest": list(requests[1:])})

        async def parse(self, response: Response, rest: list[Any]) -> AsyncIterator[Any]:
            yield {"url": response.url, "text": response.text}
            if rest:
                (url, cookies), *rest = rest
                yield Request(url, cookies=cookies, cb_kwargs={"rest": rest})

    return OwnCookies


def _echoed(site: TestSite, path: str) -> list[str]:
    hits = sorted((hit for hit in site.log if hit.path == path), key=lambda hit: hit.started)
    return [hit.headers.get("cookie", "") for hit in hits]


async def test_a_request_s_own_cookies_go_with_it_only(site: TestSite, tmp_path: Path) -> None:
    spider = _own_cookies(
        (site.url("/cookie-echo?1"), {"lang": "fr", "seen": "1"}),
        (site.url("/login"), {}),
        (site.url("/cookie-echo?2"), {"lang": "de"}),
        (site.url("/cookie-echo?3"), {"session": "forged"}),
        (site.url("/cookie-echo?4"), {}),
    )
    await crawl(spider, tmp_path, obey_robots=False)
    assert _echoed(site, "/cookie-echo?1") == ["lang=fr; seen=1"]
    # The jar's cookies join the request's own; an own cookie of the same name wins.
    assert _echoed(site, "/cookie-echo?2") == [f"lang=de; session={SESSION}"]
    assert _echoed(site, "/cookie-echo?3") == ["session=forged"]
    assert _echoed(site, "/cookie-echo?4") == [f"session={SESSION}"]  # nothing of the above


async def test_own_cookies_follow_a_redirect_on_the_same_origin_only(
    site: TestSite, tmp_path: Path
) -> None:
    elsewhere = quote(site.url("/cookie-echo?far", 1), safe="")
    spider = _own_cookies(
        (site.url("/redirect?to=/cookie-echo%3Fnear"), {"token": "t"}),
        (site.url(f"/redirect?to={elsewhere}"), {"token": "t"}),
    )
    await crawl(spider, tmp_path, obey_robots=False)
    assert _echoed(site, "/cookie-echo?near") == ["token=t"]
    assert _echoed(site, "/cookie-echo?far") == [""]


def test_own_cookies_survive_a_restart() -> None:
    request = Request("http://example.com/", cookies={"a": "1"})
    record = dict(request.to_record(), id=7, retries=0)
    assert Request.from_record(record).cookies == {"a": "1"}
    assert request.replace(url="http://example.com/2").cookies == {"a": "1"}
    plain = dict(Request("http://example.com/").to_record(), id=8, retries=0)
    assert b"cookies" not in plain["extra"]
    assert Request.from_record(plain).cookies == {}


def test_sessions_are_bounded_in_number() -> None:
    def new_jar() -> BoundedCookieJar:
        return BoundedCookieJar(max_cookies_per_domain=5, max_cookie_header_bytes=100)

    jars = CookieJars(new_jar, max_jars=2)
    first = jars.get("a")
    first.store("http://example.com/", ["k=v"])
    jars.get("b")
    assert jars.get("a") is first  # used again: now "b" is the least recently used
    jars.get("c")
    assert len(jars) == 2
    assert jars.get("a") is first
    assert jars.get("b").cookie_header("http://example.com/") is None  # "b" began afresh
    assert jars.get(None) is jars.default
    assert "sessions=2" in repr(jars)


def test_with_cookies_puts_the_request_s_own_first() -> None:
    assert with_cookies(None, {}) is None
    assert with_cookies("a=1; b=2", {}) == "a=1; b=2"
    assert with_cookies(None, {"c": "3"}) == "c=3"
    assert with_cookies("a=1; b=2", {"b": "9", "c": "3"}) == "b=9; c=3; a=1"
