"""The one HTTP client every connector uses: guarded, polite, bounded and retrying.

Every request and every redirect hop is checked against private addresses (again at connect
time, so DNS rebinding cannot slip through), obeys robots.txt, waits its turn per host, and is
cut off when it is too slow or too large. Errors carry a sentence a person can act on.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property, lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from tingfeng.collect import charset
from tingfeng.collect.robots import (
    ROBOTS_MAX_BYTES,
    RobotsAnswer,
    RobotsCache,
    RobotsDisallowedError,
)
from tingfeng.collect.ssrf import (
    BlockedAddressError,
    FetchError,
    Network,
    Resolver,
    check_addresses,
    parse_networks,
    resolve_host,
    split_url,
)
from tingfeng.settings import Settings

__all__ = [
    "BlockedAddressError",
    "FetchError",
    "FetchResult",
    "Fetcher",
    "ResponseTooLargeError",
    "RobotsDisallowedError",
]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_RETRY_AFTER_S = 60.0
# Validators of this many URLs are kept per source; older ones are dropped first.
MAX_VALIDATORS = 500
_DRAIN_BYTES = 64 * 1024
# Credentials a connector sends to one site must not follow a redirect to another.
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class ResponseTooLargeError(FetchError):
    """The response body is larger than the configured limit."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message, url=url, status=status, permanent=True)


@dataclass
class FetchResult:
    """A response that arrived whole."""

    url: str
    status: int
    headers: dict[str, str]
    content: bytes
    encoding: str | None
    not_modified: bool = False
    elapsed_s: float = 0.0

    @cached_property
    def _decoded(self) -> tuple[str, str]:
        return charset.decode(self.content, self.encoding)

    @property
    def text(self) -> str:
        """The body as text, in the encoding the bytes really use (see `charset.decode`)."""
        return self._decoded[0]

    @property
    def text_encoding(self) -> str:
        """The encoding `text` was decoded with."""
        return self._decoded[1]

    def json(self) -> Any:
        """The body parsed as JSON; FetchError when it is something else (an HTML error page)."""
        try:
            return json.loads(self.text)
        except ValueError as exc:
            where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise FetchError(
                f"the response from {self.url} is not valid JSON ({_reason_of(exc)}{where}); "
                "check that the URL points to a JSON API.",
                url=self.url,
                status=self.status,
            ) from exc


def _reason_of(exc: Exception) -> str:
    return getattr(exc, "msg", None) or str(exc) or type(exc).__name__


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    if size >= 1024:
        return f"{size / 1024:.3g} KB"
    return f"{size} bytes"


def _status_phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or url).lower()


def _origin_key(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks the address at connect time, then connects to that very address."""

    def __init__(self, allowed: Sequence[Network], resolve: Resolver | None) -> None:
        self._allowed = allowed
        self._resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_host(host, port, self._resolve)
        check_addresses(host, addresses, self._allowed)
        failure: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


@lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # Loading the CA bundle takes about 10 ms of CPU, with the GIL held. Each alert sent
    # through a webhook builds a transport, and built afresh this was nine tenths of the
    # sender's time at 50 alerts/s. A context is safe to share between connections and
    # threads; keyed by SSL_CERT_FILE / SSL_CERT_DIR, which httpx honours.
    return httpx.create_ssl_context()


def shared_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context of outgoing requests, built once per CA setting."""
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend, limits: httpx.Limits) -> None:
        context = shared_ssl_context()
        super().__init__(verify=context, limits=limits, trust_env=False)
        # httpx offers no public way to pass a network backend, so the pool is built here
        # with the same settings HTTPTransport would use.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@dataclass
class _HostGate:
    semaphore: threading.BoundedSemaphore
    interval_s: float
    last_start: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Politeness:
    """Per-host concurrency limit and minimum interval between request starts."""

    def __init__(
        self,
        concurrency: int,
        interval_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._concurrency = max(1, concurrency)
        self._interval_s = max(0.0, interval_s)
        self._clock = clock
        self._sleep = sleep
        self._gates: dict[str, _HostGate] = {}
        self._lock = threading.Lock()

    def _gate(self, host: str) -> _HostGate:
        with self._lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = _HostGate(threading.BoundedSemaphore(self._concurrency), self._interval_s)
                self._gates[host] = gate
            return gate

    def set_crawl_delay(self, host: str, delay_s: float | None) -> None:
        gate = self._gate(host)
        with gate.lock:
            gate.interval_s = max(self._interval_s, delay_s or 0.0)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        gate = self._gate(host)
        gate.semaphore.acquire()
        try:
            # The start time is reserved under the lock and waited for outside it, so
            # concurrent requests line up one interval apart without serialising the waits.
            with gate.lock:
                now = self._clock()
                start = (
                    now if gate.last_start is None else max(now, gate.last_start + gate.interval_s)
                )
                gate.last_start = start
            if start > now:
                self._sleep(start - now)
            yield
        finally:
            gate.semaphore.release()


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, error: FetchError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """Thread-safe HTTP GET for connectors; one per process or worker pool is enough."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._resolve = resolve
        self._allowed = parse_networks(settings.fetch_allowed_networks)
        self._random = random.Random()
        self._politeness = _Politeness(
            settings.fetch_per_host_concurrency, settings.fetch_per_host_interval_s, clock, sleep
        )
        self._robots = RobotsCache(settings.fetch_user_agent, self._fetch_robots, clock=clock)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._client = httpx.Client(
            transport=_GuardedTransport(_GuardedBackend(self._allowed, resolve), limits),
            headers={"User-Agent": settings.fetch_user_agent},
            follow_redirects=False,
            trust_env=False,
        )

    # -- public -------------------------------------------------------------------------------

    def get(
        self,
        url: str,
        *,
        params: dict | None = None,
        headers: dict | None = None,
        validators: dict | None = None,
        max_bytes: int | None = None,
        check_robots: bool = True,
    ) -> FetchResult:
        """GET `url`, following redirects; FetchError (or a subclass) when it cannot be had.

        `validators` is the caller's saved state: ETag/Last-Modified are kept there per URL and
        sent back next time, and a 304 answer comes back with `not_modified=True`.
        """
        split_url(url)  # an ftp: or hostless URL gets the plain refusal, not an httpx error
        target = self._build_url(url, params)
        request_headers = {str(k): str(v) for k, v in (headers or {}).items()}
        if validators is not None:
            request_headers.update(_conditional_headers(validators.get(target)))
        limit = self.settings.fetch_max_bytes if max_bytes is None else max_bytes
        robots = check_robots and self.settings.fetch_respect_robots
        result = self._follow(target, request_headers, limit, robots=robots)
        if validators is not None:
            _remember_validators(validators, target, result)
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------------------------

    @staticmethod
    def _build_url(url: str, params: dict | None) -> str:
        try:
            built = httpx.URL(url)
            if params:
                built = built.copy_merge_params(params)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchError(
                f"{url!r} is not a valid web address ({exc}); check the URL.",
                url=url,
                permanent=True,
            ) from exc
        return str(built)

    def _guard(self, url: str) -> None:
        _scheme, host, port = split_url(url)
        addresses = resolve_host(host, port, self._resolve, url)
        check_addresses(host, addresses, self._allowed, url)

    def _fetch_robots(self, robots_url: str) -> RobotsAnswer:
        try:
            result = self._follow(
                robots_url,
                {},
                ROBOTS_MAX_BYTES,
                robots=False,
                raise_for_status=False,
                truncate=True,
            )
        except FetchError as exc:
            return RobotsAnswer(error=exc)
        return RobotsAnswer(status=result.status, body=result.content)

    def _follow(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        *,
        robots: bool,
        raise_for_status: bool = True,
        truncate: bool = False,
    ) -> FetchResult:
        current = url
        max_redirects = max(0, self.settings.fetch_max_redirects)
        for _hop in range(max_redirects + 1):
            self._guard(current)
            if robots:
                delay = self._robots.check(current)
                self._politeness.set_crawl_delay(_host_of(current), delay)
            result = self._with_retries(current, headers, limit, raise_for_status, truncate)
            location = result.headers.get("location")
            if result.status not in REDIRECT_STATUSES:
                return result
            if not location:
                if not raise_for_status:
                    return result
                raise FetchError(
                    f"{current} answered {_status_phrase(result.status)} without saying where "
                    "to go; check the URL in a browser.",
                    url=current,
                    status=result.status,
                    permanent=True,
                )
            try:
                following = self._build_url(str(httpx.URL(current).join(location)), None)
            except httpx.InvalidURL as exc:
                raise FetchError(
                    f"{current} redirects to {location!r}, which is not a valid web address; "
                    "check the URL in a browser.",
                    url=current,
                    status=result.status,
                    permanent=True,
                ) from exc
            if _origin_key(following) != _origin_key(current):
                headers = {
                    k: v for k, v in headers.items() if k.lower() not in _ORIGIN_BOUND_HEADERS
                }
            log.debug("redirect %s -> %s", current, following)
            current = following
        raise FetchError(
            f"too many redirects from {url} (more than {max_redirects}, a redirect loop?); "
            "open it in a browser and use the address it ends up at.",
            url=url,
            permanent=True,
        )

    def _with_retries(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        raise_for_status: bool,
        truncate: bool,
    ) -> FetchResult:
        attempts = max(0, self.settings.fetch_retries) + 1
        for attempt in range(attempts):
            try:
                return self._once(url, headers, limit, raise_for_status, truncate)
            except _Retry as retry:
                if attempt + 1 >= attempts:
                    raise retry.error from retry.__cause__
                delay = self._backoff(attempt, retry.retry_after)
                log.info("retrying %s in %.1f s: %s", url, delay, retry.error.message)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        # Full jitter: spreads out workers that failed together instead of retrying in step.
        return self._random.uniform(0.0, self.settings.fetch_backoff_s * (2**attempt))

    def _once(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        raise_for_status: bool,
        truncate: bool,
    ) -> FetchResult:
        settings = self.settings
        host = _host_of(url)
        total_s = settings.fetch_total_timeout_s
        timeout = httpx.Timeout(
            connect=min(settings.fetch_connect_timeout_s, total_s),
            read=min(settings.fetch_read_timeout_s, total_s),
            write=min(settings.fetch_read_timeout_s, total_s),
            pool=total_s,
        )
        with self._politeness.slot(host):
            started = time.monotonic()
            deadline = started + total_s
            request = self._client.build_request("GET", url, headers=headers, timeout=timeout)
            try:
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise _Retry(self._timeout_error(url, exc)) from exc
            except httpx.TransportError as exc:
                if _caused_by(exc, ssl.SSLCertVerificationError):
                    # Retrying at once cannot fix a certificate; the next scheduled run may.
                    raise FetchError(
                        f"the TLS certificate of {host} is not valid ({_reason_of(exc)}), so "
                        f"{url} was not fetched; the site must fix its certificate.",
                        url=url,
                    ) from exc
                raise _Retry(
                    FetchError(
                        f"could not connect to {host} for {url} ({_reason_of(exc)}); check that "
                        "the site is up and the address is right.",
                        url=url,
                    )
                ) from exc
            try:
                status = response.status_code
                if not 200 <= status < 300:
                    _drain(response)
                if status in RETRY_STATUSES:
                    raise _Retry(
                        self._status_error(url, status),
                        _retry_after(response.headers.get("retry-after")),
                    )
                success = 200 <= status < 300
                expected = success or status == 304 or status in REDIRECT_STATUSES
                if raise_for_status and not expected:
                    raise self._status_error(url, status)
                content = (
                    self._read_body(response, url, limit, deadline, truncate) if success else b""
                )
            finally:
                response.close()
            return FetchResult(
                url=url,
                status=status,
                headers={name: response.headers[name] for name in response.headers},
                content=content,
                encoding=response.charset_encoding,
                not_modified=status == 304,
                elapsed_s=time.monotonic() - started,
            )

    def _read_body(
        self, response: httpx.Response, url: str, limit: int, deadline: float, truncate: bool
    ) -> bytes:
        host = _host_of(url)
        declared = response.headers.get("content-length", "").strip()
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise self._too_large(url, limit, response.status_code)
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise _Retry(
                        FetchError(
                            f"{url} took more than {self.settings.fetch_total_timeout_s:g} s to "
                            "download, so it was cut off; the site may be slow, try again later "
                            "or raise fetch_total_timeout_s.",
                            url=url,
                        )
                    )
                room = limit - len(body)
                if len(chunk) > room:
                    if truncate:
                        body += chunk[:room]
                        break
                    raise self._too_large(url, limit, response.status_code)
                body += chunk
        except httpx.TimeoutException as exc:
            raise _Retry(self._timeout_error(url, exc)) from exc
        except httpx.DecodingError as exc:
            raise FetchError(
                f"the response from {host} could not be decompressed ({_reason_of(exc)}); "
                "the site sent a broken page, try again later.",
                url=url,
            ) from exc
        except httpx.TransportError as exc:
            raise _Retry(
                FetchError(
                    f"the connection closed before the whole response arrived from {url}; "
                    "this is retried later.",
                    url=url,
                    status=response.status_code,
                )
            ) from exc
        return bytes(body)

    # -- error sentences ----------------------------------------------------------------------

    def _too_large(self, url: str, limit: int, status: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the response from {_host_of(url)} is larger than {_human_size(limit)} ({url}); "
            "raise fetch_max_bytes if this source really needs such large pages.",
            url=url,
            status=status,
        )

    def _timeout_error(self, url: str, exc: httpx.TimeoutException) -> FetchError:
        settings = self.settings
        total_s = settings.fetch_total_timeout_s
        if isinstance(exc, httpx.ConnectTimeout):
            return FetchError(
                f"could not connect to {_host_of(url)} within "
                f"{min(settings.fetch_connect_timeout_s, total_s):g} s for {url}; the site may "
                "be down, try again later.",
                url=url,
            )
        return FetchError(
            f"{url} did not answer within {min(settings.fetch_read_timeout_s, total_s):g} s; "
            "the site may be slow or down, try again later or raise fetch_read_timeout_s.",
            url=url,
        )

    def _status_error(self, url: str, status: int) -> FetchError:
        phrase = _status_phrase(status)
        attempts = max(0, self.settings.fetch_retries) + 1
        if status == 429:
            return FetchError(
                f"{url} answered {phrase} {attempts} time(s); the site is rate-limiting us, "
                "so fetch this source less often.",
                url=url,
                status=status,
            )
        if status >= 500:
            return FetchError(
                f"{url} answered {phrase}; the site has a problem on its side, this is "
                "retried later.",
                url=url,
                status=status,
            )
        if status in {401, 403}:
            advice = "the site refuses access (it may need a login or block crawlers)"
        elif status == 410:
            advice = "the page is gone for good: update or remove the source"
        else:
            advice = "check the URL"
        return FetchError(
            f"{url} answered {phrase}: {advice}.", url=url, status=status, permanent=True
        )


def _drain(response: httpx.Response) -> None:
    """Read a small error or redirect body, so the connection is reused instead of reset."""
    declared = response.headers.get("content-length", "").strip()
    if not declared.isdigit() or int(declared) > _DRAIN_BYTES:
        return
    try:
        for _chunk in response.iter_raw():
            pass
    except httpx.HTTPError:
        pass  # the connection is dropped on close; nothing else depends on this body


def _conditional_headers(saved: Any) -> dict[str, str]:
    if not isinstance(saved, dict):
        return {}
    headers: dict[str, str] = {}
    if saved.get("etag"):
        headers["If-None-Match"] = str(saved["etag"])
    if saved.get("last_modified"):
        headers["If-Modified-Since"] = str(saved["last_modified"])
    return headers


def _remember_validators(validators: dict, key: str, result: FetchResult) -> None:
    """Keep ETag/Last-Modified of `key` in the caller's state, newest last, bounded in size."""
    if result.not_modified:
        saved = validators.pop(key, None)
        if isinstance(saved, dict):
            if result.headers.get("etag"):
                saved["etag"] = result.headers["etag"]
            validators[key] = saved
        return
    if not 200 <= result.status < 300:
        return
    fresh = {
        name: result.headers[header]
        for name, header in (("etag", "etag"), ("last_modified", "last-modified"))
        if result.headers.get(header)
    }
    validators.pop(key, None)
    if fresh:
        validators[key] = fresh
    while len(validators) > MAX_VALIDATORS:
        del validators[next(iter(validators))]
