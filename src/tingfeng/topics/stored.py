"""Run a topic query over stored posts: `topics test`, the preview before saving, and search.

The full-text index narrows the posts first: the query's required literals (a conjunction of
alternatives every match must contain) become an index query, and only those candidates are
read and evaluated exactly by the same matcher the stream uses. A query with nothing to look
for in the text (only field filters) reads every post in the time range.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, text

from tingfeng.db.models import as_utc
from tingfeng.search.query import MAX_QUERY_CHARS, MAX_TERMS
from tingfeng.search.service import SearchFilters, highlight, matching_ids
from tingfeng.topics import Topic, TopicDoc, TopicMatcher, parse_query, required_literals

BATCH = 2000
# A preview reads at most this many candidate posts; beyond it the counts are marked partial.
DEFAULT_MAX_SCAN = 2_000_000
_LATIN_ONLY = re.compile(r"^[0-9a-z][0-9a-z .'-]*$")


@dataclass
class StoredMatches:
    """Posts matching a query among stored ones: (post id, published at, matched terms)."""

    matches: list[tuple[int, datetime | None, tuple[str, ...]]] = field(default_factory=list)
    scanned: int = 0
    truncated: bool = False
    narrowed: bool = False  # True when the full-text index chose the candidates

    @property
    def ids(self) -> set[int]:
        return {m[0] for m in self.matches}


def _index_query(cnf: list[frozenset[str]]) -> str | None:
    """A search-box query whose results contain every post the CNF allows (a superset)."""
    clauses: list[str] = []
    used = 0
    # Smallest clauses first: they narrow most for the fewest index terms.
    for clause in sorted(cnf, key=len):
        parts = []
        for literal in sorted(clause):
            lit = literal.strip()
            if not lit or '"' in lit or "\\" in lit:
                parts = []
                break
            # Latin words: a prefix search covers the wildcard and whole-word forms alike.
            parts.append(f"{lit}*" if _LATIN_ONLY.match(lit) and " " not in lit else f'"{lit}"')
        if not parts or used + len(parts) > MAX_TERMS:
            continue
        clause_text = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        # The search box takes MAX_QUERY_CHARS; leaving a clause out only widens the superset.
        if len(" ".join([*clauses, clause_text])) > MAX_QUERY_CHARS:
            continue
        used += len(parts)
        clauses.append(clause_text)
    return " ".join(clauses) if clauses else None


def host_of(url: str | None) -> str:
    if not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


_NAMES: dict[str, dict[str, tuple[str, ...]]] = {}


def category_names(conn: Connection) -> dict[str, tuple[str, ...]]:
    """Slug -> (Chinese name, English name) of the taxonomy in force, so `category:交通` works."""
    from tingfeng.ingest.readings import current_taxonomy, taxonomy_version

    version = taxonomy_version(conn) or "default"
    if version not in _NAMES:
        taxonomy = current_taxonomy(conn)
        _NAMES[version] = {c.slug: (c.name_zh, c.name_en) for c in taxonomy.categories}
    return _NAMES[version]


_DOC_SQL = """
SELECT p.id, p.published_at, p.title_norm, p.text_norm, p.url, p.canonical_url, p.author,
       p.lang, p.source_id, s.name, r.polarity, e.level
FROM posts p JOIN sources s ON s.id = p.source_id
LEFT JOIN readings r ON r.post_id = p.id
LEFT JOIN event_posts ep ON ep.post_id = p.id
LEFT JOIN events e ON e.id = ep.event_id
WHERE p.id IN ({ids})
"""


def load_docs(conn: Connection, post_ids: Sequence[int]) -> list[tuple[int, Any, TopicDoc]]:
    """(post id, published at, TopicDoc) for stored posts, with their readings and event level."""
    if not post_ids:
        return []
    ids = ",".join(str(int(i)) for i in post_ids)
    labels: dict[int, dict[str, set[str]]] = {}
    for pid, kind, value in conn.execute(
        text(f"SELECT post_id, kind, value FROM post_labels WHERE post_id IN ({ids})")
    ):
        labels.setdefault(pid, {}).setdefault(kind, set()).add(value)
    names = category_names(conn)
    out = []
    for row in conn.execute(text(_DOC_SQL.format(ids=ids))):
        pid, published, title, body, url, canonical, author, lang, sid, sname, pol, level = row
        post_labels = labels.get(pid, {})
        categories = set(post_labels.get("category", ()))
        for slug in list(categories):
            categories.update(n.lower() for n in names.get(slug, ()) if n)
        doc = TopicDoc(
            text=f"{title}\n{body}" if title else (body or ""),
            title=title or "",
            site=host_of(canonical or url),
            source=sname or "",
            source_id=sid,
            author=author or "",
            lang=lang,
            regions=frozenset(post_labels.get("region", ())),
            categories=frozenset(categories),
            sentiment=pol if pol and pol != "unknown" else None,
            level=level,
        )
        out.append((pid, published, doc))
    return out


def _scan_ids(
    conn: Connection, since: datetime | None, until: datetime | None, source_ids: Sequence[int]
) -> Iterator[list[int]]:
    from tingfeng.db.models import UtcDateTime

    where, params = ["p.id > :after"], {}
    if since is not None:
        where.append("p.published_at >= :since")
        params["since"] = UtcDateTime().process_bind_param(since, conn.dialect)
    if until is not None:
        where.append("p.published_at < :until")
        params["until"] = UtcDateTime().process_bind_param(until, conn.dialect)
    if source_ids:
        where.append("p.source_id IN (" + ",".join(str(int(s)) for s in source_ids) + ")")
    sql = text(f"SELECT p.id FROM posts p WHERE {' AND '.join(where)} ORDER BY p.id LIMIT {BATCH}")
    after = 0
    while True:
        ids = list(conn.execute(sql, {**params, "after": after}).scalars())
        if not ids:
            return
        yield ids
        after = ids[-1]


def match_stored(
    conn: Connection,
    query: str,
    *,
    exclusions: Iterable[str] = (),
    source_ids: Sequence[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    max_scan: int = DEFAULT_MAX_SCAN,
) -> StoredMatches:
    """Every stored post the query matches (raises QuerySyntaxError for a bad query)."""
    node = parse_query(query)
    topic = Topic(
        id=0,
        query=query,
        exclusions=tuple(exclusions),
        source_ids=frozenset(source_ids) if source_ids else None,
    )
    matcher = TopicMatcher([topic])
    result = StoredMatches()
    sources = list(source_ids or ())
    cnf = required_literals(node)
    index_query = _index_query(cnf) if cnf else None
    batches: Iterable[list[int]]
    if index_query is not None:
        filters = SearchFilters(since=since, until=until, source_ids=sources)
        candidates = sorted(matching_ids(conn, index_query, filters))
        result.narrowed = True
        batches = (candidates[i : i + BATCH] for i in range(0, len(candidates), BATCH))
    else:
        batches = _scan_ids(conn, since, until, sources)
    for ids in batches:
        if result.scanned >= max_scan:
            result.truncated = True
            break
        ids = ids[: max_scan - result.scanned]
        docs = load_docs(conn, ids)
        result.scanned += len(ids)
        hits = matcher.match_many([d for _, _, d in docs])
        for (pid, published, _), topic_hits in zip(docs, hits, strict=True):
            if topic_hits:
                result.matches.append((pid, as_utc(published), topic_hits[0].terms))
    result.matches.sort(key=lambda m: m[0])
    return result


def per_day(matches: StoredMatches, tz: str = "Asia/Shanghai") -> list[tuple[str, int]]:
    """Matches per local calendar day, oldest first."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    days = Counter(
        m[1].astimezone(zone).date().isoformat() if m[1] else "unknown" for m in matches.matches
    )
    return sorted(days.items())


def sample_posts(
    conn: Connection, matches: Sequence[tuple[int, Any, tuple[str, ...]]], n: int = 10
) -> list[dict[str, Any]]:
    """The newest `n` matches with a highlighted snippet (HTML-escaped)."""
    chosen = sorted(matches, key=lambda m: m[0], reverse=True)[:n]
    if not chosen:
        return []
    terms = {m[0]: m[2] for m in chosen}
    ids = ",".join(str(m[0]) for m in chosen)
    rows = conn.execute(
        text(
            "SELECT id, title, text_clean, text_norm, url, published_at, source_id, author "
            f"FROM posts WHERE id IN ({ids}) ORDER BY id DESC"
        )
    )
    out = []
    for pid, title, clean, norm, url, published, sid, author in rows:
        out.append(
            {
                "id": pid,
                "title": title,
                "url": url,
                "author": author,
                "source_id": sid,
                "published_at": (as_utc(published).isoformat() if published else None),
                "terms": list(terms[pid]),
                "snippet_html": highlight(clean or "", norm or "", tuple(terms[pid])),
            }
        )
    return out


def preview(
    conn: Connection,
    query: str,
    *,
    exclusions: Iterable[str] = (),
    source_ids: Sequence[int] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    saved: Any = None,
    samples: int = 10,
    max_scan: int = DEFAULT_MAX_SCAN,
    tz: str = "Asia/Shanghai",
) -> dict[str, Any]:
    """What a draft would match among stored posts, and how it differs from the saved version.

    `saved` is a SavedTopic (tingfeng.topics.store) or None for a new topic.
    """
    exclusions = list(exclusions)
    draft = match_stored(
        conn,
        query,
        exclusions=exclusions,
        source_ids=source_ids,
        since=since,
        until=until,
        max_scan=max_scan,
    )
    out: dict[str, Any] = {
        "query": query,
        "count": len(draft.matches),
        "scanned": draft.scanned,
        "partial": draft.truncated,
        "per_day": per_day(draft, tz),
        "samples": sample_posts(conn, draft.matches, samples),
    }
    if saved is not None:
        before = match_stored(
            conn,
            saved.query,
            exclusions=saved.exclusions,
            source_ids=saved.source_ids,
            since=since,
            until=until,
            max_scan=max_scan,
        )
        old_ids, new_ids = before.ids, draft.ids
        added = [m for m in draft.matches if m[0] not in old_ids]
        removed = [m for m in before.matches if m[0] not in new_ids]
        out["diff"] = {
            "saved_version": saved.version,
            "saved_count": len(before.matches),
            "added": len(added),
            "removed": len(removed),
            "added_samples": sample_posts(conn, added, samples),
            "removed_samples": sample_posts(conn, removed, samples),
        }
        out["partial"] = out["partial"] or before.truncated
    return out
