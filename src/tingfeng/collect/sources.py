"""Managing sources: add, find, list, remove, push tokens. Configuration is validated here."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import Connection, delete, select

from tingfeng.collect.connectors.base import get_connector
from tingfeng.collect.errors import ConfigError
from tingfeng.db.models import Post, Source

_HASHER = PasswordHasher()


class SourceNotFound(LookupError):
    def __init__(self, ref: str | int) -> None:
        super().__init__(f"No source {ref!r}: see `tingfeng source list` for the names and ids.")


def parse_interval(value: str | int) -> int:
    """Seconds from '90', '90s', '15m', '2h', '1d'."""
    if isinstance(value, int):
        seconds = value
    else:
        raw = value.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            seconds = (
                int(float(raw[:-1]) * units[raw[-1]]) if raw and raw[-1] in units else int(raw)
            )
        except ValueError as exc:
            raise ConfigError(
                f"Cannot read the interval {value!r}: write e.g. 90s, 15m, 2h or 1d."
            ) from exc
    if seconds < 1:
        raise ConfigError(f"The interval must be at least one second, not {value!r}.")
    return seconds


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"Unknown time zone {name!r}: use an IANA name such as Asia/Shanghai."
        ) from exc
    return name


def add_source(
    conn: Connection,
    *,
    name: str,
    kind: str,
    config: dict[str, Any],
    interval_s: int = 900,
    hot_interval_s: int = 60,
    timezone: str = "Asia/Shanghai",
    region: str | None = None,
    enabled: bool = True,
) -> Source:
    """Validate and store a new source; the first fetch is due at once."""
    name = name.strip()
    if not name:
        raise ConfigError("A source needs a name.")
    connector = get_connector(kind, config)  # raises ConfigError with the problems
    if conn.execute(select(Source.id).where(Source.name == name)).first():
        raise ConfigError(f"A source named {name!r} already exists: choose another name.")
    source = Source(
        name=name,
        kind=kind,
        config=connector.config.model_dump(mode="json", exclude_unset=True),
        enabled=enabled,
        interval_s=interval_s,
        hot_interval_s=hot_interval_s,
        timezone=check_timezone(timezone),
        region=region,
        state={},
        created_at=datetime.now(UTC),
        next_fetch_at=datetime.now(UTC),
        consecutive_failures=0,
        items_total=0,
    )
    from sqlalchemy.orm import Session

    with Session(bind=conn) as session:
        session.add(source)
        session.flush()
        session.expunge(source)
    from tingfeng import audit

    audit.record(conn, None, "settings.source_add", f"source:{source.id}",
                 {"name": source.name, "kind": source.kind})  # fmt: skip
    return source


def find_source(conn: Connection, ref: str | int) -> Source:
    from sqlalchemy.orm import Session

    with Session(bind=conn) as session:
        query = select(Source)
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            source = session.get(Source, int(ref))
        else:
            source = session.execute(query.where(Source.name == ref)).scalar_one_or_none()
        if source is None:
            raise SourceNotFound(ref)
        session.expunge(source)
        return source


def list_sources(conn: Connection) -> list[Source]:
    from sqlalchemy.orm import Session

    with Session(bind=conn) as session:
        sources = list(session.execute(select(Source).order_by(Source.id)).scalars())
        for s in sources:
            session.expunge(s)
        return sources


def remove_source(conn: Connection, ref: str | int, *, keep_posts: bool = True) -> Source:
    """Delete a source; its posts stay unless `keep_posts` is False."""
    source = find_source(conn, ref)
    if (
        keep_posts
        and conn.execute(select(Post.id).where(Post.source_id == source.id).limit(1)).first()
    ):
        # Posts keep their source (foreign key): a source with posts is disabled, not deleted.
        conn.execute(Source.__table__.update().where(Source.id == source.id).values(enabled=False))
        source.enabled = False
        return source
    conn.execute(delete(Source).where(Source.id == source.id))
    from tingfeng import audit

    audit.record(conn, None, "settings.source_remove", f"source:{source.id}", {"name": source.name})
    return source


def issue_push_token(conn: Connection, source_id: int) -> str:
    """A new push token for the source (shown once; only its argon2 hash is stored)."""
    token = f"tfp_{source_id}_{secrets.token_urlsafe(24)}"
    conn.execute(
        Source.__table__.update()
        .where(Source.id == source_id)
        .values(push_token_hash=_HASHER.hash(token))
    )
    return token


# Tokens already verified against a stored hash: argon2 takes ~0.2 s by design, which a
# platform pushing many times a second must not pay on every request. Keyed by the stored hash
# too, so issuing a new token (a new hash) leaves the old one unverified.
_VERIFIED: dict[tuple[str, str], None] = {}
_VERIFIED_MAX = 1024


def verify_push_token(source: Source, token: str) -> bool:
    if not source.push_token_hash or not token:
        return False
    key = (source.push_token_hash, hashlib.sha256(token.encode()).hexdigest())
    if key in _VERIFIED:
        return True
    try:
        ok = _HASHER.verify(source.push_token_hash, token)
    except (VerifyMismatchError, InvalidHashError):
        return False
    if ok:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = None
    return ok
