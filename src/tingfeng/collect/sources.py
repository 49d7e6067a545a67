"""Managing sources: add, find, list, remove, push tokens. Configuration is validated here."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
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


# The configuration field that a source's main address goes to, by kind (`--url` on the
# command line, the address box of the web form).
MAIN_FIELD = {
    "board": "list_url",
    "site_search": "url_template",
    "json_api": "url_template",
    "import": "path",
    "replay": "path",
}


def config_with_url(kind: str, config: dict[str, Any], url: str | None) -> dict[str, Any]:
    """`config` with the main address put in the field the kind expects.

    A json_api source built on a preset already has its URL template: the address given is the
    instance (`base_url`, e.g. a Mastodon server) instead.
    """
    out = dict(config)
    if url and url.strip():
        key = MAIN_FIELD.get(kind, "url")
        if kind == "json_api" and out.get("preset"):
            key = "base_url"
        out[key] = url.strip()
    return out


def update_source(
    conn: Connection,
    ref: str | int,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    interval_s: int | None = None,
    hot_interval_s: int | None = None,
    timezone: str | None = None,
    region: str | None = None,
    enabled: bool | None = None,
) -> Source:
    """Change a source's settings; what is left None stays as it is (`region=""` clears it).

    A new configuration is checked like a new source's. Enabling a source makes it due at once.
    """
    source = find_source(conn, ref)
    values: dict[str, Any] = {}
    if name is not None and name.strip() != source.name:
        name = name.strip()
        if not name:
            raise ConfigError("A source needs a name.")
        if conn.execute(
            select(Source.id).where(Source.name == name, Source.id != source.id)
        ).first():
            raise ConfigError(f"A source named {name!r} already exists: choose another name.")
        values["name"] = name
    if config is not None:
        connector = get_connector(source.kind, config)
        values["config"] = connector.config.model_dump(mode="json", exclude_unset=True)
    for key, seconds in (("interval_s", interval_s), ("hot_interval_s", hot_interval_s)):
        if seconds is not None:
            if seconds < 1:
                raise ConfigError("An interval must be at least one second.")
            values[key] = seconds
    if timezone is not None:
        values["timezone"] = check_timezone(timezone.strip())
    if region is not None:
        values["region"] = region.strip() or None
    if enabled is not None and enabled != source.enabled:
        values["enabled"] = enabled
        if enabled:
            values["next_fetch_at"] = datetime.now(UTC)
    if not values:
        return source
    conn.execute(Source.__table__.update().where(Source.id == source.id).values(**values))
    from tingfeng import audit

    # The configuration may hold access tokens (headers): the log says it changed, not to what.
    detail = {k: v for k, v in values.items() if k not in ("config", "next_fetch_at")}
    if "config" in values:
        detail["config"] = "changed"
    audit.record(conn, None, "settings.source_update", f"source:{source.id}", detail)
    return find_source(conn, source.id)


def set_hot_mode(
    conn: Connection, ref: str | int, minutes: int, *, now: datetime | None = None
) -> Source:
    """Poll at the hot interval for `minutes` from now (an event is active); 0 ends hot mode.

    The source is made due at once, so the faster pace starts now rather than after the
    current (slow) interval.
    """
    if minutes < 0:
        raise ConfigError("Hot mode lasts a number of minutes, 0 or more (0 ends it).")
    source = find_source(conn, ref)
    now = now or datetime.now(UTC)
    until = now + timedelta(minutes=minutes) if minutes > 0 else None
    conn.execute(
        Source.__table__.update()
        .where(Source.id == source.id)
        .values(hot_until=until, next_fetch_at=now)
    )
    from tingfeng import audit

    audit.record(conn, None, "settings.source_hot", f"source:{source.id}",
                 {"minutes": minutes, "until": until.isoformat() if until else None})  # fmt: skip
    source.hot_until = until
    source.next_fetch_at = now
    return source
