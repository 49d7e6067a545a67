"""The response headers that keep collected content harmless in the browser.

Every collected post is untrusted HTML. The pages escape it (Jinja2 autoescaping) or pass it
through the sanitiser (`tingfeng.web.sanitize`), and the Content-Security-Policy below is the
second wall: scripts run only from this site or from an inline block carrying this response's
nonce, so a payload that slipped through escaping still cannot run. Templates write
`<script nonce="{{ csp_nonce() }}">`; inline event handlers (onclick=…) and javascript: URLs
never run, by design.
"""

from __future__ import annotations

import secrets
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from tingfeng.web.i18n import Receive, Scope, Send

csp_nonce_var: ContextVar[str] = ContextVar("tf_csp_nonce", default="")


def csp_nonce() -> str:
    """The nonce of the response being rendered (for the templates' inline scripts)."""
    return csp_nonce_var.get()


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            # Inline style attributes are kept (the pages use a few); styles cannot run code.
            "style-src 'self' 'unsafe-inline'",
            # Pictures in collected posts are never loaded from their sites (no tracking of the
            # office's readers by a post's author); data: for charts exported as images.
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    """A fresh nonce per request, and the security headers on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        token = csp_nonce_var.set(nonce)

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"content-security-policy", content_security_policy(nonce).encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ):
                    if name not in present:
                        headers.append((name, value))
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            csp_nonce_var.reset(token)
