"""A net under the attack tests: this process may reach loopback only, and says when it tried.

The fuzzer makes up web addresses (a source's URL, a lead's link) and the SSRF tests point the
application at private and metadata addresses on purpose. Should a guard of ours ever let one
through, the connection must still not leave this machine: `loopback_only()` makes every other
connection and every DNS lookup of a name that is not ours fail at once, and keeps a list of
them, so a test can also assert that nothing was even attempted.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass
class Attempts:
    """Connections and lookups that were stopped (the guard of the application failed)."""

    connects: list[str] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, what: str) -> None:
        with self.lock:
            (self.connects if kind == "connect" else self.lookups).append(what)


@contextmanager
def loopback_only(
    names: Callable[[str], list[str] | None] | None = None,
) -> Iterator[Attempts]:
    """Only loopback for this process while inside; `names` answers made-up host names
    (a list of addresses, or None for "no such name")."""
    attempts = Attempts()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if names is not None:
            answer = names(name.lower().rstrip("."))
            if answer is not None:
                infos = []
                for address in answer:
                    infos.extend(real_getaddrinfo(address, port, *args, **kwargs))
                return infos
        if not host or name.lower() in _LOCAL_NAMES or _is_loopback(name):
            return real_getaddrinfo(host, port, *args, **kwargs)
        try:
            # Numeric spellings (2130706433, 0x7f.1, 127.1) are read without asking DNS.
            return real_getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            attempts.note("lookup", name)
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no DNS in the tests") from None

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        return _is_loopback(str(address[0]))

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            attempts.note("connect", str(address[0]))
            raise ConnectionRefusedError(111, f"{address[0]}: only loopback in the tests")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            attempts.note("connect", str(address[0]))
            return 111
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
