"""SSRF at every entry point: each place a person gives Tingfeng a web address, tried end to end
through the API and the command line against internal addresses, and refused.

The server runs with the default guard: loopback is NOT opened. Only 127.0.0.2 is, to stand in
for a public web site (news.example.com) that redirects to internal addresses; the internal
service it points at is a server on 127.0.0.1 (and one on [::1]) that must see no request at
all. Host names are answered by a resolver made for the test (tests/netguard.py), which also
serves the DNS rebinding: rebind.test first resolves to the "public" 127.0.0.2, then to
127.0.0.1. The process may reach loopback only, so a guard that fails cannot send anything
off this machine either.

Entry points: a source's test fetch, adding a source (it test-fetches), "fetch now" of a saved
source, a lead's link, a webhook channel (saved, then test-sent), an apprise channel's endpoint
and an apprise URL that names its own host (gotify://HOST), and evidence capture (the WARC
fetch and Chromium's own requests). The report language model's address (`report_llm_url`) is
not among them: only the operator sets it, in the configuration, usually to a model served on
the intranet; the API offers no way to change it (checked below). Tally:
test-artifacts/attacks/ssrf.json.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import ARTIFACTS
from tests.netguard import loopback_only
from tingfeng.cli.main import app as cli_app
from tingfeng.settings import Settings

PUBLIC_IP = "127.0.0.2"  # stands in for a public web site; the only network opened
TALLY = ARTIFACTS / "attacks" / "ssrf.json"


class Site:
    """A tiny HTTP server on one address, answering fixed routes and counting every request."""

    def __init__(self, host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.requests.append(self.path)
                status, headers, body = routes.get(self.path.split("?")[0], (404, {}, b"no"))
                self.send_response(status)
                for key, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        self.httpd = server_class((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


SECRET = (200, {}, b"<html><title>internal admin</title><p>secret</p></html>")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The application's own default guard: only the stand-in public address is opened."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        fetch_allowed_networks=[f"{PUBLIC_IP}/32"],
        fetch_per_host_interval_s=0.0,
        fetch_backoff_s=0.01,
        fetch_read_timeout_s=5.0,
        fetch_total_timeout_s=10.0,
        delivery_timeout_s=5.0,
    )


class Lab:
    """The internal service, the public stand-in, the names, and what each attempt gave."""

    def __init__(self) -> None:
        self.internal = Site("127.0.0.1", {"/secret": SECRET})
        try:
            self.internal6: Site | None = Site("::1", {"/secret": SECRET})
        except OSError:  # a machine without IPv6 loopback
            self.internal6 = None
        port = self.internal.port
        self.public = Site(
            PUBLIC_IP,
            {
                "/to-internal": (302, {"Location": f"http://127.0.0.1:{port}/secret"}, b""),
                "/to-metadata": (
                    302,
                    {"Location": "http://metadata.google.internal/computeMetadata/v1/"},
                    b"",
                ),
                "/to-name": (307, {"Location": f"http://intranet.test:{port}/secret"}, b""),
                # Where gotify://news.example.com:PORT/TOKEN posts its message.
                "/message": (307, {"Location": f"http://127.0.0.1:{port}/secret"}, b""),
                "/ok.png": (200, {"Content-Type": "image/png"}, b"not really a png"),
                "/hostile": (200, {}, self._hostile_page().encode()),
            },
        )
        self.lookups: Counter[str] = Counter()
        self.results: dict[str, dict[str, str]] = defaultdict(dict)

    def _hostile_page(self) -> str:
        internal = f"http://127.0.0.1:{self.internal.port}/secret"
        return (
            "<html><head><title>新闻</title>"
            f"<link rel='stylesheet' href='{internal}?css'></head><body><p>正文</p>"
            f"<img src='{internal}?img'><img src='/ok.png'><iframe src='{internal}?frame'></iframe>"
            "<img src='http://169.254.169.254/latest/meta-data/'>"
            f"<script>fetch('{internal}?fetch', {{mode: 'no-cors'}}).catch(() => 0);"
            f"setTimeout(() => {{ location.href = '{internal}?navigate'; }}, 50);</script>"
            "</body></html>"
        )

    def names(self, host: str) -> list[str] | None:
        """The test's DNS: made-up names only (anything else: no such name)."""
        self.lookups[host] += 1
        if host == "news.example.com":
            return [PUBLIC_IP]
        if host == "intranet.test":
            return ["127.0.0.1"]
        if host == "metadata.google.internal":
            return ["169.254.169.254"]
        if host == "rebind.test":
            # The first answer passes the check; every later one is the internal address.
            return [PUBLIC_IP] if self.lookups[host] == 1 else ["127.0.0.1"]
        return None

    def targets(self) -> dict[str, str]:
        p, s = self.internal.port, self.public.port
        found = {
            "loopback": f"http://127.0.0.1:{p}/secret",
            "localhost": f"http://localhost:{p}/secret",
            "private-10": "http://10.0.0.1/secret",
            "private-172": "http://172.16.0.1/secret",
            "private-192": "http://192.168.1.1/secret",
            "link-local-metadata": "http://169.254.169.254/latest/meta-data/",
            "metadata-name": "http://metadata.google.internal/computeMetadata/v1/",
            "alibaba-metadata": "http://100.100.100.200/latest/meta-data/",
            "unspecified": f"http://0.0.0.0:{p}/secret",
            "decimal": f"http://2130706433:{p}/secret",
            "hex": f"http://0x7f.1:{p}/secret",
            "octal": f"http://017700000001:{p}/secret",
            "short": f"http://127.1:{p}/secret",
            "ipv4-mapped-ipv6": f"http://[::ffff:127.0.0.1]:{p}/secret",
            "name-to-internal": f"http://intranet.test:{p}/secret",
            "redirect-to-internal": f"http://news.example.com:{s}/to-internal",
            "redirect-to-metadata": f"http://news.example.com:{s}/to-metadata",
            "redirect-to-name": f"http://news.example.com:{s}/to-name",
            "dns-rebinding": f"http://rebind.test:{p}/secret",
        }
        if self.internal6 is not None:
            found["ipv6-loopback"] = f"http://[::1]:{self.internal6.port}/secret"
        return found

    def internal_hits(self) -> list[str]:
        return self.internal.requests + (self.internal6.requests if self.internal6 else [])

    def close(self) -> None:
        for site in (self.internal, self.internal6, self.public):
            if site is not None:
                site.close()


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


# --- the entry points: each takes a URL and answers (failed?, the message shown) ---------------

Entry = Callable[[Any, str, str], tuple[bool, str]]
# How an attempt ended, told by its message; anything else is an unclear message (a failure).
OUTCOMES = {
    "refused": "refused by the address guard",
    "not followed": "redirect not followed",
    "cannot be used": "address not accepted",
    "connection error": "connected only to the checked address",  # the rebinding's first answer
}


def outcome(message: str) -> str | None:
    lower = message.lower()
    return next((name for key, name in OUTCOMES.items() if key in lower), None)


def source_test_fetch(client: Any, url: str, name: str) -> tuple[bool, str]:
    r = client.post("/api/v1/sources/preview", json={"kind": "feed", "url": url})
    assert r.status_code == 200, r.text
    return not r.json()["ok"], r.json()["error"] or ""


def source_add(client: Any, url: str, name: str) -> tuple[bool, str]:
    r = client.post("/api/v1/sources", json={"name": name, "kind": "feed", "url": url})
    error = r.json().get("error", "")
    return (r.status_code == 422 and "Nothing was stored" in error), error


def source_fetch_now(client: Any, url: str, name: str) -> tuple[bool, str]:
    # Saved without the test fetch (as an import or an old configuration would be).
    r = client.post(
        "/api/v1/sources", json={"name": name, "kind": "feed", "url": url, "check": False}
    )
    assert r.status_code == 201, r.text
    run = client.post(f"/api/v1/sources/{r.json()['id']}/fetch")
    assert run.status_code == 200, run.text
    return not run.json()["ok"], run.json()["error"] or ""


def lead(client: Any, url: str, name: str) -> tuple[bool, str]:
    r = client.post("/api/v1/leads", json={"url": url, "submitted_by": "网格员 张三"})
    return r.status_code == 422, r.json().get("error", "")


def _channel(client: Any, body: dict[str, Any]) -> tuple[bool, str]:
    """Saved only if the address passes; then a test message must fail when sent."""
    r = client.post("/api/v1/channels", json=body)
    if r.status_code == 422:
        return True, r.json()["error"]
    assert r.status_code == 201, r.text
    sent = client.post(f"/api/v1/channels/{r.json()['id']}/test", json={})
    return sent.status_code != 200, str(sent.json().get("error", ""))


def webhook(client: Any, url: str, name: str) -> tuple[bool, str]:
    return _channel(client, {"name": name, "kind": "webhook", "target": url})


def apprise_endpoint(client: Any, url: str, name: str) -> tuple[bool, str]:
    target = "dingtalk://0123456789abcdef0123456789abcdef"
    return _channel(
        client, {"name": name, "kind": "apprise", "target": target, "config": {"endpoint": url}}
    )


def apprise_own_host(client: Any, url: str, name: str) -> tuple[bool, str]:
    # gotify://HOST:PORT/TOKEN posts to the host it names (so do ntfy://, rocket://, ...).
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return _channel(
        client, {"name": name, "kind": "apprise", "target": f"gotify://{netloc}/AbCdEfGhIjKlMnO"}
    )


ENTRY_POINTS: dict[str, Entry] = {
    "source-test-fetch": source_test_fetch,
    "source-add": source_add,
    "source-fetch-now": source_fetch_now,
    "lead": lead,
    "webhook": webhook,
    "apprise-endpoint": apprise_endpoint,
    "apprise-own-host": apprise_own_host,
}


def _evidence_cli(settings: Settings) -> Callable[..., Any]:
    runner = CliRunner()
    env = {
        "TINGFENG_CONFIG": "/nonexistent.toml",
        "TINGFENG_DATA_DIR": str(settings.data_dir),
        "TINGFENG_FETCH_ALLOWED_NETWORKS": json.dumps(settings.fetch_allowed_networks),
    }

    def run(*args: str) -> Any:
        return runner.invoke(cli_app, ["--db", settings.database_url, *args], env=env)

    return run


def _evidence_files(settings: Settings) -> list[Path]:
    root = Path(settings.data_dir) / "evidence"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- the test -----------------------------------------------------------------------------------


def test_every_user_supplied_address_is_refused_at_every_entry_point(web, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    capture = _evidence_cli(settings)
    failures: list[str] = []
    with loopback_only(lab.names) as net:
        for target, url in lab.targets().items():
            for entry, attempt in ENTRY_POINTS.items():
                lab.lookups.clear()  # each attempt meets a fresh rebinding
                before = len(lab.internal_hits())
                failed, message = attempt(client, url, f"{entry}-{target}")
                how = outcome(message)
                lab.results[entry][target] = f"{how}: {message}"
                # A plain internal address must meet the guard itself (apprise may already
                # fail to read an odd host spelling); redirects and rebinding may end earlier.
                strict = not target.startswith(("redirect", "dns")) and entry != "apprise-own-host"
                if strict and how != OUTCOMES["refused"]:
                    how = None
                if not failed or how is None or len(lab.internal_hits()) > before:
                    failures.append(f"{entry} × {target} ({url}): {message!r}")
            lab.lookups.clear()
            result = capture("evidence", "capture", url)
            how = outcome(result.stderr)
            lab.results["evidence-capture"][target] = f"{how}: {result.stderr.strip()}"
            # Exit 2: refused, nothing kept (1 would be a fetch that failed and was recorded).
            if result.exit_code != 2 or how != OUTCOMES["refused"]:
                failures.append(f"evidence-capture × {target} ({url}): {result.output!r}")
        assert _evidence_files(settings) == []

        # Chromium: a public page whose images, frames, scripts and a navigation point inside.
        lab.lookups.clear()
        result = capture(
            "evidence", "capture", f"http://news.example.com:{lab.public.port}/hostile"
        )
        assert result.exit_code == 0, result.output
        assert "/ok.png" in lab.public.requests  # the page was rendered, allowed parts fetched
        lab.results["evidence-chromium"]["hostile-page-subresources"] = result.stdout.strip()

    attempts = sum(len(by_target) for by_target in lab.results.values())
    TALLY.parent.mkdir(parents=True, exist_ok=True)
    TALLY.write_text(
        json.dumps(
            {
                "attempts": attempts,
                "refused": attempts - len(failures),
                "succeeded": len(failures),
                "reached_internal_service": len(lab.internal_hits()),
                "entry_points": sorted(lab.results),
                "targets": sorted(lab.targets()),
                "messages": {entry: dict(sorted(by.items())) for entry, by in lab.results.items()},
            },
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert failures == [], "\n".join(failures)
    # No request reached the internal service, and none left the machine.
    assert lab.internal_hits() == []
    assert net.connects == []


def test_the_report_model_address_cannot_be_set_through_the_api(web) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    description = client.get("/api/openapi.json").text
    assert "report_llm" not in description
    assert "llm" not in description.lower()
