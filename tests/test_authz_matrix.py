"""The authorisation matrix: every endpoint × every role × own and other department.

For each role, every route of the application is called with a harmless request. A route the
role may not use (web/guard.py's table, closed by default) must answer 403 "… role may not …"
and change nothing; one it may use must not be refused for its role. Independently of the
table: only the administrator manages accounts and departments, and nobody but the
administrator reads the accounts' details. Then department scope: a handler and a liaison of
another department can neither read nor act on a case of 城管局, while those of 城管局 can.
The tally (requests tried, accesses outside the role) goes to test-artifacts/attacks/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.conftest import add_person, sign_in
from tests.test_signin import _concrete, _routes
from tingfeng.web.guard import PUBLIC, SAFE, roles_for

ROLES = ("approver", "handler", "analyst", "liaison", "viewer")
# Routes that would end the test's own session or change the caller's own account.
OWN_SESSION = re.compile(r"^/(logout|account)|^/api/v1/(session|me|account)")
ADMIN_ONLY = ("/api/v1/users", "/api/v1/departments", "/admin/users")
TALLY = Path(__file__).resolve().parents[1] / "test-artifacts" / "attacks" / "authz.json"


def test_every_endpoint_for_every_role(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    routes = [r for r in _routes(settings) if r not in PUBLIC and not OWN_SESSION.match(r[1])]
    assert len(routes) > 80
    tried = outside = 0
    for role in ROLES:
        add_person(settings, f"u-{role}", role, department="卫健局")
        with httpx.Client(base_url=str(client.base_url), timeout=30) as person:
            sign_in(person, f"u-{role}")
            for method, path in routes:
                allowed = role in roles_for(method, path)
                r = person.request(method, _concrete(path), json={})
                tried += 1
                refused = r.status_code == 403 and "may not" in r.text
                if allowed:
                    assert not refused, (role, method, path, r.text[:200])
                else:
                    if not refused:
                        outside += 1
                    assert refused, (role, method, path, r.status_code, r.text[:200])
                if path.startswith(ADMIN_ONLY) and method not in SAFE:
                    assert refused, (role, method, path, "accounts are the administrator's")
                assert r.status_code < 500, (role, method, path, r.text[:300])
            # The session still works after the whole walk (nothing signed it out).
            assert person.get("/api/v1/session").status_code == 200
    TALLY.parent.mkdir(parents=True, exist_ok=True)
    TALLY.write_text(
        json.dumps({"test": "authz_matrix", "tried": tried, "succeeded": outside,
                    "roles": len(ROLES), "routes": len(routes)}),
        encoding="utf-8",
    )  # fmt: skip
    assert outside == 0


def test_department_scope_of_cases(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "handler-城管局", "handler", department="城管局")
    add_person(settings, "handler-卫健局", "handler", department="卫健局")
    made = client.post(
        "/api/v1/cases", json={"title": "占道经营投诉", "department": "城管局", "level": "一般"}
    )
    assert made.status_code == 201, made.text
    case = made.json()
    assert case["department"] == "城管局"
    for dept, may in (("城管局", True), ("卫健局", False)):
        with httpx.Client(base_url=str(client.base_url), timeout=30) as person:
            sign_in(person, f"handler-{dept}")
            read = person.get(f"/api/v1/cases/{case['id']}")
            listed = person.get("/api/v1/cases").json()
            ids = {c["id"] for c in listed["cases"]}
            export = person.get(f"/api/v1/cases/{case['id']}/export")
            acted = person.post(f"/api/v1/cases/{case['id']}/actions/accept", json={})
            if may:
                assert read.status_code == 200 and case["id"] in ids and export.status_code == 200
                assert acted.status_code in (200, 422), acted.text  # its workflow, not scope
            else:
                assert read.status_code == 403 and case["id"] not in ids, dept
                assert export.status_code == 403
                assert acted.status_code == 403 and "outside theirs" in acted.json()["error"]
