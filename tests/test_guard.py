"""The address guard: the decision for each class of address, the start-host and proxy
exceptions, both transports vetting what DNS answers, and crawls of the loopback site that
must not leave their start host.

Every connection a test here opens must go to loopback: ``loopback_only`` refuses and records
any other, so a guard that let one through fails the test without a packet leaving the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpcore
import httpx
import pytest
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult

from crawler import Response, Spider
from crawler.errors import AddressRefused, TransientError
from crawler.fetcher import Fetcher
from crawler.guard import METADATA, AddressGuard, address_class, url_endpoint
from crawler.request import Request
from crawler.settings import Settings
from crawler.transport import AiohttpTransport, GuardedNetworkBackend, HttpcoreTransport
from tests.crawling import crawl
from tests.site import TestSite

TRANSPORTS = ("aiohttp", "httpcore")


def _is_loopback(host: str) -> bool:
    address = ip_address(host.partition("%")[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Refuse (and remember) any connection to an address that is not loopback."""
    elsewhere: list[Any] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            elsewhere.append(address)
            return False
        return True

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise ConnectionRefusedError(f"the tests connect to loopback only, not {address}")
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        return connect_ex(sock, address) if allowed(address) else 111

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield elsewhere
    assert elsewhere == [], "a connection left loopback"


# --- the decision -------------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "this-network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("fec0::1", "site-local"),
    ("169.254.169.254", METADATA),
    ("fd00:ec2::254", METADATA),
    ("169.254.170.2", METADATA),
    ("100.100.100.200", METADATA),
    ("168.63.129.16", METADATA),  # public, but Azure's WireServer
    ("192.0.0.192", METADATA),
    # IPv6 forms of IPv4 addresses are judged by the IPv4 address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:2", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", METADATA),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", METADATA),
    ("64:ff9b::192.168.0.1", "private"),
    ("2002:7f00:1::", "loopback"),
    ("2002:a9fe:a9fe::1", METADATA),
    ("2002:c0a8:101::1", "private"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),  # deprecated: never a route to 8.8.8.8 on purpose
]
# Special-purpose ranges whose class name Python's tables choose; refused all the same.
NOT_GLOBAL = ["192.0.2.1", "198.18.0.1", "203.0.113.9", "2001:db8::1", "2001::1", "64:ff9b:1::1"]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "11.0.0.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above
    "172.15.255.255",
    "172.32.0.1",
    "169.253.255.255",
    "192.169.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 to a public address: how IPv6-only networks reach IPv4
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_each_class_of_address_is_refused(address: str, kind: str) -> None:
    assert address_class(ip_address(address)) == kind


@pytest.mark.parametrize("address", NOT_GLOBAL)
def test_other_special_purpose_ranges_are_refused(address: str) -> None:
    assert address_class(ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_class(ip_address(address)) is None
    assert AddressGuard().refusal("example.com", 80, ip_address(address)) is None


LOOPBACK = IPv4Address("127.0.0.1")


def test_a_start_host_is_exempt_at_its_exact_host_and_port() -> None:
    guard = AddressGuard()
    guard.exempt_start("http://127.0.0.1:8080/start")
    guard.exempt_start("https://intranet.test/")

    assert guard.refusal("127.0.0.1", 8080, LOOPBACK) is None
    assert guard.refusal("127.0.0.1", 8081, LOOPBACK) == "loopback"  # another port
    assert guard.refusal("localhost", 8080, LOOPBACK) == "loopback"  # another name for it
    assert guard.refusal("127.0.0.2", 8080, IPv4Address("127.0.0.2")) == "loopback"
    assert guard.refusal("::ffff:7f00:1", 8080, IPv6Address("::ffff:7f00:1")) == "loopback"
    assert guard.refusal("intranet.test", 443, IPv4Address("10.0.0.7")) is None
    assert guard.refusal("intranet.test", 80, IPv4Address("10.0.0.7")) == "private"  # http


def test_start_hosts_are_compared_as_the_url_standard_reads_them() -> None:
    guard = AddressGuard()
    guard.exempt_start("http://0x7f000001:8080/")
    guard.exempt_start("HTTP://[0:0::1]:8080/")
    guard.exempt_start("http://Intranet.TEST./")
    guard.exempt_start("mailto:someone@intranet.test")

    assert guard.starts == {("127.0.0.1", 8080), ("::1", 8080), ("intranet.test.", 80)}
    assert guard.refusal("[::1]", 8080, IPv6Address("::1")) is None
    assert url_endpoint("https://b\u00fccher.test/") == ("xn--bcher-kva.test", 443)


def test_metadata_services_need_both_a_start_host_and_allow_private_addresses() -> None:
    metadata = IPv4Address("169.254.169.254")
    default, intranet = AddressGuard(), AddressGuard(allow_private=True)
    for guard in (default, intranet):
        guard.exempt_start("http://169.254.169.254/latest/")

    assert default.refusal("169.254.169.254", 80, metadata) == METADATA
    assert intranet.refusal("169.254.169.254", 80, metadata) is None
    assert intranet.refusal("metadata.google.internal", 80, metadata) == METADATA
    assert intranet.refusal("intranet.test", 80, IPv4Address("10.1.2.3")) is None
    assert intranet.refusal("intranet.test", 80, LOOPBACK) is None


def test_the_proxy_is_trusted_at_its_own_host_and_port_only() -> None:
    guard = AddressGuard(trusted=[("proxy.internal", 3128)])
    assert guard.refusal("proxy.internal", 3128, IPv4Address("10.0.0.5")) is None
    assert guard.refusal("proxy.internal", 3129, IPv4Address("10.0.0.5")) == "private"


def test_vet_keeps_the_allowed_addresses_in_order_or_says_why_none() -> None:
    guard = AddressGuard()
    guard.exempt_start("http://mixed.test/")
    answers = [IPv4Address("169.254.169.254"), LOOPBACK, IPv4Address("10.0.0.1")]

    assert guard.vet("mixed.test", 80, answers) == [LOOPBACK, IPv4Address("10.0.0.1")]
    with pytest.raises(AddressRefused, match=r"internal\.test:80 refused: it resolves to 10\.0"):
        guard.vet("internal.test", 80, [IPv4Address("10.0.0.1")])
    with pytest.raises(AddressRefused, match=r"\[::1\]:80 refused: ::1 is a loopback address"):
        guard.vet("::1", 80, [IPv6Address("::1")])
    with pytest.raises(AddressRefused, match=r"::ffff:7f00:1 \(127\.0\.0\.1\) is a loopback"):
        guard.vet("::ffff:7f00:1", 80, [IPv6Address("::ffff:7f00:1")])
    assert guard.vet("nowhere.test", 80, []) == []  # no answer is the resolver's failure


@pytest.mark.parametrize(
    "host", ["127.0.0.2", "::ffff:7f00:1", "localhost", "LocalHost.", "a.localhost"]
)
def test_targets_not_resolved_here_are_checked_as_written(host: str) -> None:
    with pytest.raises(AddressRefused):
        AddressGuard().check_target(host, 80)


def test_names_and_public_literals_pass_the_target_check() -> None:
    AddressGuard().check_target("intranet.test", 80)  # its addresses are vetted when resolved
    AddressGuard().check_target("8.8.8.8", 80)


# --- the transports ------------------------------------------------------------------------------


class StubDNS(AbstractResolver):
    """Fixed answers per host name, for aiohttp (``resolve``) and httpcore (``lookup``)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def lookup(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return self.answers[host]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in await self.lookup(host, port)
        ]

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def guarded_client(
    transport: str, guard: AddressGuard, dns: StubDNS
) -> AsyncIterator[httpx.AsyncClient]:
    under: httpx.AsyncBaseTransport
    if transport == "aiohttp":
        under = AiohttpTransport(max_connections=4, guard=guard, resolver=dns)
    else:
        under = HttpcoreTransport(max_connections=4, guard=guard, resolve=dns.lookup)
    async with httpx.AsyncClient(transport=under) as client:
        yield client


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "answers",
    [["10.0.0.1"], ["169.254.169.254"], ["10.0.0.1", "fd00:ec2::254", "::ffff:192.168.0.1"]],
)
async def test_a_name_resolving_to_refused_addresses_connects_nowhere(
    transport: str, answers: list[str]
) -> None:
    dns = StubDNS({"internal.test": answers})
    async with guarded_client(transport, AddressGuard(), dns) as client:
        with pytest.raises(AddressRefused, match=r"internal\.test:8080 refused: it resolves to"):
            await client.get("http://internal.test:8080/")
    assert dns.asked == ["internal.test"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_only_the_allowed_answers_are_connected_to(site: TestSite, transport: str) -> None:
    port = int(site.host(0).rpartition(":")[2])
    guard = AddressGuard()
    guard.exempt_start(f"http://mixed.test:{port}/")  # loopback allowed; metadata never
    dns = StubDNS({"mixed.test": ["169.254.169.254", "fd00:ec2::254", "127.0.0.1"]})
    async with guarded_client(transport, guard, dns) as client:
        response = await client.get(f"http://mixed.test:{port}/leaf/1")

    assert response.status_code == 200
    assert site.hits("/leaf/1", 0) == 1
    assert site.log[0].headers["host"] == f"mixed.test:{port}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ip_literals_are_checked_though_never_resolved(
    site: TestSite, transport: str
) -> None:
    guard = AddressGuard()
    guard.exempt_start(site.url("/", 0))
    dns = StubDNS({})
    async with guarded_client(transport, guard, dns) as client:
        assert (await client.get(site.url("/leaf/1", 0))).status_code == 200
        mapped = f"http://[::ffff:7f00:1]:{site.host(0).rpartition(':')[2]}/leaf/3"
        for url in (site.url("/leaf/2", 1), mapped):
            with pytest.raises(AddressRefused):
                await client.get(url)

    assert dns.asked == []
    assert site.hits_total() == 1


async def test_a_name_that_changes_its_answer_is_vetted_on_each_connection(
    site: TestSite,
) -> None:
    """DNS rebinding: httpcore resolves for every new connection, and each answer is vetted
    (aiohttp keeps answers for a few seconds, and only ever vetted ones)."""
    port = int(site.host(0).rpartition(":")[2])
    guard = AddressGuard()
    guard.exempt_start(f"http://rebind.test:{port}/")
    dns = StubDNS({"rebind.test": ["127.0.0.1"]})
    async with guarded_client("httpcore", guard, dns) as client:
        # "Connection: close": the next request needs a new connection, so a new answer.
        first = await client.get(f"http://rebind.test:{port}/nolength?size=100")
        dns.answers["rebind.test"] = ["169.254.169.254"]
        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254, a cloud metadata address"):
            await client.get(f"http://rebind.test:{port}/closing/2?n=3")

    assert first.status_code == 200
    assert dns.asked == ["rebind.test", "rebind.test"]
    assert site.hits("/closing/2?n=3") == 0


async def test_tls_still_names_the_host_when_httpcore_connects_to_its_address() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("guarded.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        guard = AddressGuard()
        guard.exempt_start(f"https://guarded.test:{port}/")
        dns = StubDNS({"guarded.test": ["127.0.0.1"]})
        backend = GuardedNetworkBackend(guard, dns.lookup)
        async with httpcore.AsyncConnectionPool(
            ssl_context=client_context, network_backend=backend
        ) as pool:
            response = await pool.request("GET", f"https://guarded.test:{port}/")

    assert response.status == 200
    assert response.content == b"ok"  # the certificate for guarded.test was accepted


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_fetcher_refuses_at_once_and_sends_nothing(
    site: TestSite, transport: str
) -> None:
    fetcher = Fetcher(Settings(http_transport=transport))
    try:
        with pytest.raises(AddressRefused) as refused:
            await fetcher.fetch(Request(site.url("/leaf/1")))
    finally:
        await fetcher.close()

    assert not isinstance(refused.value, TransientError)  # never retried
    assert fetcher.requests_sent == 0
    assert site.hits_total() == 0


# --- crawls --------------------------------------------------------------------------------------


class Listener:
    """A loopback HTTP server that answers every request with an empty page and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def listening(host: str) -> AsyncIterator[Listener | None]:
    """A Listener on ``host``, or None when this machine cannot listen there (no IPv6)."""
    listener = Listener()
    try:
        server = await asyncio.start_server(listener.serve, host, 0)
    except OSError:
        yield None
        return
    async with server:
        listener.port = server.sockets[0].getsockname()[1]
        yield listener


def links_page(site: TestSite, hrefs: list[str]) -> str:
    return site.url("/links?h=" + quote(json.dumps(hrefs)))


def escape_spider(start: str) -> type[Spider]:
    class Escape(Spider):
        name = "escape"
        start_urls = (start,)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a[href]"):
                yield request

    return Escape


@contextlib.asynccontextmanager
async def escape_routes(site: TestSite) -> AsyncIterator[tuple[str, list[Listener], int]]:
    """The start URL of a page that links off its host every way the guard must catch, the
    listeners that stand in for other services, and how many links lead off the start host."""
    port0, port1 = (int(site.host(i).rpartition(":")[2]) for i in (0, 1))
    async with listening("127.0.0.1") as other_port, listening("::1") as ipv6:
        assert other_port is not None
        listeners = [other_port] + ([ipv6] if ipv6 is not None else [])
        hrefs = [
            site.url("/leaf/101", 1),  # the other loopback hosts of the site
            site.url("/leaf/102", 1),
            site.url("/leaf/103", 2),
            f"http://localhost:{port0}/leaf/104",  # the start host by another name
            f"http://[::ffff:127.0.0.1]:{port0}/leaf/105",  # and as an IPv4-mapped address
            f"http://0x7f000002:{port1}/leaf/106",  # 127.0.0.2, spelled in hex
            f"http://127.0.0.1:{other_port.port}/leaf/107",  # the start address, another port
            "/redirect?to=" + quote(site.url("/leaf/108", 2)),  # a hop to another host
        ]
        if ipv6 is not None:
            hrefs.append(f"http://[::1]:{ipv6.port}/leaf/109")
        site.robots_redirect = site.url("/robots.txt", 1)  # robots.txt, redirected off-host
        yield links_page(site, hrefs), listeners, len(hrefs)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_crawl_stays_on_its_start_host(
    site: TestSite, tmp_path: Path, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with escape_routes(site) as (start, listeners, escapes):
        with caplog.at_level(logging.INFO):
            result = await crawl(
                escape_spider(start),
                tmp_path,
                http_transport=transport,
                allow_private_addresses=False,
            )

    assert site.hits_total(1) == site.hits_total(2) == 0
    assert [listener.requests for listener in listeners] == [0] * len(listeners)
    assert site.hits("/robots.txt", 0) == 1  # answered with the redirect, not followed
    assert result.items == [{"url": start}]
    assert result.stats.failure_reasons == {"AddressRefused": escapes}
    assert result.stats.requests_total == site.hits_total(0) == 3  # robots, page, redirect
    warnings = Counter(
        record.getMessage().partition(" refused")[0]
        for record in caplog.records
        if record.name == "crawler.fetcher" and record.levelno == logging.WARNING
    )
    assert set(warnings.values()) == {1}  # once per host, though some had several requests
    assert f"connection to {site.host(1)}" in warnings
    assert len(warnings) == 4 + len(listeners)  # 127.0.0.2, .3, localhost, mapped, listeners


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_allow_private_addresses_lets_the_same_crawl_reach_them_all(
    site: TestSite, tmp_path: Path, transport: str
) -> None:
    async with escape_routes(site) as (start, listeners, escapes):
        result = await crawl(
            escape_spider(start), tmp_path, http_transport=transport, allow_private_addresses=True
        )

    assert (
        site.hits("/robots.txt", 1) == 4
    )  # its own, and the redirect from the start's three names
    assert site.hits("/leaf/101", 1) == site.hits("/leaf/106", 1) == 1
    assert site.hits("/leaf/104", 0) == site.hits("/leaf/105", 0) == 1
    assert site.hits("/leaf/108", 2) == 1
    assert [listener.requests for listener in listeners] == [2] * len(listeners)  # robots, page
    assert len(result.items) == 1 + escapes
    assert result.stats.failures == 0


async def test_a_resumed_crawl_keeps_its_start_host(site: TestSite, tmp_path: Path) -> None:
    """On resume the start request is a duplicate, never admitted: its host is exempt still."""

    class Paged(Spider):
        name = "paged"
        start_urls = (site.url("/paged?page=1"),)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for request in response.follow_all(css="a.next"):
                yield request

    state = tmp_path / "state.db"
    first = await crawl(Paged, tmp_path, state=state, max_pages=1, allow_private_addresses=False)
    second = await crawl(Paged, tmp_path, state=state, allow_private_addresses=False)

    assert first.stats.pages_crawled == 1
    assert second.stats.failures == 0
    assert second.stats.pages_crawled == 4  # this run's: the first run crawled page 1
    assert site.hits("/paged?page=5") == 1
