"""Liveness, readiness and metrics: what a load balancer, systemd and Prometheus ask.

- `GET /livez`: the process answers (touches nothing else); a restart is the cure when it does not.
- `GET /readyz`: may this process take traffic (tingfeng.readiness)? 200 with every check, or
  503 naming each failing one and what to do.
- `GET /metrics`: Prometheus text (tingfeng.metrics), for a signed-in administrator, for a
  bearer of `metrics_token`, or for a direct connection from `metrics_networks`.

All three are public in the guard (a liveness probe has no session); /metrics checks its own
credentials here, because Prometheus sends a token of its own, not a person's.
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import choose_encoder

from tingfeng import __version__
from tingfeng.metrics import build_registry
from tingfeng.readiness import Readiness, summary
from tingfeng.settings import Settings
from tingfeng.tasks import Runtime

# Headers a reverse proxy adds: a request carrying one did not come straight from its address.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def from_metrics_network(request: Request, settings: Settings) -> bool:
    """A direct connection from an allowed network. Behind a proxy on the same machine every
    visitor would seem to come from loopback, so a forwarded request never counts."""
    if request.client is None or any(h in request.headers for h in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.metrics_networks
    )


def _admin(request: Request, token: str) -> bool:
    """A signed-in administrator: a personal API token or a browser session."""
    from tingfeng.office.signin import session_user, token_user
    from tingfeng.web.guard import SESSION_COOKIE

    app_state = request.app.state
    now = datetime.now(UTC)
    with app_state.engine.connect() as conn:
        if token:
            person = token_user(conn, token, now)
        else:
            found = session_user(
                conn, app_state.settings, request.cookies.get(SESSION_COOKIE, ""), now
            )
            person = found.person if found is not None else None
    return person is not None and person.role == "admin"


def may_read_metrics(request: Request, settings: Settings) -> bool:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if (
        token
        and settings.metrics_token
        and hmac.compare_digest(token.encode(), settings.metrics_token.encode())
    ):
        return True
    if from_metrics_network(request, settings):
        return True
    return _admin(request, token)


def register(app: FastAPI, runtime: Runtime, settings: Settings) -> None:
    readiness = Readiness(settings, runtime.engine)
    registry = build_registry(runtime.engine, settings, readiness)

    @app.get("/livez", include_in_schema=False)
    def livez() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        result = summary(readiness.run())
        return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not may_read_metrics(request, settings):
            raise HTTPException(
                401,
                "Metrics need the metrics token (Authorization: Bearer …, setting "
                "metrics_token), a direct connection from metrics_networks, or a signed-in "
                "administrator.",
            )
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)
