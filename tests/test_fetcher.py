"""The fetcher against a real HTTP server on 127.0.0.1: encodings, limits, retries, guards."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.collect.fetcher import (
    BlockedAddressError,
    Fetcher,
    FetchError,
    FetchResult,
    ResponseTooLargeError,
    RobotsDisallowedError,
)
from tingfeng.settings import Settings

SIMPLIFIED = (
    "舆情监测平台每天收集新闻、论坛和社交媒体上的公开信息，帮助机构及时了解公众关注的热点问题。"
)
TRADITIONAL = (
    "輿情監測平台每天收集新聞、論壇和社交媒體上的公開信息，幫助機構及時了解公眾關注的熱點問題。"
)
MB = 1024 * 1024


class FakeTime:
    """A clock that only moves when the fetcher sleeps, so waits are observed, not waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(shared_server: LoopbackServer) -> LoopbackServer:
    """The conftest server, but one per module: stopping a server takes half a second."""
    shared_server.routes.clear()
    shared_server.requests.clear()
    return shared_server


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make(settings: Settings, fake_time: FakeTime) -> Iterator:
    fetchers: list[Fetcher] = []

    def build(resolve=None, **update) -> Fetcher:
        fetcher = Fetcher(
            settings.model_copy(update=update),
            sleep=fake_time.sleep,
            clock=fake_time.clock,
            resolve=resolve,
        )
        fetchers.append(fetcher)
        return fetcher

    yield build
    for fetcher in fetchers:
        fetcher.close()


def hosts(**mapping: str):
    """A resolver for made-up host names; anything else is looked up for real."""

    def resolve(host: str, port: int) -> list[str]:
        if host in mapping:
            return [mapping[host]]
        raise OSError(f"unknown test host {host}")

    return resolve


# -- encodings -----------------------------------------------------------------------------------


def page(body: str, encoding: str, meta: str | None = None) -> bytes:
    head = f'<meta charset="{meta}">' if meta else ""
    return f"<html><head>{head}</head><body><p>{body}</p></body></html>".encode(encoding)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (page(SIMPLIFIED, "gbk"), "text/html; charset=gbk", SIMPLIFIED),
        (page(TRADITIONAL, "big5", meta="big5"), "text/html", TRADITIONAL),
        (
            page("朱镕基与陶喆，𠮷野家。" + SIMPLIFIED, "gb18030"),
            "text/html; charset=gb2312",
            "朱镕基",
        ),
        (page(SIMPLIFIED, "utf-8"), "text/html", SIMPLIFIED),
        (b"\xef\xbb\xbf" + page(SIMPLIFIED, "utf-8"), "text/html", SIMPLIFIED),
        (page(SIMPLIFIED, "gbk"), "text/html; charset=utf-8", SIMPLIFIED),
        (
            f'<?xml version="1.0" encoding="gbk"?><rss><item>{SIMPLIFIED}</item></rss>'.encode(
                "gbk"
            ),
            "application/rss+xml",
            SIMPLIFIED,
        ),
    ],
    ids=["gbk", "big5", "gb18030-as-gb2312", "utf8", "utf8-bom", "utf8-header-gbk-body", "xml-gbk"],
)
def test_pages_decode_whatever_their_encoding(
    loopback: LoopbackServer, make, body: bytes, content_type: str, expected: str
) -> None:
    loopback.route("/page", Reply(body=body, content_type=content_type))
    result = make().get(loopback.url("/page"))
    assert result.status == 200
    assert result.content == body
    assert expected in result.text
    assert not result.text.startswith("\ufeff")


def test_result_fields_and_json(loopback: LoopbackServer, make) -> None:
    loopback.route("/api", Reply(body=b'{"items": [1, 2]}', content_type="application/json"))
    loopback.route("/html", Reply(body=b"<html>maintenance</html>"))
    fetcher = make()
    result = fetcher.get(loopback.url("/api"), params={"page": 2, "q": "舆情"})
    assert result.json() == {"items": [1, 2]}
    assert result.headers["content-type"] == "application/json"
    assert result.url.endswith("/api?page=2&q=%E8%88%86%E6%83%85")
    assert loopback.requests[-1].query == "page=2&q=%E8%88%86%E6%83%85"
    assert loopback.requests[-1].headers["user-agent"].startswith("Tingfeng/")
    with pytest.raises(FetchError, match="not valid JSON"):
        fetcher.get(loopback.url("/html")).json()


# -- size and time limits ------------------------------------------------------------------------


def test_huge_streamed_body_is_cut_off_early(loopback: LoopbackServer, make) -> None:
    produced = []

    def fifty_megabytes() -> Iterator[bytes]:
        for _ in range(50):
            produced.append(1)
            yield b"x" * MB

    loopback.route("/huge", Reply(body=fifty_megabytes(), content_type="application/octet-stream"))
    started = time.monotonic()
    with pytest.raises(ResponseTooLargeError) as info:
        make().get(loopback.url("/huge"))
    assert time.monotonic() - started < 5
    assert info.value.permanent
    assert "the response from 127.0.0.1 is larger than 10 MB" in info.value.message
    # Only what fills the limit plus the socket buffers was ever produced.
    assert len(produced) < 40


def test_announced_length_over_the_limit_is_refused_before_reading(
    loopback: LoopbackServer, make
) -> None:
    loopback.route("/big", Reply(body=b"x" * 2000))
    with pytest.raises(ResponseTooLargeError, match=re.escape("larger than 1.95 KB")):
        make().get(loopback.url("/big"), max_bytes=2000 - 1)
    assert make().get(loopback.url("/big"), max_bytes=2000).content == b"x" * 2000


def test_server_that_answers_after_30_s_times_out(loopback: LoopbackServer, make) -> None:
    loopback.route("/slow", Reply(body=b"late", delay_s=30))
    fetcher = make(fetch_read_timeout_s=0.5, fetch_retries=0)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetcher.get(loopback.url("/slow"))
    assert time.monotonic() - started < 5
    assert not info.value.permanent
    assert "did not answer within 0.5 s" in info.value.message


def test_trickling_body_is_cut_at_the_total_deadline(loopback: LoopbackServer, make) -> None:
    loopback.route("/trickle", Reply(body=[b"x" * 10] * 100, chunk_delay_s=0.05))
    fetcher = make(fetch_total_timeout_s=0.5, fetch_retries=0)
    started = time.monotonic()
    with pytest.raises(FetchError, match=re.escape("took more than 0.5 s")) as info:
        fetcher.get(loopback.url("/trickle"))
    assert time.monotonic() - started < 3
    assert not info.value.permanent


def test_truncated_body_is_a_temporary_error(loopback: LoopbackServer, make) -> None:
    loopback.route("/cut", Reply(body=b"x" * 100, content_length=1000))
    with pytest.raises(FetchError) as info:
        make(fetch_retries=1).get(loopback.url("/cut"))
    assert "the connection closed before the whole response arrived" in info.value.message
    assert not info.value.permanent
    assert loopback.hits("/cut") == 2


# -- statuses, retries, redirects ----------------------------------------------------------------


def test_404_is_permanent_and_not_retried(loopback: LoopbackServer, make, fake_time) -> None:
    loopback.route("/gone", Reply(404, b"nope"))
    with pytest.raises(FetchError) as info:
        make().get(loopback.url("/gone"))
    assert info.value.permanent
    assert info.value.status == 404
    assert "answered 404 Not Found: check the URL" in info.value.message
    assert loopback.hits("/gone") == 1
    assert fake_time.slept == []


def test_500_then_200_is_retried(loopback: LoopbackServer, make, fake_time) -> None:
    answers = iter([Reply(500, b"oops"), Reply(200, b"fine")])
    loopback.route("/flaky", lambda request: next(answers))
    result = make(fetch_backoff_s=2.0).get(loopback.url("/flaky"))
    assert result.content == b"fine"
    assert loopback.hits("/flaky") == 2
    assert len(fake_time.slept) == 1 and 0 <= fake_time.slept[0] <= 2.0


def test_persistent_503_exhausts_retries(loopback: LoopbackServer, make, fake_time) -> None:
    loopback.route("/down", Reply(503, b"busy"))
    with pytest.raises(FetchError) as info:
        make(fetch_retries=2, fetch_backoff_s=1.0).get(loopback.url("/down"))
    assert not info.value.permanent
    assert info.value.status == 503
    assert "503 Service Unavailable" in info.value.message
    assert loopback.hits("/down") == 3
    # Exponential backoff with full jitter: each wait at most backoff * 2**attempt.
    assert len(fake_time.slept) == 2
    assert fake_time.slept[0] <= 1.0 and fake_time.slept[1] <= 2.0


def test_retry_after_is_honoured_and_capped(loopback: LoopbackServer, make, fake_time) -> None:
    answers = iter(
        [
            Reply(429, headers={"Retry-After": "7"}),
            Reply(503, headers={"Retry-After": "3600"}),
            Reply(200, b"ok"),
        ]
    )
    loopback.route("/limited", lambda request: next(answers))
    assert make(fetch_retries=2).get(loopback.url("/limited")).content == b"ok"
    assert fake_time.slept == [7.0, 60.0]


def test_redirects_are_followed(loopback: LoopbackServer, make) -> None:
    loopback.route("/old", Reply(301, headers={"Location": "/middle"}))
    loopback.route("/middle", Reply(302, headers={"Location": loopback.url("/new?x=1")}))
    loopback.route("/new", Reply(body=b"here"))
    result = make().get(loopback.url("/old"))
    assert result.url == loopback.url("/new?x=1")
    assert result.content == b"here"


def test_redirect_loop(loopback: LoopbackServer, make) -> None:
    loopback.route("/a", Reply(302, headers={"Location": "/b"}))
    loopback.route("/b", Reply(302, headers={"Location": "/a"}))
    with pytest.raises(
        FetchError, match=r"too many redirects .*\(more than 3, a redirect loop\?\)"
    ) as info:
        make(fetch_max_redirects=3).get(loopback.url("/a"))
    assert info.value.permanent
    assert loopback.hits("/a") + loopback.hits("/b") == 4


def test_credentials_do_not_follow_a_redirect_to_another_site(
    loopback: LoopbackServer, make
) -> None:
    port = loopback.port
    loopback.route("/start", Reply(302, headers={"Location": f"http://b.test:{port}/end"}))
    loopback.route("/end", Reply(body=b"done"))
    fetcher = make(resolve=hosts(**{"a.test": "127.0.0.1", "b.test": "127.0.0.1"}))
    headers = {"Authorization": "Bearer secret", "X-Api-Version": "2"}
    fetcher.get(f"http://a.test:{port}/start", headers=headers)
    start = next(r for r in loopback.requests if r.path == "/start")
    end = next(r for r in loopback.requests if r.path == "/end")
    assert start.headers["authorization"] == "Bearer secret"
    assert "authorization" not in end.headers
    assert end.headers["x-api-version"] == "2"


# -- conditional GET -----------------------------------------------------------------------------


def test_conditional_get_with_etag(loopback: LoopbackServer, make) -> None:
    def feed(request: Request) -> Reply:
        if request.headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(body=b"<rss/>", headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024"})

    loopback.route("/feed", feed)
    fetcher = make()
    state: dict = {}
    first = fetcher.get(loopback.url("/feed"), validators=state)
    assert (first.status, first.not_modified, first.content) == (200, False, b"<rss/>")
    assert state == {loopback.url("/feed"): {"etag": '"v1"', "last_modified": "Mon, 01 Jan 2024"}}
    second = fetcher.get(loopback.url("/feed"), validators=state)
    assert second.not_modified
    assert second.status == 304
    assert second.content == b""
    assert loopback.requests[-1].headers["if-modified-since"] == "Mon, 01 Jan 2024"
    # Without the saved state, the page is fetched in full.
    assert not fetcher.get(loopback.url("/feed")).not_modified


# -- robots.txt ----------------------------------------------------------------------------------


def test_robots_disallow(loopback: LoopbackServer, make) -> None:
    loopback.route(
        "/robots.txt", Reply(body=b"User-agent: *\nDisallow: /private\n", content_type="text/plain")
    )
    loopback.route("/private/page", Reply(body=b"secret"))
    loopback.route("/public", Reply(body=b"fine"))
    fetcher = make()
    with pytest.raises(RobotsDisallowedError) as info:
        fetcher.get(loopback.url("/private/page"))
    assert info.value.permanent
    assert "robots.txt of 127.0.0.1 does not allow" in info.value.message
    assert loopback.hits("/private/page") == 0
    assert fetcher.get(loopback.url("/public")).content == b"fine"
    assert loopback.hits("/robots.txt") == 1  # cached
    assert fetcher.get(loopback.url("/private/page"), check_robots=False).content == b"secret"
    assert make(fetch_respect_robots=False).get(loopback.url("/private/page")).status == 200


def test_robots_rules_for_our_user_agent(loopback: LoopbackServer, make) -> None:
    robots = b"User-agent: Tingfeng\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    loopback.route("/robots.txt", Reply(body=robots, content_type="text/plain"))
    loopback.route("/page", Reply(body=b"x"))
    with pytest.raises(RobotsDisallowedError):
        make().get(loopback.url("/page"))
    other = make(fetch_user_agent="OtherBot/1.0")
    assert other.get(loopback.url("/page")).status == 200


def test_robots_crawl_delay_spaces_requests(loopback: LoopbackServer, make, fake_time) -> None:
    loopback.route(
        "/robots.txt", Reply(body=b"User-agent: *\nCrawl-delay: 5\n", content_type="text/plain")
    )
    loopback.route("/page", Reply(body=b"x"))
    fetcher = make(fetch_per_host_interval_s=0.0)
    fetcher.get(loopback.url("/page"))
    fetcher.get(loopback.url("/page"))
    assert fake_time.slept == [5.0, 5.0]


def test_robots_server_error_blocks_for_now(loopback: LoopbackServer, make) -> None:
    loopback.route("/robots.txt", Reply(503, b"busy"))
    loopback.route("/page", Reply(body=b"x"))
    with pytest.raises(
        FetchError, match=re.escape("could not read robots.txt of 127.0.0.1")
    ) as info:
        make(fetch_retries=0).get(loopback.url("/page"))
    assert not info.value.permanent
    assert not isinstance(info.value, RobotsDisallowedError)
    assert loopback.hits("/page") == 0


# -- private addresses ---------------------------------------------------------------------------


def test_hostname_resolving_to_private_address_is_blocked(make) -> None:
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["10.1.2.3"]

    started = time.monotonic()
    with pytest.raises(BlockedAddressError) as info:
        make(resolve=resolve).get("http://intranet.example/admin")
    # Refused on resolution: a connection to 10.1.2.3 would have hung for the connect timeout.
    assert time.monotonic() - started < 1
    assert resolved == ["intranet.example"]
    assert "intranet.example resolves to 10.1.2.3, a private address" in info.value.message


def test_metadata_literal_is_blocked(make) -> None:
    with pytest.raises(
        BlockedAddressError, match=re.escape("169.254.169.254 is a cloud metadata address")
    ):
        make().get("http://169.254.169.254/latest/meta-data/")


def test_loopback_is_blocked_without_allowed_networks(loopback: LoopbackServer, make) -> None:
    loopback.route("/page", Reply(body=b"x"))
    fetcher = make(fetch_allowed_networks=[])
    with pytest.raises(BlockedAddressError, match="loopback"):
        fetcher.get(loopback.url("/page"))
    with pytest.raises(BlockedAddressError, match="localhost resolves to"):
        fetcher.get(f"http://localhost:{loopback.port}/page")
    assert loopback.requests == []


def test_redirect_to_a_blocked_address_is_refused(loopback: LoopbackServer, make) -> None:
    loopback.route("/meta", Reply(302, headers={"Location": "http://169.254.169.254/latest/"}))
    loopback.route("/inner", Reply(302, headers={"Location": "http://intranet.example/"}))
    fetcher = make(resolve=hosts(**{"intranet.example": "10.1.2.3"}))
    with pytest.raises(BlockedAddressError, match="cloud metadata"):
        fetcher.get(loopback.url("/meta"))
    with pytest.raises(BlockedAddressError, match=re.escape("10.1.2.3")):
        fetcher.get(loopback.url("/inner"))


def test_dns_rebinding_is_caught_at_connect_time(loopback: LoopbackServer, make) -> None:
    answers = iter(["127.0.0.1", "10.1.2.3"])

    def rebinding(host: str, port: int) -> list[str]:
        return [next(answers)]

    loopback.route("/page", Reply(body=b"x"))
    with pytest.raises(BlockedAddressError, match=re.escape("10.1.2.3")):
        make(resolve=rebinding).get(
            f"http://rebind.example:{loopback.port}/page", check_robots=False
        )
    assert loopback.requests == []


def test_non_http_scheme_is_refused(make) -> None:
    with pytest.raises(BlockedAddressError, match="only http and https"):
        make().get("file:///etc/passwd")


def test_unresolvable_host(make) -> None:
    with pytest.raises(
        FetchError, match=re.escape("could not resolve host nowhere.example: check the address")
    ):
        make(resolve=hosts()).get("http://nowhere.example/")


# -- politeness ----------------------------------------------------------------------------------


def test_per_host_interval(loopback: LoopbackServer, make, fake_time) -> None:
    loopback.route("/page", Reply(body=b"x"))
    fetcher = make(fetch_per_host_interval_s=2.0)
    for _ in range(3):
        fetcher.get(loopback.url("/page"), check_robots=False)
    assert fake_time.slept == [2.0, 2.0]


def test_per_host_interval_with_robots_counts_the_robots_request(
    loopback: LoopbackServer, make, fake_time
) -> None:
    loopback.route("/page", Reply(body=b"x"))
    make(fetch_per_host_interval_s=1.5).get(loopback.url("/page"))
    assert loopback.hits("/robots.txt") == 1
    assert fake_time.slept == [1.5]


def test_per_host_concurrency(loopback: LoopbackServer, settings: Settings) -> None:
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    def slow(request: Request) -> Reply:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.15)
        with lock:
            active[0] -= 1
        return Reply(body=b"x")

    loopback.route("/slow", slow)
    fetcher = Fetcher(settings.model_copy(update={"fetch_per_host_concurrency": 2}))
    results: list[FetchResult] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(fetcher.get(loopback.url("/slow"), check_robots=False))
        )
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fetcher.close()
    assert len(results) == 5
    assert active[1] == 2


# -- TLS through the address-pinning connection ---------------------------------------------------


@pytest.fixture
def tls_server(tmp_path, monkeypatch) -> Iterator[int]:
    """An HTTPS server with a certificate for site.test, trusted through SSL_CERT_FILE."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=site.test",
         "-addext", "subjectAltName=DNS:site.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_https_keeps_the_host_name_for_certificate_checks(tls_server: int, make) -> None:
    fetcher = make(resolve=hosts(**{"site.test": "127.0.0.1"}))
    result = fetcher.get(f"https://site.test:{tls_server}/page", check_robots=False)
    assert result.content == b"secure"
    with pytest.raises(FetchError, match=re.escape("TLS certificate of 127.0.0.1 is not valid")):
        fetcher.get(f"https://127.0.0.1:{tls_server}/page", check_robots=False)
