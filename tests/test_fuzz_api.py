"""The API fuzzed from its own OpenAPI description with schemathesis, as the signed-in admin.

Every operation under /api/v1 gets the examples, boundary values (huge ids, empty and odd
strings, wrong types) and random requests that schemathesis derives from the description, with
a fixed seed so a failure in CI repeats on any machine. The checks: no answer is a server
error, every status code and content type is one the description declares, and every body
matches the declared schema. The process may reach loopback only (tests/netguard.py): the
fuzzer invents web addresses for sources and leads, and none of them may leave this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis

from tests.conftest import ARTIFACTS, push_source
from tests.netguard import loopback_only

API = "/api/v1/"
# Not fuzzed, because each would end the session the fuzzer is signed in with (a changed
# password or a disabled or demoted account signs `tester` out; the rest of the run would
# only see 401s). Sign-out and the own password change are outside /api/v1 already.
DESTROYS_SESSION = ("/api/v1/admin/users/{user_id}", "/api/v1/admin/users/{user_id}/password")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance," + (
    "response_schema_conformance"
)
SEED = 20240601
MAX_EXAMPLES = 12
TALLY = ARTIFACTS / "attacks" / "fuzz.json"


def _schemathesis() -> str:
    beside = Path(sys.executable).with_name("schemathesis")
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if not found:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'", pytrace=False)
    return found


def _seed(client: httpx.Client, settings) -> None:  # type: ignore[no-untyped-def]
    """Something to find: posts, a topic and a case, so not every id is a 404."""
    sid, token = push_source(settings)
    posts = [
        {"id": f"f{n}", "title": f"地铁{n}号线停运", "text": f"乘客滞留第{n}站，等待疏散。"}
        for n in range(5)
    ]
    r = client.post(
        f"/api/v1/sources/{sid}/posts", headers={"Authorization": f"Bearer {token}"}, json=posts
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/topics", json={"name": "地铁", "query": "地铁 停运"})
    assert r.status_code in (200, 201), r.text


@pytest.fixture
def api(web):  # type: ignore[no-untyped-def]
    client, settings = web
    with loopback_only() as attempts:
        _seed(client, settings)
        yield client, attempts


def test_the_openapi_description_loads_without_errors(api) -> None:  # type: ignore[no-untyped-def]
    client, _attempts = api
    schema = schemathesis.openapi.from_url(
        f"{client.base_url}/api/openapi.json", headers={"Cookie": _cookie(client)}
    )
    operations = list(schema.get_all_operations())
    broken = [str(result.err()) for result in operations if not hasattr(result, "ok")]
    assert broken == []
    labels = {result.ok().label for result in operations}
    assert len([label for label in labels if label.split(" ", 1)[1].startswith(API)]) >= 80
    # The shared refusal is documented, so a client knows what a 4xx body looks like.
    raw = client.get("/api/openapi.json").json()
    assert "Error" in raw["components"]["schemas"]
    assert "4XX" in raw["paths"]["/api/v1/cases"]["get"]["responses"]


def _cookie(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def test_no_server_error_and_no_schema_violation_in_the_api(api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, attempts = api
    report = tmp_path / "run.json"
    command = [
        _schemathesis(), "run", f"{client.base_url}/api/openapi.json",
        "--include-path-regex", f"^{API}",
        *[arg for path in DESTROYS_SESSION for arg in ("--exclude-path", path)],
        "-H", f"Cookie: {_cookie(client)}",
        "-H", f"X-CSRF-Token: {client.headers['X-CSRF-Token']}",
        # The cookie is the credential: made-up Authorization headers only test the guard's
        # 401, which the sign-in tests cover.
        "--generation-with-security-parameters", "false",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED), "--generation-deterministic",
        # One worker: with two, hypothesis describes filter lambdas with ast.parse in both
        # threads at once, and CPython 3.11.7's parser keeps its recursion depth per process,
        # not per thread: one CI run in many failed with "AST constructor recursion depth
        # mismatch" (a SystemError inside schemathesis, not a finding about the API).
        "--workers", "1",
        "--request-timeout", "60",
        "--no-color", "--output-truncate", "true",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    started = time.monotonic()
    # In tmp_path: schemathesis keeps a cache folder (.schemathesis) where it runs.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    seconds = time.monotonic() - started
    assert report.exists(), run.stdout[-4000:] + run.stderr[-2000:]
    result = json.loads(report.read_text(encoding="utf-8"))
    cases = result["test_cases"]
    TALLY.parent.mkdir(parents=True, exist_ok=True)
    TALLY.with_suffix(".txt").write_text(run.stdout + run.stderr, encoding="utf-8")
    TALLY.write_text(
        json.dumps(
            {
                "operations": result["operations"]["tested"],
                "test_cases": cases["generated"],
                "failures": cases["unique_failures"],
                "errors": cases["errored"],
                "seconds": round(seconds, 1),
                "seed": SEED,
                "max_examples": MAX_EXAMPLES,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    # The summary at the end of the output names each failure, with a curl line to repeat it.
    assert run.returncode == 0, run.stdout[-12000:]
    assert cases["unique_failures"] == 0 and cases["errored"] == 0
    assert result["operations"]["tested"] >= 80
    assert cases["generated"] >= 1000
    # Made-up addresses (sources, leads) were refused before any connection left the machine.
    assert attempts.connects == []
