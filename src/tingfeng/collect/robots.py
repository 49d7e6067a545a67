"""robots.txt rules per site, cached for a day, as RFC 9309 describes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from protego import Protego

from tingfeng.collect.ssrf import FetchError

# RFC 9309: crawlers may cache robots.txt for up to a day and must read at least 500 KiB.
ROBOTS_TTL_S = 24 * 3600.0
ROBOTS_MAX_BYTES = 512 * 1024
# After a 5xx or network error the site counts as disallowed; this long, then we ask again.
ROBOTS_FAILURE_TTL_S = 10 * 60.0
# A Crawl-delay beyond this would park a worker thread for minutes per request.
MAX_CRAWL_DELAY_S = 60.0


class RobotsDisallowedError(FetchError):
    """robots.txt of the site forbids the URL to our user agent."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, url=url, permanent=True)


@dataclass
class RobotsAnswer:
    """What a robots.txt fetch gave: a status, or an error when nothing usable came back."""

    status: int = 0
    body: bytes = b""
    error: FetchError | None = None


# Fetches a robots.txt URL without raising on HTTP status.
RobotsFetch = Callable[[str], RobotsAnswer]


@dataclass
class _Entry:
    rules: Protego | None  # None: allow everything
    expires: float
    failure: FetchError | None = None


def product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched against: "Tingfeng" of "Tingfeng/0.1 (...)"."""
    token = user_agent.strip().split("/", 1)[0].split(None, 1)
    return token[0] if token else user_agent


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or default
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


class RobotsCache:
    """Thread-safe robots.txt cache keyed by origin (scheme, host, port)."""

    def __init__(
        self,
        user_agent: str,
        fetch: RobotsFetch,
        *,
        ttl_s: float = ROBOTS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user_agent = product_token(user_agent)
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        # One lock per origin: concurrent first requests to a site fetch robots.txt once.
        self._origin_locks: dict[str, threading.Lock] = {}

    def _origin_lock(self, origin: str) -> threading.Lock:
        with self._lock:
            return self._origin_locks.setdefault(origin, threading.Lock())

    def _entry(self, origin: str) -> _Entry:
        with self._origin_lock(origin):
            entry = self._entries.get(origin)
            if entry is None or entry.expires <= self._clock():
                entry = self._load(origin)
                self._entries[origin] = entry
            return entry

    def _load(self, origin: str) -> _Entry:
        robots_url = f"{origin}/robots.txt"
        answer = self._fetch(robots_url)
        now = self._clock()
        host = urlsplit(origin).hostname
        if answer.error is not None:
            if answer.error.permanent:
                # A robots.txt that redirects into a loop or to a refused address is
                # "unavailable" in RFC 9309 terms: no rules.
                return _Entry(None, now + self._ttl_s)
            failure = FetchError(
                f"could not read robots.txt of {host}, so its pages are not fetched until it "
                f"can be: {answer.error.message}",
                url=robots_url,
            )
            return _Entry(None, now + ROBOTS_FAILURE_TTL_S, failure)
        if 200 <= answer.status < 300:
            text = answer.body.decode("utf-8", errors="replace")
            return _Entry(Protego.parse(text), now + self._ttl_s)
        if answer.status == 429 or answer.status >= 500:
            failure = FetchError(
                f"could not read robots.txt of {host} (it answered {answer.status}), so its "
                "pages are not fetched for now; this is retried automatically.",
                url=robots_url,
                status=answer.status,
            )
            return _Entry(None, now + ROBOTS_FAILURE_TTL_S, failure)
        # Any other 4xx (404, 410, even 401/403): RFC 9309 says there are no rules.
        return _Entry(None, now + self._ttl_s)

    def check(self, url: str) -> float | None:
        """Raise unless robots.txt allows `url`; return its Crawl-delay in seconds, if any."""
        if urlsplit(url).path == "/robots.txt":
            return None
        entry = self._entry(origin_of(url))
        if entry.failure is not None:
            failure = entry.failure
            raise FetchError(failure.message, url=failure.url, status=failure.status)
        if entry.rules is None:
            return None
        if not entry.rules.can_fetch(url, self.user_agent):
            raise RobotsDisallowedError(
                f"robots.txt of {urlsplit(url).hostname} does not allow fetching {url}; "
                "remove this source or ask the site for permission.",
                url=url,
            )
        delay = entry.rules.crawl_delay(self.user_agent)
        return min(float(delay), MAX_CRAWL_DELAY_S) if delay else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
