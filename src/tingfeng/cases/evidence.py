"""取证: a key page kept as a WARC record and a full-page screenshot, with their SHA-256 hashes.

`capture_page` does the slow work (the fetch, Chromium) without touching the database;
`store_evidence` numbers and records it in the caller's transaction; `capture_evidence` does
both in that order, so no transaction is held open while a page loads.

The page is fetched once, through the same guarded connection as every collector (private and
internal addresses refused at connect time). Chromium then renders exactly that response: its
request for the page is answered from the capture, and each sub-resource it asks for is fetched
by Tingfeng through the guarded connection, never by Chromium itself. So a hostile page can
neither reach internal services through the browser nor show the screenshot something other
than what the WARC holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, func, or_, select, update
from sqlalchemy import text as sql_text

from tingfeng import __version__, audit
from tingfeng.collect import charset
from tingfeng.collect.fetcher import _GuardedBackend, _GuardedTransport
from tingfeng.collect.ssrf import (
    BlockedAddressError,
    FetchError,
    Network,
    check_addresses,
    parse_networks,
    resolve_host,
    split_url,
)
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import AuditEntry, Case, Evidence, Post
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web.i18n import N_

CATEGORY_LABELS: dict[str, str] = {
    "post": N_("原帖"),
    "repost": N_("转发"),
    "comment": N_("评论"),
    "reply": N_("回应"),
    "media": N_("媒体报道"),
    "other": N_("其他"),
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebRTC would otherwise send UDP to any address a page names, past the request routing.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]
VIEWPORT = {"width": 1280, "height": 720}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Headers that describe how bytes travelled rather than what they are; the stored and replayed
# bodies are the decoded bytes, so these no longer apply to them.
_TRANSPORT_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})
# Not forwarded from Chromium's sub-resource requests: the guarded client sets its own.
_HOP_HEADERS = frozenset(
    {"host", "connection", "content-length", "accept-encoding", "keep-alive", "upgrade", "te"}
)
_PG_LOCK_KEY = 0x7466_6576_6964  # "tfevid": serialises numbering on PostgreSQL
_MAX_SUBRESOURCES = 500


class EvidenceError(ProblemsError):
    """Evidence could not be captured, stored or found; the message says why."""

    what = "evidence"


class EvidenceNotFound(EvidenceError):
    """No evidence with that id."""


class CaptureFailed(EvidenceError):
    """The page could not be fetched; the failure is on record as `evidence_id`."""

    def __init__(self, message: str, evidence_id: int | None = None) -> None:
        super().__init__(message)
        self.evidence_id = evidence_id


class _Refused(EvidenceError):
    """The address may not be fetched at all; nothing is recorded for it."""


# --- capture -----------------------------------------------------------------------------------


@dataclass
class Capture:
    """What `capture_page` kept; paths are relative to the evidence directory."""

    url: str
    final_url: str
    http_status: int
    title: str
    captured_at: datetime
    warc_path: str
    warc_sha256: str
    png_path: str | None = None
    png_sha256: str | None = None
    screenshot_error: str | None = None


@dataclass
class _Exchange:
    """One request and its response, as they went over the wire (body decoded)."""

    url: str
    at: datetime
    request_line: str
    request_headers: list[tuple[str, str]]
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    ip: str | None = None
    decoded: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k.lower() == "content-type"), "")


def evidence_root(settings: Settings) -> Path:
    """The directory evidence files live under (paths in the database are relative to it)."""
    return Path(settings.evidence_dir or settings.data_dir / "evidence")


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def _guarded_client(
    settings: Settings, allowed: Sequence[Network], budget_s: float
) -> httpx.Client:
    total = min(settings.fetch_total_timeout_s, budget_s)
    timeout = httpx.Timeout(
        connect=min(settings.fetch_connect_timeout_s, total),
        read=min(settings.fetch_read_timeout_s, total),
        write=min(settings.fetch_read_timeout_s, total),
        pool=total,
    )
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    return httpx.Client(
        transport=_GuardedTransport(_GuardedBackend(allowed, None), limits),
        headers={"User-Agent": settings.fetch_user_agent},
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
    )


def _guard(url: str, allowed: Sequence[Network]) -> None:
    """Refuse non-web and internal addresses before anything is sent or written."""
    try:
        _scheme, host, port = split_url(url)
        check_addresses(host, resolve_host(host, port, None, url), allowed, url)
    except BlockedAddressError as exc:
        raise _Refused(exc.message) from exc
    except FetchError as exc:
        raise EvidenceError(exc.message) from exc


def _read_body(response: httpx.Response, url: str, limit: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "").strip()
    too_large = EvidenceError(
        f"the page {url} is larger than fetch_max_bytes ({limit} bytes), so it was not "
        "captured; raise fetch_max_bytes to keep such large pages."
    )
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    for chunk in response.iter_bytes():
        if len(body) + len(chunk) > limit:
            raise too_large
        if time.monotonic() > deadline:
            raise EvidenceError(
                f"{url} took too long to download, so it was not captured; try again later "
                "or raise fetch_total_timeout_s."
            )
        body += chunk
    return bytes(body)


def _server_ip(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("server_addr") if stream is not None else None
    return str(address[0]) if address else None


def _exchange(client: httpx.Client, url: str, limit: int, deadline: float) -> _Exchange:
    request = client.build_request("GET", url)
    at = datetime.now(UTC)
    try:
        response = client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise EvidenceError(
            f"{url} did not answer in time, so it was not captured; the site may be down, "
            "try again later."
        ) from exc
    except httpx.HTTPError as exc:
        raise EvidenceError(
            f"could not connect to {urlsplit(url).netloc} for {url} ({exc or type(exc).__name__}),"
            " so it was not captured; check that the site is up and the address is right."
        ) from exc
    try:
        ip = _server_ip(response)
        try:
            body = _read_body(response, url, limit, deadline)
        except httpx.DecodingError as exc:
            raise EvidenceError(
                f"the page {url} could not be decompressed ({exc}); the site sent a broken "
                "response, try again later."
            ) from exc
        except httpx.HTTPError as exc:
            raise EvidenceError(
                f"the connection broke while {url} was downloading ({exc or type(exc).__name__});"
                " try again later."
            ) from exc
    finally:
        response.close()
    # httpx has undone the transfer and content encodings, and the decoded body is what is
    # stored: the encoded bytes would need decoding by every reader (and a compressed page
    # could expand far past fetch_max_bytes). The headers are adjusted to match, and the WARC
    # record names what was undone (WARC-Tingfeng-Decoded).
    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw]
    decoded = [
        f"{k.lower()}={v}" for k, v in raw if k.lower() in {"content-encoding", "transfer-encoding"}
    ]
    headers = [(k, v) for k, v in raw if k.lower() not in _TRANSPORT_HEADERS]
    headers.append(("Content-Length", str(len(body))))
    target = request.url.raw_path.decode("ascii")
    return _Exchange(
        url=str(request.url),
        at=at,
        request_line=f"GET {target} HTTP/1.1",
        request_headers=[
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
        ],
        status=response.status_code,
        reason=response.reason_phrase,
        http_version=response.http_version,
        headers=headers,
        body=body,
        ip=ip,
        decoded=decoded,
    )


def _fetch_chain(
    settings: Settings, url: str, allowed: Sequence[Network], budget_s: float
) -> list[_Exchange]:
    """The page and every redirect before it, each hop checked before it is requested."""
    deadline = time.monotonic() + budget_s
    chain: list[_Exchange] = []
    current = url
    with _guarded_client(settings, allowed, budget_s) as client:
        for _hop in range(max(0, settings.fetch_max_redirects) + 1):
            _guard(current, allowed)
            try:
                exchange = _exchange(client, current, settings.fetch_max_bytes, deadline)
            except BlockedAddressError as exc:  # raised at connect time (DNS changed since)
                raise _Refused(exc.message) from exc
            except FetchError as exc:  # the name stopped resolving between check and connect
                raise EvidenceError(exc.message) from exc
            chain.append(exchange)
            location = dict((k.lower(), v) for k, v in exchange.headers).get("location")
            if exchange.status not in REDIRECT_STATUSES or not location:
                return chain
            try:
                current = str(httpx.URL(current).join(location))
            except httpx.InvalidURL:
                return chain  # the redirect itself is the evidence
    raise EvidenceError(
        f"{url} redirects more than {settings.fetch_max_redirects} times (a redirect loop?); "
        "open it in a browser and capture the address it ends up at."
    )


def _write_warc(path: Path, chain: list[_Exchange], settings: Settings) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.timeutils import datetime_to_iso_date
    from warcio.warcwriter import WARCWriter

    with _new_file(path) as handle:
        writer = WARCWriter(handle, gzip=True)
        writer.write_record(
            writer.create_warcinfo_record(
                path.name,
                {
                    "software": f"Tingfeng {__version__}",
                    "format": "WARC File Format 1.0",
                    "http-header-user-agent": settings.fetch_user_agent,
                    "description": "evidence capture (取证)",
                },
            )
        )
        for ex in chain:
            date = datetime_to_iso_date(ex.at.replace(tzinfo=None))
            response_headers: dict[str, str] = {"WARC-Date": date}
            if ex.ip:
                response_headers["WARC-IP-Address"] = ex.ip
            if ex.decoded:
                response_headers["WARC-Tingfeng-Decoded"] = ", ".join(ex.decoded)
            response = writer.create_warc_record(
                ex.url,
                "response",
                payload=io.BytesIO(ex.body),
                length=len(ex.body),
                warc_headers_dict=response_headers,
                http_headers=StatusAndHeaders(
                    f"{ex.status} {ex.reason}".strip(), ex.headers, protocol=ex.http_version
                ),
            )
            request = writer.create_warc_record(
                ex.url,
                "request",
                payload=io.BytesIO(b""),
                length=0,
                warc_headers_dict={
                    "WARC-Date": date,
                    "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
                },
                http_headers=StatusAndHeaders(
                    ex.request_line, ex.request_headers, is_http_request=True
                ),
            )
            writer.write_record(request)
            writer.write_record(response)


@contextmanager
def _new_file(path: Path) -> Iterator[Any]:
    """Write `path` whole or not at all, synced, and read-only afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    try:
        with partial.open("xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        # Read-only is no protection against a determined person (the hashes are), but it
        # stops an editor or a script from changing evidence by accident.
        path.chmod(0o444)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def page_title(body: bytes, content_type: str = "") -> str:
    """The HTML <title>, in whatever encoding the page really uses; "" when there is none."""
    from selectolax.lexbor import LexborHTMLParser

    if content_type and "html" not in content_type.lower():
        return ""
    declared = None
    if "charset=" in content_type.lower():
        declared = content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'")
    try:
        text_, _encoding = charset.decode(body, declared)
        node = LexborHTMLParser(text_).css_first("title")
    except Exception:  # a page the parser chokes on still is evidence, just without a title
        return ""
    return " ".join((node.text() or "").split()) if node is not None else ""


class _Renderer:
    """Chromium rendering the captured page, every request it makes answered by Tingfeng."""

    def __init__(
        self,
        settings: Settings,
        page: _Exchange,
        allowed: Sequence[Network],
        deadline: float,
    ) -> None:
        self.settings = settings
        self.page = page
        self.allowed = allowed
        self.deadline = deadline
        self.served_page = False
        self.requests = 0
        self.client = _guarded_client(settings, allowed, max(1.0, deadline - time.monotonic()))

    def handle(self, route: Any, request: Any) -> None:
        """Answer one request of Chromium's: the page from the capture, anything else fetched
        through the guarded client, refusals and failures as network errors."""
        if not self.served_page and request.is_navigation_request():
            self.served_page = True
            route.fulfill(
                status=self.page.status,
                headers=_replay_headers(self.page.headers),
                body=self.page.body,
            )
            return
        self.requests += 1
        if self.requests > _MAX_SUBRESOURCES or time.monotonic() > self.deadline:
            route.abort("timedout")
            return
        try:
            _guard(request.url, self.allowed)
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in _HOP_HEADERS and not k.startswith(":")
            }
            with self.client.stream(
                request.method, request.url, headers=headers, content=request.post_data_buffer
            ) as response:
                body = _read_body(
                    response, request.url, self.settings.fetch_max_bytes, self.deadline
                )
                replay = [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
                ]
                status = response.status_code
        except _Refused:
            route.abort("blockedbyclient")
            return
        except (EvidenceError, FetchError, httpx.HTTPError):
            route.abort("failed")
            return
        route.fulfill(status=status, headers=_replay_headers(replay), body=body)

    def close(self) -> None:
        self.client.close()


def _replay_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Headers for a decoded body (repeated ones such as Set-Cookie joined by newlines, the
    form Playwright expects)."""
    out: dict[str, str] = {}
    for key, value in headers:
        if key.lower() in _TRANSPORT_HEADERS:
            continue
        out[key] = f"{out[key]}\n{value}" if key in out else value
    return out


def _screenshot(
    settings: Settings, page: _Exchange, allowed: Sequence[Network], budget_s: float
) -> bytes:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if not Path(executable).exists():
        raise EvidenceError(
            f"Chromium is not installed at {executable}, so no screenshot was taken; install "
            "the chromium package."
        )
    deadline = time.monotonic() + budget_s
    renderer = _Renderer(settings, page, allowed, deadline)
    # Whatever escapes the routing (a browser's own background request) is sent to a proxy
    # that refuses every connection: a port bound here and never listened on.
    dead_end = socket.socket()
    try:
        dead_end.bind(("127.0.0.1", 0))
        proxy = {"server": f"http://127.0.0.1:{dead_end.getsockname()[1]}"}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, proxy=proxy
            )
            try:
                context = browser.new_context(
                    viewport=VIEWPORT,  # type: ignore[arg-type]
                    user_agent=settings.fetch_user_agent,
                    locale="zh-CN",
                    timezone_id=settings.default_timezone,
                    service_workers="block",
                    accept_downloads=False,
                )
                tab = context.new_page()
                tab.route("**/*", renderer.handle)
                tab.route_web_socket("**/*", lambda ws: ws.close())
                remaining_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
                # A page whose images never finish loading is still shown as far as it got.
                with suppress(PlaywrightTimeout):
                    tab.goto(page.url, wait_until="load", timeout=remaining_ms)
                return tab.screenshot(
                    full_page=True, timeout=max(5000.0, (deadline - time.monotonic()) * 1000)
                )
            except PlaywrightError as exc:
                raise EvidenceError(
                    f"the screenshot of {page.url} failed ({exc.message.splitlines()[0]})"
                ) from exc
            finally:
                browser.close()
    finally:
        renderer.close()
        dead_end.close()


def _off_event_loop(work: Callable[[], bytes]) -> bytes:
    """Playwright's sync API refuses to run in a thread with a running event loop (a web
    request handler); such callers get the work done in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="evidence-screenshot")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]  # type: ignore[no-any-return]


def _add_screenshot(
    capture: Capture,
    path: Path,
    settings: Settings,
    page: _Exchange,
    allowed: Sequence[Network],
    budget_s: float,
) -> None:
    """Screenshot into `path`; a failure is noted on the capture, never raised."""
    try:
        png = _off_event_loop(lambda: _screenshot(settings, page, allowed, budget_s))
        with _new_file(path) as handle:
            handle.write(png)
    except EvidenceError as exc:
        capture.screenshot_error = str(exc)
    except OSError as exc:
        capture.screenshot_error = f"could not write the screenshot {path} ({exc})"
    except Exception as exc:  # a browser that cannot start must not lose the WARC
        capture.screenshot_error = f"the screenshot failed ({type(exc).__name__}: {exc})"
    else:
        capture.png_path = str(path.relative_to(evidence_root(settings)))
        capture.png_sha256 = sha256_file(path)


def capture_page(settings: Settings, url: str, *, timeout_s: float | None = None) -> Capture:
    """Fetch `url` into a WARC file and screenshot it; no database.

    Raises EvidenceError when the address is refused or the page cannot be fetched (nothing is
    left on disk then). A failed screenshot keeps the WARC and says why in `screenshot_error`.
    """
    url = url.strip()
    try:
        allowed = parse_networks(settings.fetch_allowed_networks)
    except FetchError as exc:
        raise EvidenceError(exc.message) from exc
    budget = timeout_s or settings.fetch_total_timeout_s
    chain = _fetch_chain(settings, url, allowed, budget)
    page = chain[-1]
    captured_at = page.at
    root = evidence_root(settings)
    stem = f"{captured_at:%Y/%m/%d}/{uuid.uuid4().hex}"
    warc_rel, png_rel = f"{stem}.warc.gz", f"{stem}.png"
    try:
        _write_warc(root / warc_rel, chain, settings)
    except OSError as exc:
        raise EvidenceError(
            f"could not write the WARC file under {root} ({exc.strerror or exc}); check "
            "evidence_dir and the free space."
        ) from exc
    try:
        capture = Capture(
            url=url,
            final_url=page.url,
            http_status=page.status,
            title=page_title(page.body, page.content_type),
            captured_at=captured_at,
            warc_path=warc_rel,
            warc_sha256=sha256_file(root / warc_rel),
        )
        _add_screenshot(capture, root / png_rel, settings, page, allowed, budget)
    except BaseException:
        (root / warc_rel).unlink(missing_ok=True)
        (root / png_rel).unlink(missing_ok=True)
        raise
    return capture


def discard(settings: Settings, capture: Capture) -> None:
    """Remove a capture's files (it could not be recorded)."""
    root = evidence_root(settings)
    for rel in (capture.warc_path, capture.png_path):
        if rel:
            (root / rel).unlink(missing_ok=True)


# --- records -----------------------------------------------------------------------------------


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise EvidenceError(f"{name} {value} has no time zone; give it with one.")
    return value.astimezone(UTC)


def check_category(category: str) -> str:
    if category not in CATEGORY_LABELS:
        allowed = ", ".join(f"{k} ({v})" for k, v in CATEGORY_LABELS.items())
        raise EvidenceError(f"unknown evidence category {category!r}: use one of {allowed}.")
    return category


def _check_case(conn: Connection, case_id: int | None) -> None:
    if (
        case_id is not None
        and conn.execute(select(Case.__table__.c.id).where(Case.__table__.c.id == case_id)).first()
        is None
    ):
        raise EvidenceError(f"there is no case {case_id}; see the cases list for its id.")


def post_fields(conn: Connection, post_id: int) -> dict[str, Any]:
    """url, title, published_at and discovered_at (when it was collected) of a stored post."""
    t = Post.__table__
    row = conn.execute(
        select(t.c.url, t.c.title, t.c.published_at, t.c.fetched_at).where(t.c.id == post_id)
    ).first()
    if row is None:
        raise EvidenceError(f"there is no post {post_id}.")
    return {
        "url": row.url,
        "title": row.title,
        "published_at": row.published_at,
        "discovered_at": row.fetched_at,
    }


def store_evidence(
    conn: Connection,
    capture: Capture | None,
    *,
    url: str,
    case_id: int | None = None,
    alert_id: int | None = None,
    post_id: int | None = None,
    category: str = "post",
    title: str | None = None,
    published_at: datetime | None = None,
    discovered_at: datetime | None = None,
    reported_at: datetime | None = None,
    handling_result: str = "",
    error: str | None = None,
    actor: Any = None,
) -> int:
    """Record a capture (or, with `capture` None, a failed one and its `error`), numbered per
    case and category; returns the evidence id. Audited as `evidence.capture`."""
    check_category(category)
    _check_case(conn, case_id)
    values = {
        "published_at": _aware(published_at, "published_at"),
        "discovered_at": _aware(discovered_at, "discovered_at"),
        "reported_at": _aware(reported_at, "reported_at"),
    }
    t = Evidence.__table__
    if conn.dialect.name == "postgresql":
        # Two captures for one case at once would take the same number (and for evidence
        # without a case the unique constraint, blind to NULL, would not even notice).
        conn.execute(sql_text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # Without a case, evidence is numbered among all such evidence, counting what was captured
    # at an alert and has since joined a case (attach_alert_evidence), so no number comes back.
    same = (
        or_(t.c.case_id.is_(None), t.c.alert_id.is_not(None))
        if case_id is None
        else t.c.case_id == case_id
    )
    seq = 1 + (
        conn.execute(select(func.max(t.c.seq)).where(same, t.c.category == category)).scalar() or 0
    )
    number = f"{CATEGORY_LABELS[category]}-{seq:03d}"
    who = audit.Actor.of(actor)
    if capture is not None:
        values |= {
            "status": "captured",
            "url": capture.url,
            "title": title or capture.title,
            "captured_at": capture.captured_at,
            "http_status": capture.http_status,
            "warc_path": capture.warc_path,
            "warc_sha256": capture.warc_sha256,
            "png_path": capture.png_path,
            "png_sha256": capture.png_sha256,
            "error": capture.screenshot_error,
        }
    else:
        values |= {
            "status": "failed",
            "url": url,
            "title": title or "",
            "captured_at": datetime.now(UTC),
            "error": error or "the page could not be captured",
        }
    evidence_id = int(
        conn.execute(
            t.insert().values(
                case_id=case_id,
                alert_id=alert_id,
                post_id=post_id,
                category=category,
                seq=seq,
                number=number,
                handling_result=handling_result,
                created_by=who.user_id,
                **values,
            )
        ).inserted_primary_key[0]
    )
    audit.record(
        conn,
        who,
        "evidence.capture",
        f"evidence:{evidence_id}",
        {
            "number": number,
            "case_id": case_id,
            "url": values["url"],
            "status": values["status"],
            "http_status": values.get("http_status"),
            "warc_sha256": values.get("warc_sha256"),
            "png_sha256": values.get("png_sha256"),
            "error": values.get("error"),
        },
    )
    return evidence_id


def capture_evidence(
    engine: Engine, settings: Settings, url: str | None = None, **fields: Any
) -> int:
    """Capture `url` (or the post's URL) and record it; returns the evidence id.

    The arguments are checked first, the capture runs outside any transaction, then it is
    stored in one. A refused address raises EvidenceError and records nothing; a page that
    cannot be fetched is recorded as failed and raises CaptureFailed.
    """
    check_category(fields.get("category", "post"))
    with engine.connect() as conn:
        _check_case(conn, fields.get("case_id"))
        if fields.get("post_id") is not None:
            known = post_fields(conn, int(fields["post_id"]))
            url = url or known["url"]
            for key in ("title", "published_at", "discovered_at"):
                if fields.get(key) is None and known[key] is not None:
                    fields[key] = known[key]
    if not url:
        raise EvidenceError("give the address of the page to capture.")
    try:
        capture = capture_page(settings, url)
    except _Refused:
        raise
    except EvidenceError as exc:
        with write_transaction(engine) as conn:
            evidence_id = store_evidence(conn, None, url=url, error=str(exc), **fields)
        raise CaptureFailed(str(exc), evidence_id) from exc
    try:
        with write_transaction(engine) as conn:
            return store_evidence(conn, capture, url=url, **fields)
    except BaseException:
        discard(settings, capture)
        raise


def _as_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["category_label"] = CATEGORY_LABELS.get(out["category"], out["category"])
    return out


def get_evidence(conn: Connection, evidence_id: int) -> dict[str, Any]:
    t = Evidence.__table__
    row = conn.execute(select(t).where(t.c.id == evidence_id)).first()
    if row is None:
        raise EvidenceNotFound(f"there is no evidence {evidence_id}; see `tingfeng evidence list`.")
    return _as_dict(row)


def list_evidence(conn: Connection, case_id: int | None = None) -> list[dict[str, Any]]:
    """A case's evidence (all evidence when `case_id` is None) by case, category, number."""
    t = Evidence.__table__
    q = select(t)
    if case_id is not None:
        q = q.where(t.c.case_id == case_id)
    order = list(CATEGORY_LABELS)
    rows = [_as_dict(r) for r in conn.execute(q).all()]
    rows.sort(
        key=lambda r: (
            r["case_id"] is None,
            r["case_id"] or 0,
            order.index(r["category"]) if r["category"] in order else len(order),
            r["seq"],
        )
    )
    return rows


def attach_alert_evidence(conn: Connection, case_id: int, alert_id: int, actor: Any) -> list[str]:
    """Put the evidence captured at alert time (no case yet) into a case opened from that
    alert; returns their numbers. They keep the numbers they were given, which the case's own
    captures then follow (numbers are never reused, see `store_evidence`). The files stay as
    they are; each move is audited as `evidence.attach`."""
    t = Evidence.__table__
    rows = conn.execute(
        select(t.c.id, t.c.number)
        .where(t.c.alert_id == alert_id, t.c.case_id.is_(None))
        .order_by(t.c.id)
    ).all()
    for row in rows:
        conn.execute(update(t).where(t.c.id == row.id).values(case_id=case_id))
        audit.record(
            conn, audit.Actor.of(actor), "evidence.attach", f"evidence:{row.id}",
            {"case_id": case_id, "number": row.number, "alert_id": alert_id},
        )  # fmt: skip
    return [row.number for row in rows]


def update_handling_result(conn: Connection, evidence_id: int, text: str, actor: Any) -> None:
    """Fill in the handling result (处置结果), which is known only later; audited."""
    before = get_evidence(conn, evidence_id)
    t = Evidence.__table__
    conn.execute(update(t).where(t.c.id == evidence_id).values(handling_result=text))
    audit.record(
        conn,
        actor,
        "evidence.handling_result",
        f"evidence:{evidence_id}",
        {"number": before["number"], "before": before["handling_result"], "after": text},
    )


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCheck:
    """One file's check: intact, changed (hash differs) or missing."""

    kind: str  # warc, png
    path: str
    state: str
    expected: str
    actual: str | None = None
    note: str = ""


@dataclass(frozen=True)
class EvidenceCheck:
    evidence_id: int
    number: str
    files: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        return all(f.state == "intact" for f in self.files)


def _captured_hashes(conn: Connection, evidence_id: int) -> dict[str, Any]:
    """The hashes the audit log recorded at capture time."""
    t = AuditEntry.__table__
    detail = conn.execute(
        select(t.c.detail)
        .where(t.c.subject == f"evidence:{evidence_id}", t.c.action == "evidence.capture")
        .order_by(t.c.id)
        .limit(1)
    ).scalar()
    return detail or {}


def verify_evidence(conn: Connection, settings: Settings, evidence_id: int) -> EvidenceCheck:
    """Re-hash each stored file against the hash recorded at capture.

    The hash is also compared with the one in the audit log, so editing a file and its hash in
    the evidence table is caught too (the audit log's own chain is checked by `audit.verify`).
    """
    row = get_evidence(conn, evidence_id)
    logged = _captured_hashes(conn, evidence_id)
    root = evidence_root(settings).resolve()
    checks: list[FileCheck] = []
    for kind in ("warc", "png"):
        rel, expected = row[f"{kind}_path"], row[f"{kind}_sha256"]
        if not rel or not expected:
            continue
        at_capture = logged.get(f"{kind}_sha256")
        note = ""
        if at_capture and at_capture != expected:
            note = f"the stored hash was edited: the audit log recorded {at_capture} at capture"
            expected = at_capture
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            checks.append(FileCheck(kind, rel, "missing", expected, None, "outside evidence_dir"))
            continue
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            checks.append(FileCheck(kind, rel, "missing", expected, None, note))
            continue
        state = "intact" if actual == expected and not note else "changed"
        checks.append(FileCheck(kind, rel, state, expected, actual, note))
    return EvidenceCheck(evidence_id, row["number"], tuple(checks))


def capture_case_evidence(
    engine: Any, settings: Settings, actor: Any, case_id: int | str, *, limit: int = 5
) -> list[dict[str, Any]]:
    """Capture the key posts' pages for a case (WARC + screenshot each), outside any
    transaction, since a capture takes seconds. Pages already captured for the case are
    skipped; a page that cannot be fetched is recorded as failed, and the rest go on."""
    from tingfeng.cases.detail import key_posts
    from tingfeng.cases.permissions import require_work
    from tingfeng.cases.service import get_case

    with engine.connect() as conn:
        case = get_case(conn, case_id)
        if actor is not None:
            require_work(conn, actor, case, "capture evidence")
        done = {e["post_id"] for e in list_evidence(conn, case.id) if e["status"] == "captured"}
        posts = [p for p in key_posts(conn, case.id, limit) if p not in done]
    out = []
    for post_id in posts:
        try:
            eid = capture_evidence(
                engine, settings, case_id=case.id, post_id=post_id, category="post",
                reported_at=case.created_at, actor=actor,
            )  # fmt: skip
            out.append({"post_id": post_id, "evidence_id": eid, "error": None})
        except EvidenceError as exc:
            out.append({"post_id": post_id, "evidence_id": getattr(exc, "evidence_id", None),
                        "error": str(exc)})  # fmt: skip
    return out
