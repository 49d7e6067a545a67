"""Load benchmark: pages and API under 50 people at work while posts arrive at 1,000/s.

`python -m bench load [--seconds 60] [--users 50] [--rate 1000] [--ingest push|file] [--web N]
[--db URL --queue redis://…] [--seed-posts 50000]`

1. A fresh Tingfeng (embedded SQLite in a temporary directory by default; `--db` an empty
   PostgreSQL database and `--queue` Redis for scale-out) is filled as an office's would be:
   `tingfeng demo seed` (users of every role, topics, alert rules, events, cases) and then
   `--seed-posts` real Weibo reposts of CED dated over the last 24 hours (`tingfeng ingest`),
   so the overview, searches and lists work on a day's worth of posts.
2. `tingfeng serve` runs as its own process(es); one push of 100 posts and one visit of each
   page warm it up (models, templates, the event grouper), unmeasured.
3. With ingest: locust (`bench/locustfile.py`) runs `--users` signed-in users for `--seconds`
   while posts arrive (bench/load_ingest.py): a driver process pushes further CED posts
   through the push API at `--rate` posts/s, or `--ingest file` runs a `tingfeng ingest`
   process reading a file as fast as it can. The rate stored is counted in the database at
   the start and end of the window.
4. Baseline, in the same run: the same locust run with no ingest, afterwards (on the database
   as the ingest left it, so the difference is the cost of ingest, not of a smaller database).

Floors (issue 9): p95 ≤ 300 ms for pages and for the API, 0 errors, ingest rate held (≥ 95 %
of the target stored). Prints a table, writes bench/results/load-<time>.json with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load_ingest import Ingest, ced_posts, percentile, write_posts

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_CED = ROOT.parent / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
FLOORS = {"p95_ms": 300.0, "errors": 0, "rate_held": 0.95}


# --- the instance ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    """A fresh Tingfeng in `workdir`: the database, the server process(es), the push source."""

    def __init__(
        self, workdir: Path, db_url: str | None, queue_url: str | None, web: int = 1
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite:///{workdir / 'tingfeng.db'}"
        self.queue_url = queue_url or ""
        # `web` processes serve the pages and the API, each on its own port; the users and the
        # pushes are spread over them in turn, as a reverse proxy in front would.
        self.ports = [_free_port() for _ in range(web)]
        self.port = self.ports[0]
        self.env = os.environ | {
            "TINGFENG_DATABASE_URL": self.db_url,
            "TINGFENG_QUEUE_URL": self.queue_url,
            "TINGFENG_DATA_DIR": str(workdir / "var"),
            "TINGFENG_LOG_LEVEL": "WARNING",
            "TINGFENG_WEB_HOST": "127.0.0.1",
            "TINGFENG_WEB_PORT": str(self.port),
        }
        self.servers: list[subprocess.Popen[bytes]] = []
        self.source_id = 0
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def cli(self, *args: str, timeout: float = 1800) -> str:
        """Runs `tingfeng ARGS` against this instance (for the seed: without the queue, whose
        workers are not started yet and would be waited for); its output, or an error."""
        r = subprocess.run(
            [sys.executable, "-m", "tingfeng.cli", *args],
            cwd=self.workdir, env=self.env | {"TINGFENG_QUEUE_URL": ""}, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"`tingfeng {' '.join(args)}` failed: {r.stderr[-2000:]}")
        return r.stdout

    def seed(
        self, ced: Path, posts: Iterator[dict[str, Any]], seed_posts: int, demo_posts: int
    ) -> dict[str, Any]:
        """`demo seed`, then `seed_posts` of `posts` dated over the last 24 hours."""
        t0 = time.perf_counter()
        self.cli("init")
        self.cli("demo", "seed", "--posts", str(demo_posts), "--no-evidence", "--ced", str(ced))
        day = self.workdir / "day.jsonl"
        written = write_posts(day, posts, seed_posts, day=True)
        self.cli("ingest", str(day), "--source", "监测平台·近24小时")
        self._push_source()
        return {"demo_posts": demo_posts, "day_posts": written, "posts": self.count_posts(),
                "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip

    def _push_source(self) -> None:
        from tingfeng.collect.sources import add_source, issue_push_token
        from tingfeng.db.engine import make_engine, write_transaction

        engine = make_engine(self.db_url)
        with write_transaction(engine) as conn:
            source = add_source(conn, name="对接平台·压测", kind="push",
                                config={"platform": "weibo"})  # fmt: skip
            self.token = issue_push_token(conn, source.id)
            self.source_id = source.id
        engine.dispose()

    def count_posts(self) -> int:
        from sqlalchemy import func, select

        from tingfeng.db.engine import make_engine
        from tingfeng.db.models import Post

        engine = make_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count(Post.id))).scalar() or 0)
        finally:
            engine.dispose()

    def start(self) -> None:
        """`serve` (embedded: the first process runs everything, more are web processes), or
        web processes + a scheduler + a worker on the queue."""
        if self.queue_url:
            roles = [("web", port) for port in self.ports] + [("scheduler", 0), ("worker", 0)]
        else:
            roles = [("all", self.ports[0])] + [("web", port) for port in self.ports[1:]]
        for n, (role, port) in enumerate(roles):
            log = open(self.workdir / f"serve-{n}-{role}.log", "ab")  # noqa: SIM115 (the child keeps it)
            command = [sys.executable, "-m", "tingfeng.cli", "serve", "--role", role]
            self.servers.append(
                subprocess.Popen(
                    command + (["--port", str(port)] if port else []),
                    cwd=self.workdir,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                )
            )
        import httpx

        deadline = time.monotonic() + 120
        waiting = list(self.urls)
        while waiting and time.monotonic() < deadline:
            for proc in self.servers:
                if proc.poll() is not None:
                    raise RuntimeError(f"a server process stopped at start: see {self.workdir}")
            try:
                if httpx.get(f"{waiting[0]}/healthz", timeout=2).status_code == 200:
                    waiting.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        if waiting:
            raise RuntimeError(f"{waiting[0]} did not answer /healthz within 120 s")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server processes (and their threads)."""
        import psutil

        total = 0.0
        for proc in self.servers:
            try:
                t = psutil.Process(proc.pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def warm_up(instance: Instance, posts: list[dict[str, Any]], password: str) -> None:
    """Unmeasured: the first push loads the models and the event grouper; a visit of each
    page loads its templates."""
    import httpx

    share = -(-len(posts) // len(instance.urls))
    for n, url in enumerate(instance.urls):
        with httpx.Client(base_url=url, timeout=120) as client:
            r = client.post(
                f"/api/v1/sources/{instance.source_id}/posts",
                headers={"Authorization": f"Bearer {instance.token}"},
                json={"posts": posts[n * share : (n + 1) * share]},
            )
            if r.status_code != 200:
                raise RuntimeError(f"the warm-up push was refused: {r.status_code} {r.text[:300]}")
            r = client.post("/login", data={"username": "admin", "password": password})
            if r.status_code != 303:
                raise RuntimeError(f"the warm-up sign-in failed: {r.status_code} {r.text[:300]}")
            for path in ("/", "/live", "/search?q=医院", "/events", "/alerts", "/cases",
                         "/api/v1/overview", "/api/v1/search?q=医院", "/api/v1/events"):  # fmt: skip
                client.get(path)


# --- the users ---------------------------------------------------------------------------------


def run_locust(instance: Instance, phase: str, users: int, seconds: float,
               accounts: list[str], password: str) -> dict[str, Any]:  # fmt: skip
    """Runs bench/locustfile.py headless; the requests it recorded."""
    out = instance.workdir / f"locust-{phase}.json"
    log = instance.workdir / f"locust-{phase}.log"
    env = os.environ | {
        "TINGFENG_LOAD_ACCOUNTS": ",".join(accounts),
        "TINGFENG_LOAD_PASSWORD": password,
        "TINGFENG_LOAD_OUT": str(out),
        "TINGFENG_LOAD_HOSTS": ",".join(instance.urls),
    }
    spawn_rate = min(10, users)
    cmd = locust_command(instance.url, users, spawn_rate, seconds)
    with log.open("wb") as handle:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                           timeout=seconds + 120)  # fmt: skip
    if not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"locust ({phase}) wrote no result (exit {r.returncode}): {tail}")
    return json.loads(out.read_text(encoding="utf-8"))


def locust_command(host: str, users: int, spawn_rate: float, seconds: float) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{int(seconds)}s", "--host", host,
        "--only-summary", "--stop-timeout", "10", "--exit-code-on-error", "0",
        "--loglevel", "WARNING",
    ]  # fmt: skip


def summarise(samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Per kind (page, api, sign-in) and per name: requests, req/s, errors, p50/p95/p99/max."""

    def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
        ms = sorted(r["ms"] for r in rows)
        errors = [r["error"] for r in rows if not r["ok"]]
        return {
            "requests": len(rows),
            "per_s": round(len(rows) / seconds, 2) if seconds else 0.0,
            "errors": len(errors),
            "error_samples": sorted(set(errors))[:3],
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99),
            "max_ms": round(ms[-1], 1) if ms else None,
        }

    kinds: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, list[dict[str, Any]]] = {}
    for row in samples:
        kinds.setdefault(row["kind"], []).append(row)
        names.setdefault(row["name"], []).append(row)
    return {
        "by_kind": {k: stats(v) for k, v in sorted(kinds.items())},
        "by_name": {n: stats(v) | {"kind": v[0]["kind"]} for n, v in sorted(names.items())},
    }


# --- the run -----------------------------------------------------------------------------------


def run(
    *,
    seconds: float = 60,
    users: int = 50,
    rate: float = 1000,
    ingest: str = "push",
    db_url: str | None = None,
    queue_url: str | None = None,
    ced: Path = DEFAULT_CED,
    seed_posts: int = 50_000,
    demo_posts: int = 3000,
    web: int = 1,
    progress: Any = None,
) -> dict[str, Any]:
    from tingfeng.demo.seed import PASSWORD, PEOPLE

    say = progress or (lambda _line: None)
    accounts = [username for username, *_ in PEOPLE]
    with tempfile.TemporaryDirectory(prefix="tingfeng-bench-load-") as tmp:
        instance = Instance(Path(tmp), db_url, queue_url, web)
        say(f"seeding {instance.db_url}: demo seed + {seed_posts:,} posts of the last 24 h …")
        # One stream: the seed takes the first posts, the warm-up and the ingest the next.
        posts = ced_posts(ced)
        seeded = instance.seed(ced, posts, seed_posts, demo_posts)
        warm = [next(posts) for _ in range(100)]
        arriving = Ingest(instance, ingest, rate, seconds, posts)
        say(f"starting the server at {', '.join(instance.urls)} …")
        instance.start()
        try:
            warm_up(instance, warm, PASSWORD)
            phases = {
                phase: run_phase(instance, phase, arriving if phase == "ingest" else None,
                                 users, seconds, accounts, PASSWORD, say)
                for phase in ("ingest", "baseline")
            }  # fmt: skip
        finally:
            instance.stop()
            # Warnings and errors of the server (it logs at WARNING): the first place to look.
            logs = {
                path.name: path.read_text(encoding="utf-8", errors="replace")[-6000:]
                for path in sorted(instance.workdir.glob("*.log"))
                if path.stat().st_size
            }
    ing = phases["ingest"]
    held = ing["stored_per_s"] / rate if rate else 0.0
    return {
        "settings": {
            "seconds": seconds,
            "users": users,
            "rate": rate,
            "ingest": ingest,
            "web_processes": web,
            "db": "sqlite (embedded)" if db_url is None else _redact(db_url),
            "queue": _redact(queue_url) if queue_url else "embedded",
            "seed": seeded,
            "accounts": len(accounts),
            "think_time_s": [1, 3],
        },
        "phases": phases,
        "logs": logs,
        "rate_held_ratio": round(held, 3),
        "floors": FLOORS,
        "verdict": verdict(phases, held),
    }


def run_phase(
    instance: Instance,
    phase: str,
    arriving: Ingest | None,
    users: int,
    seconds: float,
    accounts: list[str],
    password: str,
    say: Any,
) -> dict[str, Any]:
    """One locust run of `seconds`, with `arriving` posts during it or none (the baseline)."""
    import psutil

    if arriving is None:
        say(f"{phase}: {users} users for {seconds:.0f} s with no ingest …")
    else:
        say(f"{phase}: {users} users for {seconds:.0f} s while {arriving.mode} ingest runs "
            f"at {arriving.rate:,.0f} posts/s …")  # fmt: skip
    if arriving is not None:
        arriving.start()  # the push driver has read its posts and starts sending now
    before = instance.count_posts()
    cpu0 = instance.cpu_seconds()
    psutil.cpu_percent()
    t0 = time.perf_counter()
    recorded: dict[str, Any] = {}

    def people() -> None:
        recorded.update(run_locust(instance, phase, users, seconds, accounts, password))

    users_thread = threading.Thread(target=people)
    users_thread.start()
    # The window ends when the locust run's time is up: the posts stored by then count.
    time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
    at_end = instance.count_posts()
    window_s = time.perf_counter() - t0
    machine_cpu = psutil.cpu_percent()
    server_cpu = (instance.cpu_seconds() - cpu0) / window_s
    driver = arriving.finish() if arriving is not None else {}
    users_thread.join()
    if not recorded:
        raise RuntimeError(f"the locust run of the {phase} phase failed: see above")
    stored = at_end - before
    return {
        "seconds": round(window_s, 1),
        "posts_before": before,
        "stored_in_window": stored,
        "stored_per_s": round(stored / window_s, 1),
        "stored_after_drain": instance.count_posts() - before,
        "driver": driver,
        "server_cpu_cores": round(server_cpu, 2),
        "machine_cpu_percent": machine_cpu,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tasks_ran": recorded.get("ran", {}),
        **steady_and_whole(recorded["samples"], window_s),
    }


def steady_and_whole(samples: list[dict[str, Any]], window_s: float) -> dict[str, Any]:
    """The figures once every user has signed in (an office's people signed in long before;
    50 argon2 checks in the first seconds are not what they wait for during the day), and
    the whole run's by kind, sign-ins included, beside them."""
    if not samples:
        return summarise([], window_s) | {"steady_s": 0.0, "whole_run": {}}
    first = min(r["t"] - r["ms"] / 1000 for r in samples)
    last = max(r["t"] for r in samples)
    signed = [r["t"] for r in samples if r["kind"] == "sign-in"]
    since = max(signed) if signed else first
    steady = [r for r in samples if r["t"] >= since and r["kind"] != "sign-in"]
    return {
        "signed_in_after_s": round(since - first, 1),
        "steady_s": round(last - since, 1),
        **summarise(steady, last - since),
        "whole_run": summarise(samples, window_s)["by_kind"],
    }


def _redact(url: str) -> str:
    """The URL without its password (results are kept in the repository)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def verdict(phases: dict[str, Any], held: float) -> dict[str, bool]:
    ing = phases["ingest"]["by_kind"]

    def within(kind: str) -> bool:  # no requests at all is no pass
        p95 = ing.get(kind, {}).get("p95_ms")
        return p95 is not None and p95 <= FLOORS["p95_ms"]

    return {
        "pages_p95": within("page"),
        "api_p95": within("api"),
        "no_errors": all(
            k["errors"] == 0 for p in phases.values() for k in p["whole_run"].values()
        ),
        "rate_held": held >= FLOORS["rate_held"],
    }


def print_table(r: dict[str, Any]) -> None:
    s, ph = r["settings"], r["phases"]
    print(
        f"\nload: {s['users']} users (think time 1–3 s) for {s['seconds']:.0f} s; ingest "
        f"{s['ingest']} at {s['rate']:,.0f} posts/s; {s['db']}, queue {s['queue']}; "
        f"{s['web_processes']} web process(es); "
        f"seeded {s['seed']['posts']:,} posts"
    )
    print(
        "\nonce every user has signed in (steady), and the whole run with the sign-ins:\n"
        "\n| phase | kind | requests | req/s | errors | p50 ms | p95 ms | p99 ms | max ms |"
        "\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for phase, label in (("ingest", "with ingest"), ("baseline", "no ingest (baseline)")):
        rows = [(f"{kind} (steady {ph[phase]['steady_s']:.0f} s)", ph[phase]["by_kind"].get(kind))
                for kind in ("page", "api")]  # fmt: skip
        rows += [(f"{kind} (whole run)", ph[phase]["whole_run"].get(kind))
                 for kind in ("page", "api", "sign-in")]  # fmt: skip
        for kind, k in rows:
            if k:
                print(
                    f"| {label} | {kind} | {k['requests']:,} | {k['per_s']} | {k['errors']} "
                    f"| {k['p50_ms']} | {k['p95_ms']} | {k['p99_ms']} | {k['max_ms']} |"
                )
    ing = ph["ingest"]
    d = ing["driver"]
    print("\n| ingest | value | floor |\n|---|---:|---:|")
    full = " (file ingest at full speed)" if s["ingest"] == "file" else ""
    print(f"| target posts/s{full} | {s['rate']:,.0f} | |")
    print(f"| stored per s in the window | {ing['stored_per_s']:,.0f} "
          f"| ≥ {FLOORS['rate_held'] * s['rate']:,.0f} |")  # fmt: skip
    print(f"| held (stored / target) | {r['rate_held_ratio']:.2f} | ≥ {FLOORS['rate_held']} |")
    if "sent" in d:
        print(f"| posts sent / not sent (server busy) | {d['sent']:,} / {d['overflow']:,} | |")
        print(f"| push requests / errors | {d['requests']:,} / {d['errors']} | |")
        print(f"| push request p50 / p95 ms | {d['push_p50_ms']} / {d['push_p95_ms']} | |")
    for phase in ("ingest", "baseline"):
        p = ph[phase]
        print(f"| {phase}: server CPU (cores) / machine CPU % / load average "
              f"| {p['server_cpu_cores']} / {p['machine_cpu_percent']} / "
              f"{p['load_average'][0]} | |")  # fmt: skip
    print("\n| request | kind | n | p50 ms | p95 ms | p99 ms | errors | baseline p95 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    base = ph["baseline"]["by_name"]
    for name, x in ing["by_name"].items():
        b = base.get(name, {})
        print(f"| {name} | {x['kind']} | {x['requests']} | {x['p50_ms']} | {x['p95_ms']} "
              f"| {x['p99_ms']} | {x['errors']} | {b.get('p95_ms')} |")  # fmt: skip
    v = r["verdict"]
    print(f"\nfloors: p95 ≤ {FLOORS['p95_ms']:.0f} ms (pages {'ok' if v['pages_p95'] else 'MISSED'}, "
          f"API {'ok' if v['api_p95'] else 'MISSED'}), 0 errors "
          f"({'ok' if v['no_errors'] else 'MISSED'}), ingest rate held "
          f"({'ok' if v['rate_held'] else 'MISSED'})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench load", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=60, help="length of each phase")
    parser.add_argument("--users", type=int, default=50, help="concurrent signed-in users")
    parser.add_argument("--rate", type=float, default=1000, help="posts/s to push while loaded")
    parser.add_argument("--ingest", choices=("push", "file"), default="push",
                        help="push: the push API at --rate (default); file: a `tingfeng "
                        "ingest` process at full speed")  # fmt: skip
    parser.add_argument("--db", default=None,
                        help="an EMPTY database (default: a fresh SQLite file)")  # fmt: skip
    parser.add_argument("--queue", default=None, help="redis://… for scale-out")
    parser.add_argument("--web", type=int, default=1,
                        help="web processes (users and pushes spread over them in turn)")  # fmt: skip
    parser.add_argument("--seed-posts", type=int, default=50_000,
                        help="posts of the last 24 hours stored before the run")  # fmt: skip
    parser.add_argument("--ced", type=Path, default=DEFAULT_CED, help="CED cascades file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if not args.ced.exists():
        print(f"error: {args.ced} not found (pass --ced FILE)", file=sys.stderr)
        return 2
    if args.seconds < 10 or args.users < 1 or args.rate <= 0 or args.web < 1:
        print("error: --seconds must be ≥ 10, --users, --web ≥ 1 and --rate > 0", file=sys.stderr)
        return 2
    from bench.__main__ import _write, machine

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **run(
            seconds=args.seconds, users=args.users, rate=args.rate, ingest=args.ingest,
            db_url=args.db, queue_url=args.queue, ced=args.ced, seed_posts=args.seed_posts,
            web=args.web,
            progress=lambda line: print(line, file=sys.stderr),
        ),
    }  # fmt: skip
    m = result["machine"]
    print(
        f"\nmachine: {m['cpu']} · {m['cores']} cores · {m['memory_gb']} GB · "
        f"Python {m['python']} · {m['git']}"
    )
    print_table(result)
    _write(args.out, "load", result, latest=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
