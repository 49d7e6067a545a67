"""The public message board (留言板): messages, their answers, the board's statistics, and the
anti-spam pieces (a per-address rate limit, a signed arithmetic challenge, a honeypot field).

Anyone may leave a message without an account. The asker gets a private follow link once; only
the sha256 of its token is stored. A message becomes public on the board when it is answered,
unless the asker asked for it to stay private. Contact details are for the office only: no
function that serves the public returns them, and the audit log does not record them.

Answers come from cases: the cases service calls `mark_accepted` when it opens a case from a
message and `publish_answer` when the case's approved reply is published.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import statistics
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, update

from tingfeng.audit import record
from tingfeng.cases.deadlines import add_working_days
from tingfeng.db.models import BoardMessage
from tingfeng.problems import ProblemsError
from tingfeng.web.i18n import N_, gettext

KINDS = {"question": N_("咨询"), "complaint": N_("投诉"), "suggestion": N_("建议")}
STATUS = {
    "new": N_("待处理"),
    "accepted": N_("办理中"),
    "answered": N_("已答复"),
    "closed": N_("已办结(无需答复)"),
    "spam": N_("垃圾信息"),
}
# What the office may set by hand; "accepted" and "answered" come from cases.
# "new" undoes a mistaken spam or closed marking.
OFFICE_STATUSES = ("spam", "closed", "new")
ANSWER_WORKING_DAYS = 5

TITLE_MAX = 100
BODY_MIN, BODY_MAX = 5, 5000
NAME_MAX = 100
CONTACT_MAX = 200
ANSWER_MAX = 20_000

_T = BoardMessage.__table__


class BoardError(ProblemsError):
    """A message or an office action that cannot be accepted; `fields` maps form fields to
    their problem, for showing each next to its field."""

    what = "message"

    def __init__(self, problems: list[str] | str, fields: dict[str, str] | None = None) -> None:
        super().__init__(problems)
        self.fields = fields or {}


class MessageNotFound(BoardError):
    """No message with that id."""


# --- messages ---------------------------------------------------------------------------------


def _clean(text: str | None, *, multiline: bool) -> str:
    """Strip control characters (PostgreSQL refuses NUL in text) and normalise line ends."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    keep = "\n\t" if multiline else ""
    return "".join(
        ch for ch in text if ch in keep or not unicodedata.category(ch).startswith("C")
    ).strip()


@dataclass(frozen=True)
class CleanMessage:
    kind: str
    title: str
    body: str
    name: str | None
    contact: str | None


def validate_message(
    *, kind: str, title: str, body: str, name: str | None = None, contact: str | None = None
) -> CleanMessage:
    """The message as it will be stored, or a BoardError listing every problem (in Chinese:
    the asker reads them on the form)."""
    fields: dict[str, str] = {}
    kind = (kind or "").strip()
    title_c = _clean(title, multiline=False)
    body_c = _clean(body, multiline=True)
    name_c = _clean(name, multiline=False) or None
    contact_c = _clean(contact, multiline=False) or None
    # In the asker's language: the web request's (Chinese outside a request).
    if kind not in KINDS:
        fields["kind"] = gettext("请选择留言类型：%(kinds)s。") % {
            "kinds": gettext("、").join(gettext(k) for k in KINDS.values())
        }
    if not title_c:
        fields["title"] = gettext("请填写标题。")
    elif len(title_c) > TITLE_MAX:
        fields["title"] = gettext("标题最多 %(max)s 个字（现有 %(n)s 个字），请缩短。") % {
            "max": TITLE_MAX,
            "n": len(title_c),
        }
    if len(body_c) < BODY_MIN:
        fields["body"] = gettext("留言内容至少 %(min)s 个字，请写清楚事情经过或问题。") % {
            "min": BODY_MIN
        }
    elif len(body_c) > BODY_MAX:
        fields["body"] = gettext("留言内容最多 %(max)s 个字（现有 %(n)s 个字），请精简。") % {
            "max": BODY_MAX,
            "n": len(body_c),
        }
    if name_c and len(name_c) > NAME_MAX:
        fields["name"] = gettext("署名最多 %(max)s 个字。") % {"max": NAME_MAX}
    if contact_c and len(contact_c) > CONTACT_MAX:
        fields["contact"] = gettext("联系方式最多 %(max)s 个字。") % {"max": CONTACT_MAX}
    if fields:
        raise BoardError(list(fields.values()), fields)
    return CleanMessage(kind, title_c, body_c, name_c, contact_c)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def submit_message(
    conn: Connection,
    *,
    kind: str,
    title: str,
    body: str,
    name: str | None = None,
    contact: str | None = None,
    public: bool = True,
    now: datetime,
) -> tuple[int, str]:
    """Store a message; returns its id and the follow token (shown to the asker once)."""
    clean = validate_message(kind=kind, title=title, body=body, name=name, contact=contact)
    token = secrets.token_urlsafe(24)
    message_id = int(
        conn.execute(
            insert(BoardMessage).values(
                kind=clean.kind,
                title=clean.title,
                body=clean.body,
                name=clean.name,
                contact=clean.contact,
                follow_hash=token_hash(token),
                status="new",
                public=public,
                created_at=now,
            )
        ).inserted_primary_key[0]
    )
    # The contact stays out of the log: the log is kept for good, the message may be erased.
    record(
        conn,
        None,
        "board.message",
        f"board:{message_id}",
        {"kind": clean.kind, "title": clean.title, "public": public},
        at=now,
    )
    return message_id, token


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _public_view(row: Any) -> dict[str, Any]:
    """What the asker and the public may see of a message (never the contact)."""
    answered = row.status == "answered"
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_label": KINDS.get(row.kind, row.kind),
        "title": row.title,
        "body": row.body,
        "name": row.name,
        "status": row.status,
        "status_label": STATUS.get(row.status, row.status),
        "public": bool(row.public),
        "created_at": _iso(row.created_at),
        "answer": row.answer if answered else None,
        "answered_at": _iso(row.answered_at) if answered else None,
        "answered_by": row.answered_by if answered else None,
    }


def _office_view(row: Any) -> dict[str, Any]:
    return _public_view(row) | {
        "contact": row.contact,
        "case_id": row.case_id,
        "answer": row.answer,
        "answered_at": _iso(row.answered_at),
        "answered_by": row.answered_by,
    }


def find_by_token(conn: Connection, token: str) -> dict[str, Any] | None:
    """The message a follow link names, or None (unknown or malformed token)."""
    if not token or len(token) > 200:
        return None
    row = conn.execute(select(_T).where(_T.c.follow_hash == token_hash(token))).first()
    return _public_view(row) if row else None


def public_messages(
    conn: Connection, *, limit: int = 20, offset: int = 0, answered_only: bool = True
) -> list[dict[str, Any]]:
    """Public, non-spam messages, newest first. By default only answered ones: the notice
    promises publication once answered, and an unreviewed message may name people."""
    q = select(_T).where(_T.c.public.is_(True), _T.c.status != "spam")
    if answered_only:
        q = q.where(_T.c.status == "answered")
    q = q.order_by(_T.c.created_at.desc(), _T.c.id.desc()).limit(limit).offset(offset)
    return [_public_view(r) for r in conn.execute(q).all()]


def count_public(conn: Connection, *, answered_only: bool = True) -> int:
    q = select(func.count()).select_from(_T).where(_T.c.public.is_(True), _T.c.status != "spam")
    if answered_only:
        q = q.where(_T.c.status == "answered")
    return int(conn.execute(q).scalar() or 0)


# --- statistics -------------------------------------------------------------------------------


def answer_deadline(created_at: datetime, tz: str) -> date:
    """The last local date on which an answer counts as on time: the 5th working day after the
    day the message came (自收到之日起 5 个工作日; the day of receipt does not count)."""
    return add_working_days(created_at, ANSWER_WORKING_DAYS, tz=tz).date()


def stats(conn: Connection, now: datetime, *, tz: str = "Asia/Shanghai") -> dict[str, Any]:
    """How many messages came in, how many were answered, and how fast.

    - received: every message not marked spam; closed: those that needed no answer.
    - answered_share: answered / (received - closed), None when nothing needed an answer.
    - median_hours, mean_hours: from message to answer, over answered messages.
    - on_time_share: of the messages whose answer is in or due (answered, or past their
      deadline of 5 working days), the share answered by the deadline; an unanswered message
      past its deadline counts as late.
    """
    rows = conn.execute(
        select(_T.c.status, _T.c.created_at, _T.c.answered_at).where(_T.c.status != "spam")
    ).all()
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    received = len(rows)
    closed = sum(1 for r in rows if r.status == "closed")
    hours: list[float] = []
    due = on_time = 0
    for r in rows:
        if r.status == "closed":
            continue
        deadline = answer_deadline(r.created_at, tz)
        if r.status == "answered" and r.answered_at is not None:
            hours.append((r.answered_at - r.created_at).total_seconds() / 3600)
            due += 1
            on_time += r.answered_at.astimezone(zone).date() <= deadline
        elif today > deadline:
            due += 1
    needing = received - closed
    return {
        "received": received,
        "answered": len(hours),
        "closed": closed,
        "pending": needing - len(hours),
        "answered_share": len(hours) / needing if needing else None,
        "median_hours": statistics.median(hours) if hours else None,
        "mean_hours": statistics.fmean(hours) if hours else None,
        "on_time_days": ANSWER_WORKING_DAYS,
        "on_time_share": on_time / due if due else None,
    }


# --- the office's side ------------------------------------------------------------------------


def get_message(conn: Connection, message_id: int) -> dict[str, Any]:
    """One message with everything the office sees (the contact included)."""
    return _office_view(_row(conn, message_id))


def _row(conn: Connection, message_id: int) -> Any:
    row = conn.execute(select(_T).where(_T.c.id == message_id)).first()
    if row is None:
        raise MessageNotFound(f"No board message {message_id}.")
    return row


def list_messages(
    conn: Connection, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Messages for the office, newest first, with contact details."""
    if status is not None and status not in STATUS:
        raise BoardError(f"Unknown status {status!r}: use one of {', '.join(STATUS)}.")
    q = select(_T).order_by(_T.c.created_at.desc(), _T.c.id.desc()).limit(limit).offset(offset)
    if status is not None:
        q = q.where(_T.c.status == status)
    return [_office_view(r) for r in conn.execute(q).all()]


def count_by_status(conn: Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATUS, 0)
    for status, n in conn.execute(select(_T.c.status, func.count()).group_by(_T.c.status)).all():
        counts[status] = int(n)
    return counts


def set_status(
    conn: Connection, message_id: int, status: str, actor: Any, reason: str = ""
) -> dict[str, Any]:
    """Mark a message spam or closed (no answer needed), or back to new; audited."""
    if status not in OFFICE_STATUSES:
        raise BoardError(
            f"Status {status!r} cannot be set by hand: use one of {', '.join(OFFICE_STATUSES)} "
            "(accepted and answered follow from the message's case)."
        )
    row = _row(conn, message_id)
    if row.status == "answered":
        raise BoardError(
            f"Board message {message_id} is answered and its answer is published: "
            "it can no longer be marked."
        )
    if status == "spam" and row.case_id is not None:
        # Its case's reply would be refused on the board; the case is where to stop it.
        raise BoardError(
            f"Board message {message_id} has case {row.case_id}: close the case instead of "
            "marking the message spam."
        )
    reason = (reason or "").strip()[:2000]
    conn.execute(update(BoardMessage).where(_T.c.id == message_id).values(status=status))
    record(
        conn,
        actor,
        "board.status",
        f"board:{message_id}",
        {"from": row.status, "to": status, "reason": reason},
    )
    return get_message(conn, message_id)


def mark_accepted(conn: Connection, message_id: int, case_id: int, actor: Any) -> None:
    """A case was opened from the message (受理); audited."""
    row = _row(conn, message_id)
    if row.status == "answered":
        raise BoardError(f"Board message {message_id} is already answered.")
    conn.execute(
        update(BoardMessage).where(_T.c.id == message_id).values(status="accepted", case_id=case_id)
    )
    record(
        conn,
        actor,
        "board.accept",
        f"board:{message_id}",
        {"from": row.status, "case_id": case_id},
    )


def publish_answer(
    conn: Connection,
    message_id: int,
    text: str,
    *,
    at: datetime,
    by: str,
    actor: Any = None,
) -> None:
    """Publish the approved reply under the message; audited.

    Publishing again replaces the text (a corrected reply) but keeps the first answer time:
    the board's speed figures measure when the asker first got an answer.
    """
    answer = _clean(text, multiline=True)
    by = _clean(by, multiline=False)
    problems = []
    if not answer:
        problems.append("The answer is empty: give the text of the approved reply.")
    elif len(answer) > ANSWER_MAX:
        problems.append(f"The answer is longer than {ANSWER_MAX} characters.")
    if not by:
        problems.append("Say who answers (the office's name, e.g. 某某县网信办).")
    if problems:
        raise BoardError(problems)
    row = _row(conn, message_id)
    if row.status == "spam":
        raise BoardError(
            f"Board message {message_id} is marked spam: set it back to new before answering."
        )
    replaced = row.status == "answered"
    answered_at = row.answered_at if replaced and row.answered_at else at
    conn.execute(
        update(BoardMessage)
        .where(_T.c.id == message_id)
        .values(status="answered", answer=answer, answered_at=answered_at, answered_by=by[:200])
    )
    record(
        conn,
        actor,
        "board.answer",
        f"board:{message_id}",
        {"by": by[:200], "case_id": row.case_id, "replaced": replaced, "chars": len(answer)},
        at=at,
    )


# --- anti-spam --------------------------------------------------------------------------------


class RateLimiter:
    """At most `per_hour` messages per client address in any sliding hour; kept in memory only
    (the addresses are never stored). `per_hour` below 1 means no limit."""

    WINDOW = timedelta(hours=1)

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._hits: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: datetime) -> deque[datetime]:
        hits = self._hits.get(addr)
        if hits is None:
            return deque()
        while hits and now - hits[0] >= self.WINDOW:
            hits.popleft()
        if not hits:
            del self._hits[addr]
        return hits

    def retry_after(self, addr: str, now: datetime) -> datetime | None:
        """When `addr` may post again, or None when it may post now (nothing is counted)."""
        if self.per_hour < 1:
            return None
        with self._lock:
            hits = self._recent(addr, now)
            if len(hits) < self.per_hour:
                return None
            return hits[len(hits) - self.per_hour] + self.WINDOW

    def allow(self, addr: str, now: datetime) -> bool:
        """Count one message from `addr` if it is within the limit; False if it is not."""
        if self.per_hour < 1:
            return True
        with self._lock:
            hits = self._recent(addr, now)
            if len(hits) >= self.per_hour:
                return False
            hits.append(now)
            self._hits[addr] = hits
            if len(self._hits) > 10_000:
                self._sweep(now)
            return True

    def _sweep(self, now: datetime) -> None:
        # Bounds memory under many addresses: drop those with no hit in the window.
        for addr in list(self._hits):
            self._recent(addr, now)


CHALLENGE_TTL = timedelta(minutes=30)
ChallengeResult = Literal["ok", "expired", "wrong", "reused", "invalid"]


@dataclass(frozen=True)
class Challenge:
    question: str
    token: str
    # The two numbers to add, for asking the question in the page's language.
    terms: tuple[int, int] = (0, 0)


class UsedTokens:
    """Digests of challenge tokens already presented, each kept until its token expires, so one
    solved challenge cannot post twice."""

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def consume(self, digest: str, until: datetime, now: datetime) -> bool:
        """True the first time `digest` is presented, False after."""
        with self._lock:
            for d in [d for d, t in self._until.items() if t <= now]:
                del self._until[d]
            if digest in self._until:
                return False
            self._until[digest] = until
            return True


_USED = UsedTokens()


def _mac(secret: bytes, message: str, size: int = 18) -> str:
    digest = hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()[:size]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _answer_mac(secret: bytes, nonce: str, answer: int) -> str:
    # Keyed, so the token does not give the answer away to whoever tries the 17 sums.
    return _mac(secret, f"board-answer.{nonce}.{answer}", 12)


def make_challenge(secret: bytes, now: datetime) -> Challenge:
    """A small sum to solve, and a signed token carrying its answer's keyed hash and the time."""
    a, b = 1 + secrets.randbelow(9), 1 + secrets.randbelow(9)
    issued = int(now.timestamp())
    nonce = secrets.token_urlsafe(9)
    payload = f"{issued}.{nonce}.{_answer_mac(secret, nonce, a + b)}"
    return Challenge(
        f"{a} 加 {b} 等于几？", f"{payload}.{_mac(secret, 'board-challenge.' + payload)}", (a, b)
    )


# People type the sum in Chinese numerals too (零 to 十八).
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_NUMBERS = (
    {d: n for n, d in enumerate(_ZH_DIGITS)}
    | {"十": 10}
    | {"十" + d: 10 + n for n, d in enumerate(_ZH_DIGITS) if 1 <= n <= 8}
)


def _parse_answer(answer: str) -> int | None:
    text = unicodedata.normalize("NFKC", answer or "").strip()
    if text.isascii() and text.isdecimal() and len(text) <= 3:
        return int(text)
    return _ZH_NUMBERS.get(text)


def check_challenge(
    secret: bytes, token: str, answer: str, now: datetime, *, used: UsedTokens | None = None
) -> ChallengeResult:
    """ok, expired (after 30 minutes), wrong, reused, or invalid (not a token of ours).

    A token is spent when presented, right or wrong: otherwise one token would allow trying
    every answer.
    """
    try:
        issued_s, nonce, answer_mac, mac = (token or "").split(".")
        issued = datetime.fromtimestamp(int(issued_s), UTC)
    except (ValueError, OverflowError, OSError):
        return "invalid"
    expected = _mac(secret, f"board-challenge.{issued_s}.{nonce}.{answer_mac}")
    # Bytes: compare_digest refuses str with non-ASCII characters, and the token is the user's.
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return "invalid"
    if now - issued > CHALLENGE_TTL:
        return "expired"
    if issued - now > timedelta(minutes=1):
        return "invalid"
    if not (_USED if used is None else used).consume(
        token_hash(token), issued + CHALLENGE_TTL, now
    ):
        return "reused"
    given = _parse_answer(answer)
    if given is None or not hmac.compare_digest(
        answer_mac.encode(), _answer_mac(secret, nonce, given).encode()
    ):
        return "wrong"
    return "ok"
