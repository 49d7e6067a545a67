"""Signing in: passwords with lock-out, browser sessions, personal API tokens.

Sessions and tokens are random; only their SHA-256 is stored, so a copy of the database does
not let anyone sign in. A session ends after `session_idle_minutes` without use or
`session_max_hours` after sign-in, at sign-out, and when the password changes. After
`login_max_failures` wrong passwords in a row the account is locked for
`login_lock_minutes`; the message does not say whether the user name exists.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tingfeng import audit
from tingfeng.db.models import ApiToken, User, WebSession
from tingfeng.office.people import MIN_PASSWORD, OfficeError, Person, get_user
from tingfeng.settings import Settings

TOKEN_PREFIX = "tf_"


class SignInError(OfficeError):
    """Sign-in refused; the message is safe to show (it never tells which part was wrong)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    token: str  # for the cookie; not stored
    csrf_token: str
    person: Person
    expires_at: datetime


@dataclass(frozen=True)
class PasswordCheck:
    """A password checked against the stored hash before the sign-in's write transaction.

    argon2 takes a deliberate fraction of a second of CPU: done inside the transaction, it held
    SQLite's write lock, so that fifty people signing in at once queued behind each other's
    hashing (and ingest behind them) past the busy timeout."""

    password_hash: str | None
    ok: bool


# At most this many argon2 checks at once in a process: each already uses several cores, and
# fifty at once (a shift signing in) only thrash the memory they each need; queued here, the
# first are done sooner and the rest no later.
_HASHING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def check_password_first(conn: Connection, username: str, password: str) -> PasswordCheck:
    """Read-only: verify `password` for `sign_in(..., check=)` (the same time for a user name
    that does not exist)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = PasswordHasher()
    row = conn.execute(
        select(User.password_hash, User.active).where(User.username == (username or "").strip())
    ).first()
    with _HASHING:
        if row is None or not row.active or not row.password_hash:
            hasher.hash(password or "x")
            return PasswordCheck(None, False)
        try:
            hasher.verify(row.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return PasswordCheck(row.password_hash, False)
    return PasswordCheck(row.password_hash, True)


def sign_in(
    conn: Connection,
    settings: Settings,
    username: str,
    password: str,
    now: datetime,
    *,
    check: PasswordCheck | None = None,
) -> Session:
    """Check the password and open a session; SignInError otherwise (and count the failure).

    `check`: the password already verified by `check_password_first` outside this transaction;
    it stands only while the stored hash is still the one it was checked against."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = PasswordHasher()
    row = conn.execute(
        select(User.__table__).where(User.username == (username or "").strip())
    ).first()
    refused = SignInError("用户名或密码不正确 (wrong user name or password).")
    if row is None or not row.active or not row.password_hash:
        if check is None:
            hasher.hash(password or "x")  # the same time as a real check
        raise refused
    if row.locked_until is not None and row.locked_until > now:
        minutes = max(1, int((row.locked_until - now).total_seconds() // 60) + 1)
        raise SignInError(
            f"密码错误次数过多，账号已锁定，请 {minutes} 分钟后再试或联系管理员 "
            f"(locked after too many wrong passwords; try again in {minutes} minutes)."
        )
    if check is not None and check.password_hash == row.password_hash:
        ok = check.ok
    else:
        try:
            ok = hasher.verify(row.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok:
        failures = (row.failed_logins or 0) + 1
        values: dict[str, Any] = {"failed_logins": failures}
        if failures >= settings.login_max_failures:
            values.update(
                locked_until=now + timedelta(minutes=settings.login_lock_minutes),
                failed_logins=0,
            )
            audit.record(conn, None, "user.locked", f"user:{row.id}",
                         {"username": row.username, "minutes": settings.login_lock_minutes},
                         at=now)  # fmt: skip
        conn.execute(update(User).where(User.id == row.id).values(**values))
        raise refused
    conn.execute(update(User).where(User.id == row.id).values(failed_logins=0, locked_until=None))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=settings.session_idle_minutes)
    conn.execute(
        insert(WebSession).values(
            id=_digest(token), user_id=row.id, csrf_token=csrf, created_at=now,
            last_seen_at=now, expires_at=expires,
        )
    )  # fmt: skip
    person = get_user(conn, row.id)
    audit.record(conn, person, "user.sign_in", f"user:{row.id}", {}, at=now)
    return Session(token, csrf, person, expires)


@dataclass(frozen=True)
class LiveSession:
    person: Person
    csrf_token: str
    # Set when the idle expiry should slide forward (at most once a minute, so reading pages
    # is not a write on every request); the caller writes it in a transaction of its own.
    touch: dict[str, Any] | None


def session_user(
    conn: Connection, settings: Settings, token: str, now: datetime
) -> LiveSession | None:
    """The person and CSRF token of a live session; None if there is none (read only)."""
    if not token:
        return None
    row = conn.execute(select(WebSession.__table__).where(WebSession.id == _digest(token))).first()
    if row is None:
        return None
    hard_end = row.created_at + timedelta(hours=settings.session_max_hours)
    if row.expires_at <= now or hard_end <= now:
        return None
    person = get_user(conn, row.user_id)
    if not person.active:
        return None
    touch = None
    if now - row.last_seen_at > timedelta(minutes=1):
        touch = {
            "id": row.id,
            "last_seen_at": now,
            "expires_at": min(now + timedelta(minutes=settings.session_idle_minutes), hard_end),
        }
    return LiveSession(person, row.csrf_token, touch)


def touch_session(conn: Connection, touch: dict[str, Any], now: datetime) -> None:
    """Slide a session's idle expiry; also drop sessions that ended long ago."""
    conn.execute(
        update(WebSession)
        .where(WebSession.id == touch["id"])
        .values(last_seen_at=touch["last_seen_at"], expires_at=touch["expires_at"])
    )
    conn.execute(delete(WebSession).where(WebSession.expires_at < now - timedelta(days=1)))


def sign_out(conn: Connection, token: str) -> None:
    conn.execute(delete(WebSession).where(WebSession.id == _digest(token or "")))


def change_password(conn: Connection, person: Person, old: str, new: str, now: datetime) -> None:
    """Check the old password, set the new one, end every session of the person."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    from tingfeng.office.people import set_password

    row = conn.execute(select(User.password_hash).where(User.id == person.id)).scalar()
    try:
        PasswordHasher().verify(row or "", old or "")
    except (VerificationError, InvalidHashError):
        raise SignInError("原密码不正确 (the current password is wrong).") from None
    if new == old:
        raise SignInError("新密码不能与原密码相同 (choose a different password).")
    if len(new or "") < MIN_PASSWORD:
        raise SignInError(f"新密码至少 {MIN_PASSWORD} 位 (at least {MIN_PASSWORD} characters).")
    set_password(conn, person.id, new)
    conn.execute(update(User).where(User.id == person.id).values(password_changed_at=now))
    conn.execute(delete(WebSession).where(WebSession.user_id == person.id))
    audit.record(conn, person, "user.password", f"user:{person.id}", {}, at=now)


def issue_api_token(
    conn: Connection, person: Person, name: str, now: datetime, *, days: int | None = None
) -> str:
    """A new personal API token (shown once) with the person's role and department."""
    name = (name or "").strip()
    if not name:
        raise OfficeError("Name the token after what uses it, e.g. 日报脚本.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(ApiToken).values(
            user_id=person.id, name=name, token_hash=_digest(token), created_at=now,
            expires_at=now + timedelta(days=days) if days else None, revoked=False,
        )
    )  # fmt: skip
    audit.record(conn, person, "user.api_token", f"user:{person.id}", {"name": name}, at=now)
    return token


def token_stale(conn: Connection, token: str, now: datetime) -> bool:
    """Whether the token's last use is worth recording again (every five minutes at most)."""
    last = conn.execute(
        select(ApiToken.last_used_at).where(ApiToken.token_hash == _digest(token))
    ).scalar()
    return last is None or now - last > timedelta(minutes=5)


def record_token_use(conn: Connection, token: str, now: datetime) -> None:
    conn.execute(
        update(ApiToken).where(ApiToken.token_hash == _digest(token)).values(last_used_at=now)
    )


def token_user(conn: Connection, token: str, now: datetime) -> Person | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute(
        select(ApiToken.__table__).where(ApiToken.token_hash == _digest(token))
    ).first()
    if row is None or row.revoked or (row.expires_at is not None and row.expires_at <= now):
        return None
    person = get_user(conn, row.user_id)
    return person if person.active else None


def revoke_api_token(conn: Connection, person: Person, token_id: int) -> None:
    n = conn.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.user_id == person.id)
        .values(revoked=True)
    ).rowcount
    if not n:
        raise OfficeError(f"No API token {token_id} of {person.username}.")
    audit.record(conn, person, "user.api_token_revoke", f"user:{person.id}", {"id": token_id})


def now_utc() -> datetime:
    return datetime.now(UTC)
