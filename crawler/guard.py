"""The address guard: which IP addresses a crawl may connect to. A pure policy, no I/O; the
transports ask it after resolution and before connecting, so DNS cannot route around it.

By default a crawl reaches public addresses only. Loopback, private, link-local, shared (CGNAT),
multicast and reserved addresses, and cloud metadata services, are refused, whatever form the
address takes (IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 they carry).
Exceptions: the exact host and port of each start request, the configured proxy and each
``meta["proxy"]`` a request names, and every
private address with ``allow_private_addresses`` (metadata services still need to be a start
host then). The README's "Safety" section states the rule for users.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

from crawler.errors import AddressRefused
from crawler.urls import is_http, standard_url

IPAddress = IPv4Address | IPv6Address
Endpoint = tuple[str, int]  # (host as compared here, port)

METADATA = "cloud metadata"
# Services that hand out the credentials of the machine the crawler runs on. 168.63.129.16 is a
# public address: only this list keeps a crawl away from it.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, Hetzner...
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::23",  # the same over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
        "169.254.0.23",  # Tencent Cloud
        "192.0.0.192",  # Oracle Cloud, older instances
    )
)
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the IPv4 is the last 32 bits
_SHARED = IPv4Network("100.64.0.0/10")  # RFC 6598: carrier-grade NAT, neither private nor global
_THIS_NETWORK = IPv4Network("0.0.0.0/8")  # Linux connects 0.0.0.0 to the local host
_LOOPBACK = IPv4Address("127.0.0.1")


def _ipv4_compatible(address: IPAddress) -> bool:
    return isinstance(address, IPv6Address) and int(address) >> 32 == 0


def _site_local(address: IPAddress) -> bool:
    return isinstance(address, IPv6Address) and address.is_site_local


# First match names the class. The stdlib's tables (is_private, is_global, ...) change between
# Python releases; each class the README names is tested here by a property or network whose
# meaning does not, and ``not is_global`` catches the rest of IANA's special-purpose ranges.
_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("this-network", lambda a: isinstance(a, IPv4Address) and a in _THIS_NETWORK),
    ("IPv4-compatible", _ipv4_compatible),  # deprecated ::a.b.c.d: no one routes it on purpose
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),  # Python calls 224.0.0.0/4 global
    ("shared (CGNAT)", lambda a: isinstance(a, IPv4Address) and a in _SHARED),
    ("reserved", lambda a: a.is_reserved),  # 240.0.0.0/4 and broadcast too
    ("private", lambda a: a.is_private),  # RFC 1918, unique-local fc00::/7, documentation...
    ("site-local", _site_local),
    ("non-global", lambda a: not a.is_global),
)


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address reaches: IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4.

    >>> embedded_ipv4(IPv6Address("::ffff:127.0.0.1")), embedded_ipv4(IPv6Address("2002:a00:1::"))
    (IPv4Address('127.0.0.1'), IPv4Address('10.0.0.1'))
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


@functools.lru_cache(maxsize=4096)
def address_class(address: IPAddress) -> str | None:
    """The class that makes ``address`` refused by default; None for a public address.

    >>> address_class(ip_address("10.1.2.3")), address_class(ip_address("169.254.169.254"))
    ('private', 'cloud metadata')
    >>> address_class(ip_address("::ffff:192.168.0.1")), address_class(ip_address("8.8.8.8"))
    ('private', None)
    """
    if isinstance(address, IPv6Address) and (inner := embedded_ipv4(address)) is not None:
        return address_class(inner)
    if address in METADATA_ADDRESSES:
        return METADATA
    return next((name for name, test in _CLASSES if test(address)), None)


@functools.lru_cache(maxsize=4096)
def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one (IPv6 with or without brackets), else None."""
    try:
        return ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return None


def is_localhost_name(host: str) -> bool:
    """``localhost`` and its subdomains, which RFC 6761 reserves for the loopback interface."""
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def endpoint(host: str, port: int) -> Endpoint:
    """How the guard compares hosts: an IP address in one spelling, a name in lower case.

    >>> endpoint("[0:0::1]", 80), endpoint("Example.COM", 443)
    (('::1', 80), ('example.com', 443))
    """
    literal = ip_literal(host)
    return (str(literal) if literal is not None else host.lower(), port)


def url_endpoint(url: str) -> Endpoint | None:
    """The host and port a URL connects to, as the standard reads it; None for a non-http URL.

    >>> url_endpoint("http://0x7f000001:8080/a"), url_endpoint("HTTPS://[::1]/")
    (('127.0.0.1', 8080), ('::1', 443))
    """
    if not is_http(url):
        return None
    parts = urlsplit(standard_url(url))
    return endpoint(parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme])


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AddressGuard:
    """Decides, for each address a host is or resolves to, whether the crawl may connect.

    >>> guard = AddressGuard()
    >>> guard.refusal("127.0.0.1", 8080, ip_address("127.0.0.1"))
    'loopback'
    >>> guard.exempt_start("http://127.0.0.1:8080/")
    >>> guard.vet("127.0.0.1", 8080, [ip_address("127.0.0.1")])
    [IPv4Address('127.0.0.1')]
    """

    def __init__(self, *, allow_private: bool = False, trusted: Iterable[Endpoint] = ()) -> None:
        self.allow_private = allow_private
        self.trusted = set(trusted)
        self.starts: set[Endpoint] = set()

    def __repr__(self) -> str:
        private = "allowed" if self.allow_private else "refused"
        return f"<AddressGuard private={private} start_hosts={len(self.starts)}>"

    def exempt_start(self, url: str) -> None:
        """Let the crawl reach ``url``'s exact host and port even if it is private."""
        if (key := url_endpoint(url)) is not None:
            self.starts.add(key)

    def trust_proxy(self, url: str) -> None:
        """Let the crawl reach a proxy's host and port, as the configured proxy: a spider's
        ``meta["proxy"]`` is the operator's choice too."""
        if (key := url_endpoint(url)) is not None:
            self.trusted.add(key)

    def refusal(self, host: str, port: int, address: IPAddress) -> str | None:
        """The class that refuses connecting to ``address`` for ``host:port``; None if allowed."""
        kind = address_class(address)
        if kind is None:
            return None
        key = endpoint(host, port)
        if key in self.trusted:
            return None
        start = key in self.starts
        if kind == METADATA:
            return None if start and self.allow_private else kind
        return None if start or self.allow_private else kind

    def vet(self, host: str, port: int, addresses: Sequence[IPAddress]) -> list[IPAddress]:
        """The addresses ``host:port`` may be reached at, in their order; raises AddressRefused
        when there is none (no address at all is the resolver's business, not refused here)."""
        allowed = [a for a in addresses if self.refusal(host, port, a) is None]
        if addresses and not allowed:
            address = addresses[0]
            kind = self.refusal(host, port, address)
            inner = embedded_ipv4(address) if isinstance(address, IPv6Address) else None
            shown = f"{address} ({inner})" if inner else str(address)
            said = f"{shown} is" if ip_literal(host) == address else f"it resolves to {shown},"
            article = "an" if str(kind)[0] in "aeiouAEIOU" else "a"
            raise AddressRefused(_shown(host, port), f"{said} {article} {kind} address")
        return allowed

    def check_target(self, host: str, port: int) -> None:
        """Vet a host the transport will not resolve itself (an IP literal, or any host sent
        through a proxy, which resolves names): literals and localhost names are checked."""
        address = ip_literal(host)
        if address is None and is_localhost_name(host):
            address = _LOOPBACK
        if address is not None:
            self.vet(host, port, [address])
