"""Refusing requests to private and internal addresses (SSRF), since sources are user-supplied URLs.

The fetch errors live here, at the bottom of the import graph, because `robots` and `fetcher`
both raise them; import them from `tingfeng.collect.fetcher`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from tingfeng.collect.errors import CollectError

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(CollectError):
    """A request failed; `message` says why and what to do."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.url = url
        self.status = status


class BlockedAddressError(FetchError):
    """The URL points at a private, internal or non-web address."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, url=url, permanent=True)


# Blocked on top of what `ipaddress` calls private/reserved: not all of these are covered by
# `is_private` in every Python version.
_EXTRA_BLOCKED: tuple[Network, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT, often internal in clouds
    ipaddress.ip_network("169.254.169.254/32"),  # cloud metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(networks: Sequence[str]) -> list[Network]:
    """CIDR strings as networks; a bad entry is a configuration error worth saying clearly."""
    parsed: list[Network] = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise FetchError(
                f"fetch_allowed_networks contains {text!r}, which is not a network such as "
                "10.0.0.0/8: fix the setting.",
                permanent=True,
            ) from exc
    return parsed


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _blocked_reason(address: IPAddress) -> str | None:
    if any(address in network for network in _EXTRA_BLOCKED if network.version == address.version):
        if str(address) in {"169.254.169.254", "fd00:ec2::254"}:
            return "a cloud metadata address"
        return "an internal address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def blocked_reason(address: str, allowed: Sequence[Network] = ()) -> str | None:
    """Why `address` may not be contacted (e.g. "a private address"), or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # These forms reach the IPv4 address they carry, so that is what gets judged
            # (NAT64 prefixes themselves count as reserved, yet serve IPv6-only hosts).
            candidates = [embedded]
    for candidate in (ip, *candidates):
        if any(candidate in net for net in allowed if net.version == candidate.version):
            return None
    for candidate in candidates:
        reason = _blocked_reason(candidate)
        if reason:
            return reason
    return None


def default_resolve(host: str, port: int) -> list[str]:
    """Addresses of `host` from the system resolver, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


def resolve_host(
    host: str, port: int, resolve: Resolver | None = None, url: str | None = None
) -> list[str]:
    """`host`'s addresses (itself if an IP literal); FetchError when it cannot be resolved."""
    literal = _literal_ip(host)
    if literal is not None:
        return [host]
    try:
        addresses = (resolve or default_resolve)(host, port)
    except (OSError, UnicodeError) as exc:
        temporary = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
        raise FetchError(
            f"could not resolve host {host}: check the address"
            + (" (the DNS server did not answer; will try again)" if temporary else ""),
            url=url,
            permanent=not temporary,
        ) from exc
    if not addresses:
        raise FetchError(
            f"could not resolve host {host}: check the address", url=url, permanent=True
        )
    return addresses


def check_addresses(
    host: str, addresses: Sequence[str], allowed: Sequence[Network], url: str | None = None
) -> None:
    """BlockedAddressError if any of `host`'s addresses is internal and not allowed."""
    for address in addresses:
        reason = blocked_reason(address, allowed)
        if reason:
            where = f"{host} is" if _literal_ip(host) else f"{host} resolves to {address},"
            target = url or host
            raise BlockedAddressError(
                f"refused to fetch {target} because {where} {reason}; add its network to "
                "fetch_allowed_networks if this source is meant to reach it.",
                url=url,
            )


def split_url(url: str) -> tuple[str, str, int]:
    """`(scheme, host, port)` of an http(s) URL; BlockedAddressError for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedAddressError(
            f"refused to fetch {url!r}: it is not a valid web address; check the URL.", url=url
        ) from exc
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise BlockedAddressError(
            f"refused to fetch {url!r}: only http and https addresses can be collected; "
            "check the URL.",
            url=url,
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedAddressError(
            f"refused to fetch {url!r}: the address has no host name; check the URL.", url=url
        )
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise BlockedAddressError(
            f"refused to fetch {url!r}: the host name is not valid; check the URL.", url=url
        ) from exc
    return scheme, host.lower(), port or (443 if scheme == "https" else 80)


def check_url(
    url: str,
    allowed_networks: Sequence[str] = (),
    resolve: Resolver | None = None,
) -> None:
    """Raise BlockedAddressError unless `url` is http(s) to public (or allowed) addresses only."""
    _scheme, host, port = split_url(url)
    addresses = resolve_host(host, port, resolve, url)
    check_addresses(host, addresses, parse_networks(allowed_networks), url)
