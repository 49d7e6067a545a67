"""Real, private PostgreSQL and Redis servers on 127.0.0.1 for the test run.

Each server lives in its own temporary directory under the system temp dir, listens on a free
loopback port and is stopped (and its directory removed) when the run ends: by the pytest
finalizers, else by `atexit`, else (for a run killed outright) by the next run, which reaps
servers whose owning process is gone. Nothing here touches the machine's system services.

The classes are independent of pytest; `tests/conftest.py` wraps them in fixtures. Missing
binaries raise `ServerError` with a message telling to run `make test`, which installs them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

INSTALL_HINT = "run `make test` (scripts/install-system.sh installs it), or install it yourself"
PG_PREFIX = "tingfeng-test-pg-"
REDIS_PREFIX = "tingfeng-test-redis-"
OWNER_FILE = "owner.pid"


class ServerError(RuntimeError):
    """A test server could not be found, started or stopped."""


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    """Poll `predicate` until it returns true; raise `ServerError` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise ServerError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
        interval_s = min(interval_s * 1.5, 0.25)


def _is_root() -> bool:
    return os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child when the test process dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _make_private_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


# --- registry: stop everything on exit -----------------------------------------------------

_running: list[_Server] = []
_lock = threading.Lock()


def stop_all() -> None:
    """Stop every server this process started (idempotent; used by atexit and signals)."""
    with _lock:
        servers = list(_running)
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.close()


atexit.register(stop_all)


def _on_sigterm(signum, frame) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_signal_cleanup() -> None:
    """Stop the servers also when the run is ended by SIGTERM/SIGHUP (atexit would not run)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_sigterm)


class _Server:
    """Shared bookkeeping: the private directory and registration for cleanup."""

    def __init__(self, prefix: str) -> None:
        self.dir = _make_private_dir(prefix)
        self.port = 0
        with _lock:
            _running.append(self)

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server for good and remove its directory."""
        try:
            self.stop()
        finally:
            with _lock:
                if self in _running:
                    _running.remove(self)
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# --- PostgreSQL ----------------------------------------------------------------------------


def find_pg_bindir() -> Path:
    """The newest PostgreSQL server bin directory (Debian layout first, then PATH)."""
    candidates = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", d)
        if m and (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            candidates.append(((int(m.group(1)), int(m.group(2) or 0)), Path(d)))
    if candidates:
        return max(candidates)[1]
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise ServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
        f"nor on PATH: {INSTALL_HINT} (Debian package: postgresql)."
    )


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster: trust auth, user `tingfeng`, durability off for speed.

    As root the server runs as the `postgres` system user (PostgreSQL refuses to run as root).
    """

    USER = "tingfeng"
    START_TIMEOUT_S = 60

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_pg_bindir()
        self.run_as = None
        if _is_root():
            if shutil.which("runuser") is None:
                raise ServerError(f"`runuser` not found (util-linux): {INSTALL_HINT}.")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError as e:
                raise ServerError(
                    f"running as root but there is no `postgres` system user: {INSTALL_HINT} "
                    "(Debian package: postgresql creates it)."
                ) from e
            self.run_as = "postgres"
        reap_stale(PG_PREFIX)
        super().__init__(PG_PREFIX)
        self.datadir = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.logfile = self.dir / "postgres.log"
        self.sockdir.mkdir()
        if self.run_as:
            shutil.chown(self.dir, user=self.run_as)
            shutil.chown(self.sockdir, user=self.run_as)
            os.chmod(self.dir, 0o700)
        self._initialised = False
        self._version: int | None = None

    # -- commands

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str, timeout: float = 120, check: bool = True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        proc = subprocess.run(
            self._cmd(tool, *args),
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ServerError(
                f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"\n--- {self.logfile} ---\n{_tail(self.logfile)}"
            )
        return proc

    def _initdb(self) -> None:
        base = ["-D", str(self.datadir), "--auth=trust", "-U", self.USER, "--encoding=UTF8"]
        base.append("--no-sync")
        proc = self._run("initdb", *base, "--locale=C.UTF-8", check=False)
        if proc.returncode != 0:
            # No C.UTF-8 locale on this system: fall back to the C locale.
            shutil.rmtree(self.datadir, ignore_errors=True)
            self._run("initdb", *base, "--no-locale")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tingfeng test server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
                "log_min_messages = warning\n"
            )
        self._initialised = True

    # -- lifecycle

    @property
    def running(self) -> bool:
        if not self._initialised:
            return False
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self) -> None:
        """Start the server (initialising the cluster on first start); wait until it accepts."""
        if not self._initialised:
            self._initdb()
        fixed_port = self.port != 0
        for _attempt in range(1 if fixed_port else 5):
            port = self.port if fixed_port else free_port()
            proc = self._run(
                "pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
                "-w", "-t", str(self.START_TIMEOUT_S), "-o", f"-p {port}",
                timeout=self.START_TIMEOUT_S + 30, check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                self.port = port
                break
            log = _tail(self.logfile)
            if fixed_port or ("could not bind" not in log and "in use" not in log):
                raise ServerError(
                    f"pg_ctl start failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                    f"\n--- {self.logfile} ---\n{log}"
                )
        else:
            raise ServerError(f"PostgreSQL could not bind a free port:\n{_tail(self.logfile)}")
        wait_until(self._accepts, 30, f"PostgreSQL on 127.0.0.1:{self.port}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: mode 'fast' (clean) or 'immediate' (like a crash)."""
        if not self._initialised or not (self.datadir / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60",
                  timeout=90, check=False)  # fmt: skip

    def kill(self) -> None:
        """Crash the server (immediate shutdown: no checkpoint, clients cut off)."""
        self.stop(mode="immediate")

    def restart(self) -> None:
        """Stop (fast) and start again on the same port."""
        self.stop()
        self.start()

    # -- connecting

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.USER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.USER} dbname={database}"

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                conn.execute("select 1")
        except psycopg.OperationalError:
            return False
        return True

    def server_version(self) -> int:
        """server_version_num, e.g. 150008."""
        if self._version is None:
            import psycopg

            with psycopg.connect(self.conninfo(), connect_timeout=10) as conn:
                self._version = int(conn.execute("show server_version_num").fetchone()[0])
        return self._version

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(self.conninfo(database), autocommit=True, connect_timeout=10) as c:
            c.execute(sql)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (from template0); return its name."""
        name = name or f"tf_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsafe database name {name!r}")
        sql = f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
        if self.server_version() >= 150000:
            sql += " STRATEGY FILE_COPY"  # much faster than WAL_LOG for a tiny template
        self.execute(sql)
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting off connections a test left open."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsafe database name {name!r}")
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Redis ---------------------------------------------------------------------------------


def find_redis_server() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if not path:
        raise ServerError(
            f"`redis-server` not found: {INSTALL_HINT} (Debian package: redis-server)."
        )
    return path


def redis_ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when a Redis server on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(_Server):
    """A private redis-server in the foreground of a child process; no persistence."""

    START_TIMEOUT_S = 30

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        reap_stale(REDIS_PREFIX)
        super().__init__(REDIS_PREFIX)
        self.logfile = self.dir / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, port: int) -> subprocess.Popen:
        args = [
            self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir),
            "--logfile", "", "--protected-mode", "yes", "--loglevel", "warning",
        ]  # fmt: skip
        in_main = threading.current_thread() is threading.main_thread()
        with self.logfile.open("ab") as log:
            return subprocess.Popen(
                args,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The death signal follows the spawning *thread*: only tie it to the main one.
                preexec_fn=_die_with_parent if in_main else None,
            )

    def start(self) -> None:
        """Start the server (on a new free port the first time, else the same port)."""
        if self.running:
            return
        fixed_port = self.port != 0
        for _attempt in range(1 if fixed_port else 5):
            port = self.port if fixed_port else free_port()
            proc = self._spawn(port)
            try:
                wait_until(
                    lambda p=proc, n=port: p.poll() is not None or redis_ping(n, 0.5),
                    self.START_TIMEOUT_S,
                    f"redis-server on 127.0.0.1:{port}",
                )
            except ServerError:
                self._terminate(proc)
                raise
            if proc.poll() is None:
                self.proc, self.port = proc, port
                return
        raise ServerError(f"redis-server failed to start:\n{_tail(self.logfile)}")

    @staticmethod
    def _terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM; SIGKILL if it does not exit in 10 s)."""
        if self.proc is not None:
            self._terminate(self.proc)
            self.proc = None

    def kill(self) -> None:
        """Crash the server (SIGKILL)."""
        if self.proc is not None:
            self._terminate(self.proc, signal.SIGKILL)
            self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (all data is lost: no persistence)."""
        self.stop()
        self.start()


class PersistentRedisServer(RedisServer):
    """Redis as a deployment should run it for the work queue: every write in the append-only
    file and synced (`appendonly yes`, `appendfsync always`), so queued tasks survive a restart
    and even a kill -9 of the server (the fault tests restart it under load)."""

    def _spawn(self, port: int) -> subprocess.Popen:
        args = [
            self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
            "--dir", str(self.dir), "--logfile", "", "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        in_main = threading.current_thread() is threading.main_thread()
        with self.logfile.open("ab") as log:
            return subprocess.Popen(
                args, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if in_main else None,
            )  # fmt: skip


# --- reaping servers of runs that were killed outright -------------------------------------


def reap_stale(prefix: str) -> None:
    """Stop servers (and remove directories) left by earlier test processes that are gone."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
        path = Path(d)
        try:
            owner = int((path / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        _stop_stale(path)
        shutil.rmtree(path, ignore_errors=True)


def _stop_stale(path: Path) -> None:
    pidfile = path / "data" / "postmaster.pid"
    if not pidfile.exists():
        return  # Redis dies with its parent (PR_SET_PDEATHSIG); nothing else to do.
    with contextlib.suppress(Exception):
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        wait_until(lambda: not _pid_alive(pid), 10, f"stale postgres {pid} to exit")
