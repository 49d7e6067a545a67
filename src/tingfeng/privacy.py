"""Retention (expiring old posts) and pseudonymisation of authors' bylines.

The product watches what is said, never who says it: a post's author is only its public byline,
and the office may keep posts only as long as it needs them. Two measures, set by an
administrator on the administration page (stored as the `privacy_policy` row of the
`detector_state` key-value table, so no schema change was needed):

- **Retention.** Posts older than N days are deleted with everything derived from them
  (readings, labels, topic matches, event membership, the full-text index), per source or for
  all sources. A post is "older than N days" when it was both published and collected more
  than N days ago, so an archive imported today is kept N days from today.
- **Pseudonymisation.** `posts.author` is replaced by a keyed pseudonym, ``作者-`` and 12 hex
  digits of HMAC-SHA256 over the byline with a key derived from the installation's secret key.
  The same byline always gives the same pseudonym, so grouping by author still works, but the
  name cannot be recovered without the key (and a dictionary attack needs the key too).

Posts the office keeps for its cases are exempt from both: the post a case was opened from,
posts captured as evidence, posts a reply answers, and the posts of an event that a case still
in hand (or under its relapse watch) refers to.

Work is done in batches, each in its own short transaction, so the ingest is never blocked for
long. `apply` runs a whole pass (the page's "apply now", `tingfeng privacy apply`); `tick` does
one batch of a daily pass each time the alert clock calls it. Every pass is recorded in the
audit log with its counts.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    union,
    update,
)

from tingfeng import audit
from tingfeng.db.models import Case, DetectorState, Event, EventPost, Evidence, Post, Reply
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings

PSEUDONYM_PREFIX = "作者-"
_DIGITS = 12  # 48 bits: two of a million distinct bylines share a pseudonym with p ≈ 0.2 %
# SQL LIKE for "already a pseudonym": the prefix and exactly _DIGITS more characters.
_PSEUDONYM_LIKE = PSEUDONYM_PREFIX + "_" * _DIGITS
POLICY_KEY = "privacy_policy"
RUN_KEY = "privacy_run"
BATCH = 2000
DAILY = timedelta(hours=24)
MAX_DAYS = 36_500


class PrivacyError(ProblemsError):
    """A retention or pseudonymisation policy that cannot be saved; the problems say why."""

    what = "privacy policy"


class Policy(BaseModel):
    """What is deleted and pseudonymised, and whether the clock does it daily."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: posts are kept for ever.
    retention_days: int | None = Field(None, ge=1, le=MAX_DAYS)
    # Per source id: days for that source instead of retention_days; 0 keeps it for ever.
    source_retention_days: dict[int, int] = Field(default_factory=dict)
    # None: bylines are kept; 0: every post's byline is pseudonymised.
    pseudonymize_after_days: int | None = Field(None, ge=0, le=MAX_DAYS)
    daily: bool = True

    @classmethod
    def of(cls, data: Any) -> Policy:
        try:
            policy = cls.model_validate(data or {})
        except ValidationError as exc:
            raise PrivacyError(
                [f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors()]
            ) from None
        bad = [f"source {s}: {d}" for s, d in policy.source_retention_days.items()
               if not 0 <= d <= MAX_DAYS]  # fmt: skip
        if bad:
            raise PrivacyError([f"days must be 0 (keep) to {MAX_DAYS}: {b}" for b in bad])
        return policy

    @property
    def deletes(self) -> bool:
        return bool(self.retention_days) or any(self.source_retention_days.values())

    @property
    def pseudonymizes(self) -> bool:
        return self.pseudonymize_after_days is not None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Preview:
    """What a pass would do now: posts to delete, bylines to pseudonymise, posts kept for cases."""

    delete: int
    pseudonymize: int
    kept_for_cases: int

    def as_dict(self) -> dict[str, int]:
        return {
            "delete": self.delete,
            "pseudonymize": self.pseudonymize,
            "kept_for_cases": self.kept_for_cases,
        }


@dataclass
class RunResult:
    deleted: int = 0
    pseudonymized: int = 0
    finished: bool = True
    policy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "pseudonymized": self.pseudonymized}


# --- pseudonyms ------------------------------------------------------------------------------


def pseudonym_key(secret: bytes) -> bytes:
    """A key of its own for pseudonyms, so the secret that signs links is not used directly."""
    return hmac.new(secret, b"tingfeng:author-pseudonym:v1", hashlib.sha256).digest()


def pseudonym(byline: str, key: bytes) -> str:
    """The stable pseudonym of a byline (spelling variants in width and spaces agree)."""
    text = unicodedata.normalize("NFKC", byline).strip()
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:_DIGITS]


def is_pseudonym(byline: str | None) -> bool:
    if not byline or not byline.startswith(PSEUDONYM_PREFIX):
        return False
    rest = byline[len(PSEUDONYM_PREFIX) :]
    return len(rest) == _DIGITS and all(c in "0123456789abcdef" for c in rest)


def key_of(settings: Settings) -> bytes:
    from tingfeng.secret import secret_key

    return pseudonym_key(secret_key(settings))


def byline_for(settings: Settings) -> Callable[[str], str] | None:
    """For the ingest: the function that pseudonymises new posts' bylines, when configured."""
    if not settings.pseudonymize_authors_at_ingest:
        return None
    key = key_of(settings)
    return lambda byline: byline if is_pseudonym(byline) else pseudonym(byline, key)


# --- the policy ------------------------------------------------------------------------------


def _get(conn: Connection, name: str) -> dict[str, Any] | None:
    return conn.execute(select(DetectorState.state).where(DetectorState.name == name)).scalar()


def _put(conn: Connection, name: str, state: dict[str, Any], now: datetime) -> None:
    done = conn.execute(
        update(DetectorState).where(DetectorState.name == name).values(state=state, updated_at=now)
    ).rowcount
    if not done:
        conn.execute(insert(DetectorState).values(name=name, state=state, updated_at=now))


def load_policy(conn: Connection) -> Policy:
    """The policy in force (nothing deleted, nothing pseudonymised until an admin sets one)."""
    stored = _get(conn, POLICY_KEY)
    try:
        return Policy.of(stored)
    except PrivacyError:
        return Policy()  # a hand-edited row must not stop the clock; the page shows defaults


def save_policy(conn: Connection, actor: Any, policy: Policy | dict[str, Any]) -> Policy:
    policy = policy if isinstance(policy, Policy) else Policy.of(policy)
    _put(conn, POLICY_KEY, policy.as_dict(), datetime.now(UTC))
    audit.record(conn, actor, "settings.privacy", "privacy", policy.as_dict())
    return policy


def last_run(conn: Connection) -> dict[str, Any] | None:
    """The latest pass: trigger, started_at, finished_at, deleted, pseudonymized, state."""
    return _get(conn, RUN_KEY)


# --- which posts -----------------------------------------------------------------------------


def kept_for_cases(now: datetime) -> Any:
    """Ids of the posts the office keeps for its cases (see the module doc)."""
    from tingfeng.cases.states import OPEN_STATES

    in_hand = select(Case.event_id).where(
        Case.event_id.is_not(None),
        or_(Case.state.in_(sorted(OPEN_STATES)), Case.watch_until > now),
    )
    # A case's event may since have been merged into another: keep the one it lives on in too.
    events = union(in_hand, select(Event.merged_into).where(Event.id.in_(in_hand)))
    return union(
        select(Case.post_id).where(Case.post_id.is_not(None)),
        select(Evidence.post_id).where(Evidence.post_id.is_not(None)),
        select(Reply.in_reply_to_post_id).where(Reply.in_reply_to_post_id.is_not(None)),
        select(EventPost.post_id).where(EventPost.event_id.in_(select(events.subquery().c[0]))),
    )


def _older(days: int, now: datetime) -> ColumnElement[bool]:
    cutoff = now - timedelta(days=days)
    # Published and collected before the cutoff; published_at is indexed, so it leads.
    return and_(Post.published_at < cutoff, Post.fetched_at < cutoff)


def expired(policy: Policy, now: datetime) -> ColumnElement[bool]:
    """The posts the retention policy expires now (before exempting case posts)."""
    parts = []
    overridden = list(policy.source_retention_days)
    for source_id, days in policy.source_retention_days.items():
        if days:
            parts.append(and_(Post.source_id == source_id, _older(days, now)))
    if policy.retention_days:
        rest = _older(policy.retention_days, now)
        parts.append(and_(Post.source_id.not_in(overridden), rest) if overridden else rest)
    return or_(*parts) if parts else false()


def to_pseudonymize(policy: Policy, now: datetime) -> ColumnElement[bool]:
    """Posts whose byline the policy pseudonymises now (before exempting case posts)."""
    if policy.pseudonymize_after_days is None:
        return false()
    named = and_(
        Post.author.is_not(None), Post.author != "", not_(Post.author.like(_PSEUDONYM_LIKE))
    )
    if policy.pseudonymize_after_days == 0:
        return named
    return and_(named, _older(policy.pseudonymize_after_days, now))


def preview(conn: Connection, policy: Policy, now: datetime) -> Preview:
    """What a pass with `policy` would do now (a dry run: nothing changes)."""
    kept = kept_for_cases(now)

    def count(*where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(Post).where(*where)).scalar_one())

    gone = expired(policy, now)
    return Preview(
        delete=count(gone, Post.id.not_in(kept)) if policy.deletes else 0,
        pseudonymize=(
            count(to_pseudonymize(policy, now), Post.id.not_in(kept))
            if policy.pseudonymizes else 0
        ),
        kept_for_cases=count(gone, Post.id.in_(kept)) if policy.deletes else 0,
    )  # fmt: skip


# --- doing it --------------------------------------------------------------------------------


def delete_batch(conn: Connection, policy: Policy, now: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` expired posts (oldest first) with everything derived from them."""
    from tingfeng.retention import delete_posts

    if not policy.deletes:
        return 0
    ids = list(
        conn.execute(
            select(Post.id)
            .where(expired(policy, now), Post.id.not_in(kept_for_cases(now)))
            .order_by(Post.published_at)
            .limit(limit)
        ).scalars()
    )
    return delete_posts(conn, ids) if ids else 0


def pseudonymize_batch(
    conn: Connection, policy: Policy, now: datetime, key: bytes, limit: int = BATCH
) -> int:
    """Replace up to `limit` bylines by their pseudonyms; event profiles are rewritten too."""
    if not policy.pseudonymizes:
        return 0
    rows = conn.execute(
        select(Post.id, Post.author)
        .where(to_pseudonymize(policy, now), Post.id.not_in(kept_for_cases(now)))
        .limit(limit)
    ).all()
    if not rows:
        return 0
    names: dict[str, str] = {}
    params = []
    for post_id, author in rows:
        if author not in names:
            names[author] = pseudonym(author, key)
        params.append({"pid": post_id, "alias": names[author]})
    conn.execute(
        update(Post.__table__)
        .where(Post.__table__.c.id == bindparam("pid"))
        .values(author=bindparam("alias")),
        params,
    )
    _rewrite_profiles(conn, [r[0] for r in rows], key)
    return len(rows)


def _rewrite_profiles(conn: Connection, post_ids: list[int], key: bytes) -> None:
    """Event profiles name the authors of amplifying reposts: give them the pseudonyms too."""
    event_ids = set(
        conn.execute(
            select(EventPost.event_id).where(EventPost.post_id.in_(post_ids)).distinct()
        ).scalars()
    )
    for event_id in sorted(event_ids):
        profile = conn.execute(select(Event.profile).where(Event.id == event_id)).scalar()
        spread = (profile or {}).get("spread") or {}
        amplifiers = spread.get("amplifiers") or []
        changed = False
        for amplifier in amplifiers:
            author = amplifier.get("author")
            if author and not is_pseudonym(author):
                amplifier["author"] = pseudonym(author, key)
                changed = True
        if changed:
            conn.execute(update(Event).where(Event.id == event_id).values(profile=profile))


def apply(
    engine: Engine,
    settings: Settings,
    *,
    actor: Any = None,
    trigger: str = "manual",
    policy: Policy | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    batch: int = BATCH,
) -> RunResult:
    """A whole pass, in batches of their own transactions; recorded in the audit log."""
    from tingfeng.db.engine import write_transaction

    started = now()
    if policy is None:
        with engine.connect() as conn:
            policy = load_policy(conn)
    key = key_of(settings)
    result = RunResult(policy=policy.as_dict())
    while True:
        with write_transaction(engine) as conn:
            deleted = delete_batch(conn, policy, now(), batch)
        result.deleted += deleted
        if deleted < batch:
            break
    while True:
        with write_transaction(engine) as conn:
            done = pseudonymize_batch(conn, policy, now(), key, batch)
        result.pseudonymized += done
        if done < batch:
            break
    with write_transaction(engine) as conn:
        _finish(conn, actor, trigger, started, now(), result)
    return result


def _finish(
    conn: Connection,
    actor: Any,
    trigger: str,
    started: datetime,
    finished: datetime,
    result: RunResult,
) -> None:
    run = {
        "state": "done",
        "trigger": trigger,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "deleted": result.deleted,
        "pseudonymized": result.pseudonymized,
    }
    _put(conn, RUN_KEY, run, finished)
    audit.record(conn, actor, "privacy.apply", "privacy",
                 {**result.as_dict(), "trigger": trigger, "policy": result.policy},
                 at=finished)  # fmt: skip


def tick(conn: Connection, settings: Settings, now: datetime, batch: int = BATCH) -> RunResult:
    """One step of the daily pass, for the alert clock (at most one batch of each kind).

    A pass starts 24 hours after the previous one started and continues, a batch per tick,
    until a batch comes back short; then it is recorded in the audit log as one pass.
    """
    policy = load_policy(conn)
    if not policy.daily or not (policy.deletes or policy.pseudonymizes):
        return RunResult(finished=False)
    run = _get(conn, RUN_KEY) or {}
    if run.get("state") != "running":
        last = run.get("started_at")
        if last and now - datetime.fromisoformat(last) < DAILY:
            return RunResult(finished=False)
        run = {"state": "running", "trigger": "daily", "started_at": now.isoformat(),
               "deleted": 0, "pseudonymized": 0}  # fmt: skip
    deleted = delete_batch(conn, policy, now, batch)
    done = pseudonymize_batch(conn, policy, now, key_of(settings), batch)
    run["deleted"] += deleted
    run["pseudonymized"] += done
    if deleted < batch and done < batch:
        result = RunResult(run["deleted"], run["pseudonymized"], True, policy.as_dict())
        _finish(conn, audit.SYSTEM, "daily", datetime.fromisoformat(run["started_at"]), now,
                result)  # fmt: skip
        return result
    _put(conn, RUN_KEY, run, now)
    return RunResult(run["deleted"], run["pseudonymized"], False, policy.as_dict())
