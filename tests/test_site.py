"""Tests of the test site itself: routes, counters, concurrency peaks and clean shutdown."""

import email.utils
import http.client
import threading
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.site import TestSite


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment must never see loopback test traffic.
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def test_counts_hits_per_path_and_host(site: TestSite, client: httpx.Client) -> None:
    for path in ("/graph/0", "/graph/0", "/graph/1?a=1&b=2"):
        assert client.get(site.url(path)).status_code == 200
    client.get(site.url("/graph/0", 1))

    assert site.hits("/graph/0") == 3
    assert site.hits("/graph/0", host=0) == 2
    assert site.hits("/graph/0", host=site.host(1)) == 1
    assert site.hits("/graph/1?a=1&b=2") == 1
    assert site.hits("/graph/1") == 0
    assert (site.hits_total(), site.hits_total(0), site.hits_total(2)) == (4, 3, 0)

    site.reset()
    assert site.hits_total() == 0
    assert site.log == []


def test_log_records_each_request(site: TestSite, client: httpx.Client) -> None:
    before = time.monotonic()
    client.get(site.url("/leaf/3"), headers={"User-Agent": "probe/1"})

    [hit] = site.log
    assert (hit.host, hit.path, hit.method) == (site.host(0), "/leaf/3", "GET")
    assert before <= hit.started <= hit.ended <= time.monotonic()
    assert hit.headers["user-agent"] == "probe/1"


def test_graph_is_a_binary_tree_with_duplicate_and_cross_host_links(
    site: TestSite, client: httpx.Client
) -> None:
    root = client.get(site.url("/graph/0")).text
    for href in (
        "/graph/1",
        "/graph/2",
        "/graph/0#x",
        "/graph/1?a=1&amp;b=2",
        "/graph/1?b=2&amp;a=1",
    ):
        assert f'href="{href}"' in root
    assert f'href="{site.url("/graph/0", 1)}"' in root
    assert "<title>page 0</title>" in root

    last = client.get(site.url("/graph/99")).text
    assert '<h1 class="n">99</h1>' in last
    assert "/graph/199" not in last
    assert site.url("/graph/0", 1) not in last
    assert client.get(site.url("/graph/100")).status_code == 404


def test_pagination_stops_after_five_pages(site: TestSite, client: httpx.Client) -> None:
    first = client.get(site.url("/paged")).text
    assert first.count('class="item"') == 3
    assert '<span class="name">item-1-1</span>' in first
    assert '<a class="next" href="/paged?page=2">' in first
    assert 'class="next"' not in client.get(site.url("/paged?page=5")).text
    assert client.get(site.url("/paged?page=6")).status_code == 404


def test_peak_concurrency_counts_overlapping_requests(site: TestSite) -> None:
    start = threading.Barrier(5)
    statuses: list[int] = []

    def fetch(i: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as http:
            start.wait()
            statuses.append(http.get(site.url(f"/slow?delay=0.5&i={i}")).status_code)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 5
    assert site.peak_concurrency(0) == 5
    assert site.peak_concurrency(1) == 0
    assert max(hit.started for hit in site.log) < min(hit.ended for hit in site.log)
    assert min(hit.ended - hit.started for hit in site.log) >= 0.5


def test_flaky_fails_n_times_per_path_then_succeeds(site: TestSite, client: httpx.Client) -> None:
    url = site.url("/flaky/k?fail=2&status=500")
    assert [client.get(url).status_code for _ in range(3)] == [500, 500, 200]
    assert client.get(url).text == "ok k"
    assert client.get(site.url("/flaky/k?fail=1")).status_code == 503


def test_retry_after_sends_seconds_or_a_date(site: TestSite, client: httpx.Client) -> None:
    limited = client.get(site.url("/retry-after/a?seconds=2&times=1"))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    assert client.get(site.url("/retry-after/a?seconds=2&times=1")).text == "ok a"

    dated = client.get(site.url("/retry-after/b?seconds=30&date=1&status=503"))
    assert dated.status_code == 503
    when = email.utils.parsedate_to_datetime(dated.headers["retry-after"]).timestamp()
    assert abs(when - (time.time() + 30)) < 3


def test_gzip_bomb_inflates_to_the_requested_size(site: TestSite, client: httpx.Client) -> None:
    size = 10_000_000
    with client.stream("GET", site.url(f"/gzip-bomb?size={size}")) as response:
        assert response.headers["content-encoding"] == "gzip"
        packed = b"".join(response.iter_raw())
    assert len(packed) == int(response.headers["content-length"]) < size // 500

    inflater = zlib.decompressobj(wbits=31)
    inflated = inflater.decompress(packed, size + 1)
    assert inflater.eof
    assert len(inflated) == size
    assert inflated.count(0) == size


def test_hosts_are_distinct_loopback_addresses(site: TestSite, client: httpx.Client) -> None:
    addresses = [host.rpartition(":")[0] for host in site.hosts]
    assert addresses == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    for i in range(3):
        assert client.get(site.url("/json", i)).json() == {"ok": True, "items": [1, 2, 3]}
    assert [hit.host for hit in site.log] == list(site.hosts)


def test_robots_is_configurable(site: TestSite, client: httpx.Client) -> None:
    assert client.get(site.url("/robots.txt")).status_code == 404
    site.robots = "User-agent: *\nDisallow: /private/\n"
    robots = client.get(site.url("/robots.txt"))
    assert (robots.status_code, robots.text) == (200, site.robots)
    site.robots_status = 500
    assert client.get(site.url("/robots.txt")).status_code == 500
    assert client.get(site.url("/private/x")).status_code == 200


def test_redirects(site: TestSite, client: httpx.Client) -> None:
    moved = client.get(site.url("/redirect?to=/leaf/1&status=301"))
    assert (moved.status_code, moved.headers["location"]) == (301, "/leaf/1")
    chain = client.get(site.url("/redirect-chain/3"), follow_redirects=True)
    assert (chain.status_code, chain.text, len(chain.history)) == (200, "end", 3)


def test_keep_alive_reuses_one_connection(site: TestSite, client: httpx.Client) -> None:
    for i in range(3):
        client.get(site.url(f"/leaf/{i}"))
    big = client.get(site.url("/big?size=200000"))
    assert len(big.content) == int(big.headers["content-length"]) == 200_000
    assert site.connections(0) == 1


def test_nolength_body_ends_when_the_server_closes(site: TestSite) -> None:
    connection = http.client.HTTPConnection(site.host(0), timeout=10)
    try:
        connection.request("GET", "/nolength?size=150000")
        response = connection.getresponse()
        assert response.getheader("content-length") is None
        assert response.getheader("connection") == "close"
        assert len(response.read()) == 150_000
    finally:
        connection.close()


def test_text_pages_carry_their_encoding_hints(site: TestSite, client: httpx.Client) -> None:
    header = client.get(site.url("/charset/header"))
    assert header.headers["content-type"] == "text/html; charset=iso-8859-1"
    assert "café".encode("latin-1") in header.content
    assert "café €".encode("cp1252") in client.get(site.url("/charset/meta")).content
    assert client.get(site.url("/charset/bom")).content.startswith(b"\xef\xbb\xbf")
    assert "café".encode() in client.get(site.url("/charset/none")).content


def test_echo_returns_what_it_received(site: TestSite, client: httpx.Client) -> None:
    seen = client.post(site.url("/echo?q=1"), content=b"payload", headers={"X-Test": "y"}).json()
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/echo?q=1", "payload")
    assert seen["headers"]["x-test"] == "y"
    assert client.get(site.url("/status/418")).status_code == 418
    assert client.get(site.url("/nowhere")).status_code == 404


def test_stop_ends_every_thread_despite_open_connections() -> None:
    baseline = set(threading.enumerate())
    with httpx.Client(trust_env=False, timeout=10) as http:
        with TestSite() as site:
            http.get(site.url("/leaf/0"))  # the client keeps this connection open past stop()
            assert len(set(threading.enumerate()) - baseline) == 4  # 3 servers, 1 handler
        assert set(threading.enumerate()) - baseline == set()
