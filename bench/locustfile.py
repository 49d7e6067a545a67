"""Locust users of Tingfeng for the load benchmark (`python -m bench load`).

Each user signs in through the /login form as one of the office's accounts and then does what
a person on duty does, with 1–3 s of thinking between steps: the overview, the live feed (whose
page polls the newest posts), searches, events, warnings, cases and posts' details, through the
pages and through the API. Only reads: the benchmark measures reading while posts arrive.

Run by `bench/load.py` (and tests/test_load_smoke.py) as
`locust -f bench/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:PORT`,
configured through the environment:

- `TINGFENG_LOAD_ACCOUNTS`: user names, comma-separated (users take them in turn);
  `TINGFENG_LOAD_PASSWORD`: their password.
- `TINGFENG_LOAD_HOSTS`: several web processes, comma-separated: users take them in turn
  (as a reverse proxy would spread them); default `--host`.
- `TINGFENG_LOAD_WAIT`: think time in seconds, "MIN,MAX" (default "1,3").
- `TINGFENG_LOAD_TOUR=1`: each user first does every task once, and the run ends when all
  have (the smoke test uses it, so that a short run exercises them all).
- `TINGFENG_LOAD_OUT`: a JSON file written at the end: every request (name, kind, time, ok,
  error) and how often each task ran, which `bench/load.py` turns into its table.

A request fails when its status is not 2xx/3xx, when a page turns out to be the sign-in page
(the session was lost), or when an API answer is not the JSON it should be.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from typing import Any

import gevent
from locust import HttpUser, between, events, task

ACCOUNTS = [a.strip() for a in os.environ.get("TINGFENG_LOAD_ACCOUNTS", "admin").split(",")]
ACCOUNTS = [a for a in ACCOUNTS if a] or ["admin"]
PASSWORD = os.environ.get("TINGFENG_LOAD_PASSWORD", "tingfeng-demo")
_low, _, _high = os.environ.get("TINGFENG_LOAD_WAIT", "1,3").partition(",")
WAIT = (float(_low), float(_high or _low))
TOUR = os.environ.get("TINGFENG_LOAD_TOUR") == "1"
OUT = os.environ.get("TINGFENG_LOAD_OUT", "")

# What an office searches for: words of the stories it follows, some with two terms.
QUERIES = (
    "医院", "地铁", "城管", "拆迁", "谣言", "学生", "老师", "警察", "火灾", "食品",
    "政府", "地震", "红十字", "车祸", "污染", "医院 患者", "学校 老师", "城管 小贩",
    "拆迁 村民", "微博 转发",
)  # fmt: skip
# Filters the search form offers, as a person would combine them.
SEARCH_FILTERS = ("", "&within=24h", "&polarity=negative", "&sort=relevance", "&within=7d")

HOSTS = [h.strip() for h in os.environ.get("TINGFENG_LOAD_HOSTS", "").split(",") if h.strip()]

_accounts = itertools.cycle(ACCOUNTS)
_hosts = itertools.cycle(HOSTS)
# (name, kind, ms, ok, error, when it ended): every request, for TINGFENG_LOAD_OUT.
SAMPLES: list[tuple[str, str, float, bool, str, float]] = []
TASKS_RUN: dict[str, int] = {}
_TOURED: list[str] = []


def kind_of(name: str) -> str:
    """`api`, `page` or `sign-in`: the benchmark reports them apart."""
    if name.startswith("/api/"):
        return "api"
    if name.startswith("/login"):
        return "sign-in"
    return "page"


@events.request.add_listener
def _record(
    request_type: str, name: str, response_time: float, exception: Any = None, **_: Any
) -> None:
    SAMPLES.append((name, kind_of(name), float(response_time), exception is None,
                    "" if exception is None else str(exception)[:200], time.time()))  # fmt: skip


@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    if not OUT:
        return
    body = {
        "tasks": sorted(TASKS),
        "ran": TASKS_RUN,
        "samples": [
            {"name": n, "kind": k, "ms": round(ms, 2), "ok": ok, "error": e, "t": round(t, 3)}
            for n, k, ms, ok, e, t in SAMPLES
        ],
    }
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(body, handle, ensure_ascii=False)


def counted(fn: Any) -> Any:
    """Counts the task's runs (for the smoke test: every task must have run)."""

    def run(self: OfficeUser) -> None:
        if fn(self) is not False:
            TASKS_RUN[fn.__name__] = TASKS_RUN.get(fn.__name__, 0) + 1

    run.__name__ = fn.__name__
    return run


class OfficeUser(HttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.username = next(_accounts)
        if HOSTS:
            self.client.base_url = next(_hosts)
        self.event_ids: list[int] = []
        self.case_refs: list[str] = []
        self.post_ids: list[int] = []
        self.latest = 0
        self.sign_in()
        if TOUR:
            for name in sorted(TASKS):
                getattr(self, name)()
                time.sleep(random.uniform(*WAIT))
            _TOURED.append(self.username)
            runner = self.environment.runner
            if runner is not None and len(_TOURED) >= (runner.target_user_count or 0):
                # Every user has done every task: the smoke test need not wait for -t.
                gevent.spawn(runner.quit)

    # --- helpers ----------------------------------------------------------------------------

    def sign_in(self) -> None:
        self.page("/login", "/login")
        with self.client.post(
            "/login",
            data={"username": self.username, "password": PASSWORD},
            name="/login (POST)",
            allow_redirects=False,
            catch_response=True,
        ) as r:
            if r.status_code != 303:
                r.failure(f"sign-in of {self.username} answered {r.status_code}: {r.text[:200]}")
                raise RuntimeError(f"{self.username} could not sign in")
            r.success()

    def page(self, url: str, name: str) -> str:
        """GET a page; the sign-in page instead of the one asked for is a failure."""
        with self.client.get(url, name=name, catch_response=True) as r:
            if r.status_code >= 400:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            elif name != "/login" and r.url and "/login" in r.url.split("?")[0]:
                r.failure("redirected to the sign-in page: the session was lost")
            elif "<html" not in r.text[:500].lower():
                r.failure("not an HTML page")
            else:
                r.success()
            return r.text

    def api(self, url: str, name: str) -> dict[str, Any]:
        """GET an API endpoint; anything but a JSON object is a failure."""
        with self.client.get(url, name=name, catch_response=True) as r:
            data: Any = None
            if r.status_code >= 400:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            else:
                try:
                    data = r.json()
                except ValueError:
                    r.failure(f"not JSON: {r.text[:200]}")
                else:
                    if isinstance(data, dict):
                        r.success()
                    else:
                        r.failure("not a JSON object")
            return data if isinstance(data, dict) else {}

    def _events(self) -> list[int]:
        if not self.event_ids:
            data = self.api("/api/v1/events?limit=30", "/api/v1/events")
            self.event_ids = [e["id"] for e in data.get("events", [])]
        return self.event_ids

    def _cases(self) -> list[str]:
        if not self.case_refs:
            data = self.api("/api/v1/cases?limit=50", "/api/v1/cases")
            self.case_refs = [str(c["id"]) for c in data.get("cases", [])]
        return self.case_refs

    def _posts(self) -> list[int]:
        if not self.post_ids:
            self.live_poll()
        return self.post_ids

    # --- what people do (weights: how often, relative to each other) ----------------------

    @task(3)
    @counted
    def overview(self) -> None:
        self.page("/", "/")

    @task(2)
    @counted
    def overview_api(self) -> None:
        self.api("/api/v1/overview", "/api/v1/overview")

    @task(1)
    @counted
    def live(self) -> None:
        self.page("/live", "/live")
        self.live_poll()

    @task(3)
    @counted
    def live_poll(self) -> None:
        """What the /live page's script asks for every 2 s: the posts after the last seen."""
        after = f"&after_id={self.latest}" if self.latest else ""
        data = self.api(f"/api/v1/posts?limit=50{after}", "/api/v1/posts?after_id=")
        ids = [p["id"] for p in data.get("posts", [])]
        if ids:
            self.post_ids = (ids + self.post_ids)[:100]
        self.latest = max(self.latest, int(data.get("latest_id") or 0))

    @task(1)
    @counted
    def newest_posts(self) -> None:
        self.api("/api/v1/posts?limit=50", "/api/v1/posts")

    @task(3)
    @counted
    def search_page(self) -> None:
        q = random.choice(QUERIES)
        self.page(f"/search?q={q}{random.choice(SEARCH_FILTERS)}", "/search?q=")

    @task(2)
    @counted
    def search_api(self) -> None:
        q = random.choice(QUERIES)
        self.api(f"/api/v1/search?q={q}&limit=20{random.choice(SEARCH_FILTERS)}",
                 "/api/v1/search?q=")  # fmt: skip

    @task(2)
    @counted
    def events_page(self) -> None:
        self.page(random.choice(("/events", "/events?sort=recent")), "/events")

    @task(2)
    @counted
    def event_page(self) -> bool | None:
        ids = self._events()
        if not ids:
            return False
        self.page(f"/events/{random.choice(ids)}", "/events/{id}")
        return None

    @task(1)
    @counted
    def event_api(self) -> bool | None:
        ids = self._events()
        if not ids:
            return False
        self.api(f"/api/v1/events/{random.choice(ids)}", "/api/v1/events/{id}")
        return None

    @task(1)
    @counted
    def events_api(self) -> None:
        self.api("/api/v1/events?sort=heat&limit=30", "/api/v1/events")

    @task(2)
    @counted
    def alerts_page(self) -> None:
        self.page("/alerts", "/alerts")

    @task(1)
    @counted
    def alerts_api(self) -> None:
        self.api("/api/v1/alerts", "/api/v1/alerts")

    @task(2)
    @counted
    def cases_page(self) -> None:
        self.page(random.choice(("/cases", "/cases?view=list")), "/cases")

    @task(1)
    @counted
    def case_page(self) -> bool | None:
        refs = self._cases()
        if not refs:
            return False
        self.page(f"/cases/{random.choice(refs)}", "/cases/{id}")
        return None

    @task(1)
    @counted
    def cases_api(self) -> None:
        self.api("/api/v1/cases?limit=50", "/api/v1/cases")

    @task(2)
    @counted
    def post_page(self) -> bool | None:
        ids = self._posts()
        if not ids:
            return False
        self.page(f"/posts/{random.choice(ids)}", "/posts/{id}")
        return None

    @task(1)
    @counted
    def post_api(self) -> bool | None:
        ids = self._posts()
        if not ids:
            return False
        self.api(f"/api/v1/posts/{random.choice(ids)}", "/api/v1/posts/{id}")
        return None


TASKS = [name for name, value in vars(OfficeUser).items() if hasattr(value, "locust_task_weight")]
