"""The address guard on its own: which URLs and addresses are refused, and why."""

from __future__ import annotations

import re
import socket

import pytest

from tingfeng.collect.fetcher import BlockedAddressError, FetchError
from tingfeng.collect.ssrf import blocked_reason, check_url, parse_networks


def resolver(*addresses: str):
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a01:203::1",  # 6to4 of 10.1.2.3
        "64:ff9b::a01:203",  # NAT64 of 10.1.2.3
    ],
)
def test_internal_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(address) is not None
    with pytest.raises(BlockedAddressError) as info:
        check_url("http://site.example/", resolve=resolver(address))
    assert info.value.permanent
    assert "site.example" in info.value.message
    assert "fetch_allowed_networks" in info.value.message


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None
    check_url("https://site.example/path", resolve=resolver(address))


def test_any_internal_address_among_several_blocks() -> None:
    with pytest.raises(BlockedAddressError, match=re.escape("10.1.2.3")):
        check_url("http://site.example/", resolve=resolver("93.184.216.34", "10.1.2.3"))


def test_metadata_literal_is_named_as_such() -> None:
    resolve = resolver("93.184.216.34")
    with pytest.raises(BlockedAddressError, match="cloud metadata"):
        check_url("http://169.254.169.254/latest/meta-data/", resolve=resolve)
    assert resolve.calls == []  # an IP literal is not looked up


def test_ipv6_literal_and_port() -> None:
    with pytest.raises(BlockedAddressError, match="loopback"):
        check_url("http://[::1]:8080/")


def test_localhost_is_blocked_by_default() -> None:
    with pytest.raises(BlockedAddressError, match="loopback"):
        check_url("http://localhost:8000/")


def test_allowed_networks_open_a_hole() -> None:
    check_url("http://127.0.0.1:8000/", ["127.0.0.0/8"])
    check_url("http://intranet.example/", ["10.0.0.0/8"], resolve=resolver("10.1.2.3"))
    check_url("http://[::ffff:10.1.2.3]/", ["10.0.0.0/8"])
    with pytest.raises(BlockedAddressError):
        check_url("http://intranet.example/", ["10.0.0.0/8"], resolve=resolver("192.168.0.1"))


def test_resolver_gets_host_and_default_port() -> None:
    resolve = resolver("93.184.216.34")
    check_url("https://Site.Example./x", resolve=resolve)
    check_url("http://site.example:8080/x", resolve=resolve)
    assert resolve.calls == [("site.example", 443), ("site.example", 8080)]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://site.example/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/", "only http and https"),
        ("http:///path", "no host name"),
        ("http://site.example:99999/", "not a valid web address"),
    ],
)
def test_bad_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(BlockedAddressError, match=words):
        check_url(url, resolve=resolver("93.184.216.34"))


def test_unresolvable_host() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchError) as info:
        check_url("http://no-such-host.example/", resolve=fail)
    assert info.value.message == "could not resolve host no-such-host.example: check the address"
    assert not isinstance(info.value, BlockedAddressError)


def test_empty_resolution_is_a_resolution_failure() -> None:
    with pytest.raises(FetchError, match="could not resolve host"):
        check_url("http://site.example/", resolve=resolver())


def test_bad_allowed_network_is_a_clear_error() -> None:
    with pytest.raises(FetchError, match="fetch_allowed_networks"):
        parse_networks(["10.0.0.0/8", "intranet"])
