"""Service processes set their start-up heap aside from the garbage collector (tingfeng.heap):
full passes over models and dictionaries took 100-180 ms each in the web process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import _free_port, add_person
from tingfeng.db.engine import make_engine
from tingfeng.db.migrate import upgrade
from tingfeng.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import gc, json
from tingfeng.heap import settle_heap
kept = [[n] for n in range(200_000)]      # a long-lived heap, like a service's
frozen = settle_heap()
young = [[n] for n in range(1_000)]      # allocated after start-up
in_gen2 = {id(x) for x in gc.get_objects(generation=2)}
print(json.dumps({
    "frozen": frozen,
    "kept_examined": sum(id(x) in in_gen2 for x in kept[:1000]),
    "young_tracked": all(gc.is_tracked(x) for x in young),
}))
"""


def test_settle_heap_takes_what_exists_out_of_full_collections() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["frozen"] >= 200_000
    assert result["kept_examined"] == 0  # frozen: no full pass walks them again
    assert result["young_tracked"]  # what comes later is collected as before


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_web_process_settles_its_heap_and_its_helpers_end_with_it(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tf.db'}", data_dir=tmp_path / "var")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    add_person(settings, "admin", "admin")
    env = os.environ | {"TINGFENG_DATA_DIR": str(settings.data_dir)}
    command = [sys.executable, "-m", "tingfeng.cli", "--log-format", "json",
               "--db", settings.database_url, "serve", "--role", "web",
               "--host", "127.0.0.1", "--port", str(_free_port())]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    found = None
    helpers: set[int] = set()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            record = json.loads(line)
            if record["message"].startswith("start-up objects set aside"):
                found = record
                break
        helpers = _children(proc.pid)
    finally:
        # kill -9: the helpers (the analysis pool and its resource tracker) must notice alone.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert found is not None, "the web process never set its heap aside"
    # The web application, its models and dictionaries: about 245,000 objects.
    assert int(found["message"].rsplit(" ", 1)[1]) > 100_000
    assert helpers, "no helper process was started"
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in helpers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"helpers outlived their web process: {left}"
