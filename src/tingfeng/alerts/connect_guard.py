"""The address guard for apprise's own connections, checked when they are made.

apprise sends through `requests` (and `smtplib` for mailto://), not through our guarded
httpx transport. Many of its URLs name a host of the administrator's choosing (ntfy://,
gotify://, rocket://, mailto://…), and an endpoint is checked when the channel is saved, but a
DNS answer can change between that check and the connection (rebinding). So while
`guarded_connections` is active in a thread, every TCP connection that thread opens through
urllib3 or `socket.create_connection` resolves the host, refuses internal addresses that
`fetch_allowed_networks` does not open, and connects to exactly the address it checked.
Other threads are untouched.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tingfeng.collect.ssrf import Network, check_addresses, resolve_host

_state = threading.local()
_install_lock = threading.Lock()
_installed = False


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        allowed: Sequence[Network] | None = getattr(_state, "allowed", None)
        if allowed is None:
            return original(address, *args, **kwargs)
        host, port = str(address[0]).strip("[]"), int(address[1])
        addresses = resolve_host(host, port)
        check_addresses(host, addresses, allowed)  # BlockedAddressError, a FetchError
        failure: OSError | None = None
        for checked in addresses:
            try:
                return original((checked, port), *args, **kwargs)
            except OSError as exc:
                failure = exc
        assert failure is not None
        raise failure

    return create_connection


def _install() -> None:
    """Wrap the two connection makers once per process (a no-op outside `guarded_connections`)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import urllib3.util.connection as urllib3_connection

        urllib3_connection.create_connection = _guarded(urllib3_connection.create_connection)  # type: ignore[assignment]
        socket.create_connection = _guarded(socket.create_connection)  # type: ignore[assignment]
        _installed = True


@contextmanager
def guarded_connections(allowed: Sequence[Network]) -> Iterator[None]:
    """Within: this thread's urllib3 and socket.create_connection connections are checked."""
    _install()
    previous = getattr(_state, "allowed", None)
    _state.allowed = list(allowed)
    try:
        yield
    finally:
        _state.allowed = previous
