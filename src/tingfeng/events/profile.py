"""An event's profile: what it is about, where it started, how it spread, how hot, what level.

Computed from the event's stored posts and their readings, and cached on the event row
(`events.profile`); `refresh_event` recomputes it and re-grades the event. Counts (timeline,
sentiment mix, sources, tiers, categories) cover every post; text work (title, summary,
keywords, places, opinion groups) reads a sample of at most `SAMPLE` posts, originals first.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, insert, select, text, update

from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Event, EventGrade, Source, as_utc, utc_now
from tingfeng.events.grading import (
    EventFacts,
    GradeState,
    GradingModel,
    find_consequences,
    grade,
)
from tingfeng.events.heat import HeatInputs, MediaTier, heat_index
from tingfeng.events.spread import SpreadNode, spread_path

log = logging.getLogger(__name__)

# Told when an event's level changes: (conn, event_id, old level or None, new level).
LevelListener = Callable[[Connection, int, "str | None", str], None]

SAMPLE = 2000
MAX_SPREAD_NODES = 200_000
_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]?")
_LINK = re.compile(r"https?://|www\.", re.I)
_DIGIT = re.compile(r"\d")
_SOCIAL_KINDS = frozenset({"replay", "json_api", "push"})


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _json_list(value: Any) -> list[Any]:
    import json

    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _json_dict(value: Any) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def source_tiers(conn: Connection, source_ids: Sequence[int]) -> dict[int, MediaTier]:
    """Media tier per source: as configured, else `individual` for social platforms' posts."""
    out: dict[int, MediaTier] = {}
    if not source_ids:
        return out
    for sid, tier, kind in conn.execute(
        select(Source.id, Source.tier, Source.kind).where(Source.id.in_(list(source_ids)))
    ):
        if tier in MediaTier.__members__:
            out[sid] = MediaTier(tier)
        else:
            # Unconfigured: social-platform streams are individual accounts' posts; a feed or a
            # board could be anyone until an administrator says (`tingfeng source tier`).
            out[sid] = MediaTier.individual if kind in _SOCIAL_KINDS else MediaTier.other
    return out


def _sample(conn: Connection, event_id: int) -> list[Any]:
    """Up to SAMPLE posts of the event: originals (not reposts, not duplicates) first, oldest
    first, then the rest newest first."""
    sql = text(
        """
        SELECT p.id, p.title, p.title_norm, p.text_clean, p.text_norm, p.published_at,
               p.reposts_of_id, p.dup_kind, p.url, r.polarity, r.keywords, r.regions, r.entities
        FROM event_posts ep JOIN posts p ON p.id = ep.post_id
        LEFT JOIN readings r ON r.post_id = p.id
        WHERE ep.event_id = :e
        ORDER BY CASE WHEN p.reposts_of_id IS NULL AND p.dup_kind = 'original' THEN 0 ELSE 1 END,
                 CASE WHEN p.reposts_of_id IS NULL AND p.dup_kind = 'original' THEN p.id
                      ELSE -p.id END
        LIMIT :n
        """
    )
    return list(conn.execute(sql, {"e": event_id, "n": SAMPLE}))


def _centrality(texts: Sequence[str]) -> np.ndarray:
    """Cosine of each text to the group's centroid (character 2-grams, TF-IDF)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(t.strip() for t in texts):
        return np.zeros(len(texts))
    vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), min_df=1, sublinear_tf=True)
    try:
        m = vec.fit_transform(texts)
    except ValueError:
        return np.zeros(len(texts))
    centroid = np.asarray(m.mean(axis=0)).ravel()
    norm = np.linalg.norm(centroid)
    if norm == 0:
        return np.zeros(len(texts))
    return np.asarray(m @ (centroid / norm)).ravel()


def title_and_summary(rows: Sequence[Any], max_title: int = 60) -> tuple[str, str, int | None]:
    """Extractive: the title of the most central titled original, and its central sentences."""
    originals = [r for r in rows if r.reposts_of_id is None and (r.text_norm or r.title_norm)]
    # Central among the first 300 (originals first, oldest first): enough to find the story,
    # and fitting TF-IDF on 2,000 texts made this half the cost of a profile.
    pool = (originals or list(rows))[:300]
    if not pool:
        return "", "", None
    texts = [f"{r.title_norm or ''} {r.text_norm or ''}" for r in pool]
    scores = _centrality(texts)
    order = np.argsort(-scores, kind="stable")
    best = pool[int(order[0])]
    titled = [pool[int(i)] for i in order if pool[int(i)].title]
    if titled:
        title = titled[0].title.strip()
    else:
        first = _SENTENCE.findall((best.text_clean or "").strip())
        title = (first[0] if first else (best.text_clean or "")).strip()
    if len(title) > max_title:
        title = title[: max_title - 1] + "…"
    sentences = [s.strip() for s in _SENTENCE.findall(best.text_clean or "") if len(s.strip()) > 4]
    summary = "".join(sentences[:3])[:300]
    return title, summary, best.id


def opinion_groups(rows: Sequence[Any], k_max: int = 5) -> list[dict[str, Any]]:
    """Clusters of what people say: k-means over TF-IDF of the distinct texts."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tingfeng.analyze.keywords import strip_noise

    seen: set[str] = set()
    texts, picked = [], []
    for r in rows:
        own = strip_noise(r.text_norm or "", own_words=True).strip()
        if len(own) < 6 or own in seen:
            continue
        seen.add(own)
        texts.append(own)
        picked.append(r)
    if len(texts) < 20:
        return []
    # Enough to see what people say; k-means over every text of a big event costs seconds.
    texts, picked = texts[:800], picked[:800]
    k = max(2, min(k_max, len(texts) // 20))
    vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), min_df=2, max_features=20000)
    try:
        m = vec.fit_transform(texts)
    except ValueError:
        return []
    if m.shape[1] < k:
        return []
    km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(m)
    terms = np.array(vec.get_feature_names_out())
    groups = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if not len(members):
            continue
        centre = km.cluster_centers_[c]
        top = [t.strip() for t in terms[np.argsort(-centre)[:12]] if len(t.strip()) >= 2][:6]
        dists = np.asarray(m[members] @ centre).ravel()
        rep = picked[int(members[int(np.argmax(dists))])]
        polarity = Counter(picked[int(i)].polarity or "unknown" for i in members)
        groups.append(
            {
                "share": round(len(members) / len(texts), 3),
                "posts": len(members),
                "terms": top,
                "example_post_id": rep.id,
                "example": (rep.text_clean or "")[:140],
                "polarity": dict(polarity),
            }
        )
    groups.sort(key=lambda g: -g["posts"])
    return groups


def _spread(conn: Connection, event_id: int, root: int | None) -> dict[str, Any] | None:
    if root is None:
        return None
    rows = conn.execute(
        text(
            "SELECT p.id, p.reposts_of_id, p.author, p.published_at FROM event_posts ep "
            "JOIN posts p ON p.id = ep.post_id WHERE ep.event_id = :e ORDER BY p.id LIMIT :n"
        ),
        {"e": event_id, "n": MAX_SPREAD_NODES},
    ).all()
    nodes, root_time = spread_nodes(rows, root)
    if not nodes:
        return None
    return spread_path(root, nodes, root_time=root_time).to_dict()


def spread_nodes(rows: Any, root: int) -> tuple[list[SpreadNode], datetime | None]:
    """The repost links among an event's posts, rows of (id, reposts_of_id, author,
    published_at), and the root's time. A post whose parent is outside the event hangs
    under the root; posts that joined by content, not by a repost link, are not in the tree."""
    members = {r[0] for r in rows}
    nodes, root_time = [], None
    for pid, parent, author, published in rows:
        if pid == root:
            root_time = as_utc(published)
        elif parent is not None:
            nodes.append(
                SpreadNode(
                    key=pid,
                    parent=parent if parent in members and parent != root else None,
                    author=author,
                    time=as_utc(published),
                )
            )
    return nodes, root_time


def build_profile(conn: Connection, event_id: int) -> dict[str, Any]:
    """Everything the event page and the grading need, from the stored posts."""
    timeline: dict[str, int] = {}
    mix: dict[str, dict[str, int]] = defaultdict(dict)
    per_source: Counter[int] = Counter()
    engagement = 0
    first: tuple[datetime, int, int] | None = None
    last_time: datetime | None = None
    times: list[datetime] = []
    for pid, sid, published, pol, reposts, comments, likes in conn.execute(
        text(
            "SELECT p.id, p.source_id, p.published_at, r.polarity, p.reposts, p.comments, p.likes "
            "FROM event_posts ep JOIN posts p ON p.id = ep.post_id "
            "LEFT JOIN readings r ON r.post_id = p.id WHERE ep.event_id = :e"
        ),
        {"e": event_id},
    ):
        per_source[sid] += 1
        engagement += (reposts or 0) + (comments or 0) + (likes or 0)
        t = as_utc(published)
        if t is None:
            continue
        times.append(t)
        hour = _hour(t).isoformat()
        timeline[hour] = timeline.get(hour, 0) + 1
        key = pol or "unknown"
        mix[hour][key] = mix[hour].get(key, 0) + 1
        if first is None or (t, pid) < first[:2]:
            first = (t, pid, sid)
        if last_time is None or t > last_time:
            last_time = t
    posts = sum(per_source.values())
    tiers = source_tiers(conn, list(per_source))
    tier_posts: Counter[str] = Counter()
    for sid, n in per_source.items():
        tier_posts[str(tiers.get(sid, MediaTier.other))] += n
    categories = Counter(
        dict(
            conn.execute(
                text(
                    "SELECT l.value, count(*) FROM event_posts ep JOIN post_labels l "
                    "ON l.post_id = ep.post_id WHERE ep.event_id = :e AND l.kind = 'category' "
                    "GROUP BY l.value"
                ),
                {"e": event_id},
            ).all()
        )
    )
    rows = _sample(conn, event_id)
    title, summary, central = title_and_summary(rows)
    from tingfeng.search.service import _keyword_extractor

    keywords = [
        [w, round(float(s), 4)]
        for w, s in _keyword_extractor().group_keywords([r.text_norm or "" for r in rows], k=12)
    ]
    places: Counter[str] = Counter()
    place_names: dict[str, str] = {}
    specific = evidenced = 0
    for r in rows:
        regions = _json_list(r.regions)
        for region in regions:
            code = region.get("code") if isinstance(region, dict) else None
            if code:
                places[code] += 1
                place_names[code] = "".join(region.get("path") or [region.get("name", code)])
        entities = _json_dict(r.entities)
        if (
            regions
            or entities.get("persons")
            or entities.get("places")
            or _DIGIT.search(r.text_norm or "")
        ):
            specific += 1
        if r.url or _LINK.search(r.text_clean or ""):
            evidenced += 1
    n_sample = max(len(rows), 1)
    last_hour = prev_hour = 0
    if last_time is not None:
        for t in times:
            age = (last_time - t).total_seconds()
            if age < 3600:
                last_hour += 1
            elif age < 7200:
                prev_hour += 1
    negative = sum(v.get("negative", 0) for v in mix.values())
    known = sum(n for v in mix.values() for k, n in v.items() if k != "unknown")
    heat = heat_index(
        HeatInputs(
            posts=posts,
            posts_last_hour=last_hour,
            posts_prev_hour=prev_hour,
            engagement=engagement,
            source_weight=sum(
                tiers.get(s, MediaTier.other).weight * n for s, n in per_source.items()
            ),
            sources=len(per_source),
        )
    )
    root = first[1] if first else None
    return {
        "title": title,
        "summary": summary,
        "central_post_id": central,
        "first_post_id": root,
        "first_source_id": first[2] if first else None,
        "first_seen_at": first[0].isoformat() if first else None,
        "last_seen_at": last_time.isoformat() if last_time else None,
        "posts": posts,
        "timeline": sorted(timeline.items()),
        "sentiment_mix": sorted((h, m) for h, m in mix.items()),
        "negative_share": round(negative / known, 4) if known else None,
        "keywords": keywords,
        "places": [
            {"code": c, "name": place_names.get(c, c), "posts": n}
            for c, n in places.most_common(10)
        ],
        "categories": [{"slug": s, "posts": n} for s, n in categories.most_common()],
        "sources": [{"source_id": s, "posts": n} for s, n in per_source.most_common(20)],
        "source_count": len(per_source),
        "tiers": dict(tier_posts),
        "engagement": engagement,
        "posts_last_hour": last_hour,
        "posts_prev_hour": prev_hour,
        "specificity": round(specific / n_sample, 4),
        "evidence": round(evidenced / n_sample, 4),
        "opinion_groups": opinion_groups(rows),
        "spread": _spread(conn, event_id, root),
        "heat": {"value": round(heat.value, 2), "components": heat.components},
        "region_count": len(places),
        "sample_texts": [(r.text_norm or "")[:500] for r in rows[:200]],
    }


def facts_of(profile: dict[str, Any], model: GradingModel | None = None) -> EventFacts:
    """The grading inputs from a profile."""
    velocity = max(
        profile["posts_last_hour"], (profile["posts_last_hour"] + profile["posts_prev_hour"]) / 2
    )
    return EventFacts(
        posts=profile["posts"],
        sources=profile["source_count"],
        regions=profile["region_count"],
        posts_per_hour=float(velocity),
        reach=0,
        engagement=profile["engagement"],
        negative_share=profile["negative_share"] or 0.0,
        categories=tuple(c["slug"] for c in profile["categories"][:5]),
        keywords=tuple(w for w, _ in profile["keywords"]),
        tiers=profile["tiers"],
        specificity=profile["specificity"],
        evidence=profile["evidence"],
        consequences=_consequences(profile.get("sample_texts", ()), model),
        heat=profile["heat"]["value"],
    )


def _consequences(texts: Sequence[str], model: GradingModel | None) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for t in texts:
        for term in find_consequences(t, model):
            found[term] = None
    return tuple(found)


def refresh_event(
    conn: Connection,
    event_id: int,
    *,
    model: GradingModel | None = None,
    now: datetime | None = None,
    on_level: LevelListener | None = None,
) -> dict[str, Any]:
    """Recompute the profile, heat and grade of one event and store them.

    `on_level(conn, event_id, old, new)` is called when the level changes (alerts listen).
    """
    row = conn.execute(select(Event).where(Event.id == event_id)).one()
    profile = build_profile(conn, event_id)
    facts = facts_of(profile, model)
    state = GradeState.model_validate(row.grade_state) if row.grade_state else None
    at = now or as_utc(profile["last_seen_at"]) or utc_now()
    result = grade(facts, model, previous=state, now=at)
    profile.pop("sample_texts", None)
    new_state = result.state
    values: dict[str, Any] = {
        "title": profile["title"] or row.title,
        "summary": profile["summary"],
        "first_post_id": profile["first_post_id"],
        "first_source_id": profile["first_source_id"],
        "first_seen_at": as_utc(profile["first_seen_at"]),
        "last_seen_at": as_utc(profile["last_seen_at"]),
        "posts": profile["posts"],
        "heat": profile["heat"]["value"],
        "level": str(result.level),
        "level_score": result.score,
        "grade": result.to_dict(),
        "grade_state": new_state.model_dump(mode="json"),
        "profile": profile,
        "profiled_posts": profile["posts"],
        "profiled_at": utc_now(),
        "updated_at": utc_now(),
    }
    conn.execute(update(Event).where(Event.id == event_id).values(**values))
    if row.level != str(result.level):
        conn.execute(
            insert(EventGrade).values(
                event_id=event_id,
                graded_at=at,
                level=str(result.level),
                score=result.score,
                overridden=result.override is not None,
                reason=result.override.reason if result.override else None,
                decided_by=result.override.by if result.override else None,
                explanation=result.to_dict(),
            )
        )
        if on_level is not None:
            on_level(conn, event_id, row.level, str(result.level))
    return values


def due_events(
    conn: Connection,
    event_ids: Sequence[int],
    *,
    min_age_s: float = 60.0,
    growth: float = 0.2,
    min_growth_posts: int = 5,
    min_gap_s: float = 10.0,
) -> list[int]:
    """Events whose profile is missing or stale.

    Stale: grown by `growth` (and at least `min_growth_posts` posts) and not profiled in the
    last `min_gap_s`, or changed at all and not profiled for `min_age_s`. A burst of posts then
    costs a few profiles, not one per batch.
    """
    if not event_ids:
        return []
    now = utc_now()
    out = []
    for eid, posts, profiled, at in conn.execute(
        select(Event.id, Event.posts, Event.profiled_posts, Event.profiled_at).where(
            Event.id.in_(list(event_ids)), Event.status == "open"
        )
    ):
        if at is None:
            out.append(eid)
            continue
        age = (now - as_utc(at)).total_seconds()
        grown = posts >= profiled * (1 + growth) and posts - profiled >= min_growth_posts
        if (grown and age >= min_gap_s) or (posts != profiled and age >= min_age_s):
            out.append(eid)
    return out


_MODELS: dict[tuple[str, float], GradingModel] = {}


def grading_model_for(path: str) -> GradingModel | None:
    """The configured grading model (`grading_model` setting), or None for the defaults.

    Raises GradingModelError (a ValueError naming each problem) for a broken file.
    """
    if not path:
        return None
    import os

    # Keyed by modification time too, so an edited file is read again.
    key = (path, os.stat(path).st_mtime)
    if key not in _MODELS:
        _MODELS[key] = GradingModel.load(path)
    return _MODELS[key]


def refresh_due(
    engine: Engine,
    event_ids: Sequence[int],
    *,
    min_age_s: float = 60.0,
    limit: int = 5,
    model: GradingModel | None = None,
    on_level: LevelListener | None = None,
) -> int:
    """Refresh the stale ones among `event_ids` (at most `limit`, largest first)."""
    with engine.connect() as conn:
        due = due_events(conn, event_ids, min_age_s=min_age_s)
        if not due:
            return 0
        sizes = dict(conn.execute(select(Event.id, Event.posts).where(Event.id.in_(due))).all())
    done = 0
    for eid in sorted(due, key=lambda e: -sizes.get(e, 0))[:limit]:
        try:
            with write_transaction(engine) as conn:
                refresh_event(conn, eid, model=model, on_level=on_level)
            done += 1
        except Exception:  # one event's profile must never stop ingest
            log.exception("could not refresh event %s", eid)
    return done
