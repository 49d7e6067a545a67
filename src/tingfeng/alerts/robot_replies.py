"""What a group-chat robot answered: DingTalk, WeCom, Feishu and Lark say "not sent" in the body.

Their custom-robot webhooks answer HTTP 200 with `{"errcode": 130101, "errmsg": "send too
fast…"}` (DingTalk, WeCom) or `{"code": 11232, "msg": "…"}` (Feishu, Lark) when they drop a
message: too many a minute, a keyword or signature check failed, a wrong token. apprise looks
at the status only, so such a message counted as sent and was never retried. While
`recorded_replies` is active in a thread, each response that thread's `requests` receives (how
apprise sends) is kept, and `refusal` reads the service's own code from it. Other threads are
untouched.

Rate limits and "busy" answers are temporary (the outbox retries with backoff); any other code
is a setting to fix (token, keyword, signature, IP allow-list) and is not retried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EXCERPT_BYTES = 4096
# The services' codes for "too many" and "busy, try later" (from their robot documentation):
# DingTalk 130101 "send too fast" (20 a minute); WeCom 45009 "api freq out of limit" and 45033
# "api concurrent out of limit"; -1 "system busy" for both. Feishu/Lark 9499 "too many
# request" (sent with HTTP 400), 11232 flow control and 2200 internal error.
TEMPORARY_CODES = {
    "errcode": frozenset({-1, 130101, 45009, 45033}),
    "code": frozenset({9499, 11232, 2200}),
}
# Which field holds the code, per service; Feishu's older robots answer "StatusCode".
CODE_FIELDS = {
    "dingtalk": ("errcode", "errmsg"),
    "wecombot": ("errcode", "errmsg"),
    "feishu": ("code", "msg"),
    "lark": ("code", "msg"),
}

_state = threading.local()
_install_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True)
class Refusal:
    code: int
    message: str
    temporary: bool


def _install() -> None:
    """Wrap requests' adapter once per process (a no-op outside `recorded_replies`)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from requests.adapters import HTTPAdapter

        original = HTTPAdapter.send

        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = original(self, request, *args, **kwargs)
            replies: list[Reply] | None = getattr(_state, "replies", None)
            if replies is not None and not kwargs.get("stream"):
                # Reading the body here is what requests does next anyway for a request that
                # is not streamed; the content is kept on the response.
                replies.append(Reply(response.status_code, response.content[:EXCERPT_BYTES]))
            return response

        HTTPAdapter.send = send  # type: ignore[method-assign]
        _installed = True


@contextmanager
def recorded_replies() -> Iterator[list[Reply]]:
    """Within: the responses this thread's `requests` receives, in order."""
    _install()
    previous = getattr(_state, "replies", None)
    _state.replies = replies = []
    try:
        yield replies
    finally:
        _state.replies = previous


def refusal(service: str, replies: list[Reply]) -> Refusal | None:
    """The refusal in the robot's last answer, or None when it took the message (or `service`
    is not one of the robots that answer this way)."""
    fields = CODE_FIELDS.get(service)
    if fields is None or not replies:
        return None
    try:
        body = json.loads(replies[-1].body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    code_field, message_field = fields
    if code_field not in body and "StatusCode" in body:
        code_field, message_field = "StatusCode", "StatusMessage"
    code = body.get(code_field)
    if isinstance(code, bool) or not isinstance(code, int) or code == 0:
        return None
    kind = "errcode" if code_field == "errcode" else "code"
    return Refusal(code, str(body.get(message_field) or ""), code in TEMPORARY_CODES[kind])
