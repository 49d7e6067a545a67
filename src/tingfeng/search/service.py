"""Search stored posts: the same query, the same results on SQLite and PostgreSQL.

A query is compiled twice from one tree: into an index expression (FTS5 MATCH or tsquery)
that finds candidates fast, and, only for terms where a phrase of index tokens can match
without the exact string (terms with spaces or mixed scripts), into a substring check.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from tingfeng.analyze.normalize import normalize, to_simplified
from tingfeng.db.models import as_utc
from tingfeng.search.index import key_at
from tingfeng.search.query import And, Node, Not, QueryError, Term, parse_query
from tingfeng.search.tokens import TermPattern, term_pattern

Sort = Literal["newest", "oldest", "relevance"]
SORTS: tuple[str, ...] = ("newest", "oldest", "relevance")


@dataclass(frozen=True, slots=True)
class _CTerm:
    text: str  # normalised
    pattern: TermPattern


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    fts5: str
    tsquery: str
    check_terms: tuple[str, ...]  # substring-checked terms, in order of `check_sql` placeholders
    check_tree: Any  # the tree with checks, or None when the index match is exact
    highlight_terms: tuple[str, ...]


def _compile_term(term: Term) -> _CTerm:
    norm = normalize(term.text)
    pattern = term_pattern(norm)
    if pattern is None:
        raise QueryError(f"The term {term.text!r} has no letters or characters to look for.")
    # The substring check and highlighting look for the prefix itself.
    return _CTerm(norm.rstrip("*") or norm, pattern)


def _fts5_term(t: _CTerm) -> str:
    phrase = '"' + " ".join(t.pattern.tokens) + '"'
    return phrase + "*" if t.pattern.prefix_last else phrase


def _ts_term(t: _CTerm) -> str:
    parts = [f"'{tok}'" for tok in t.pattern.tokens]
    if t.pattern.prefix_last:
        parts[-1] += ":*"
    return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"


class _Compiler:
    def __init__(self) -> None:
        self.needs_check = False
        self.terms: list[_CTerm] = []

    def resolve(self, node: Node) -> Any:
        """Normalise terms and reject NOT-only groups, which no index can answer."""
        if isinstance(node, Term):
            ct = _compile_term(node)
            self.terms.append(ct)
            self.needs_check |= ct.pattern.needs_check
            return ct
        if isinstance(node, Not):
            return ("not", self.resolve(node.child))
        children = [self.resolve(c) for c in node.children]
        if isinstance(node, And):
            if all(isinstance(c, tuple) and c[0] == "not" for c in children):
                raise QueryError("NOT needs something to look for as well, as in '医院 -广告'.")
            return ("and", children)
        if any(isinstance(c, tuple) and c[0] == "not" for c in children):
            raise QueryError("OR cannot join a NOT term: write '(A OR B) -C' instead of 'A OR -C'.")
        return ("or", children)

    def fts5(self, node: Any) -> str:
        if isinstance(node, _CTerm):
            return _fts5_term(node)
        op, children = node
        if op == "not":
            raise QueryError("NOT needs something to look for as well, as in '医院 -广告'.")
        if op == "or":
            return "(" + " OR ".join(self.fts5(c) for c in children) + ")"
        pos = [c for c in children if not (isinstance(c, tuple) and c[0] == "not")]
        neg = [c[1] for c in children if isinstance(c, tuple) and c[0] == "not"]
        expr = "(" + " AND ".join(self.fts5(c) for c in pos) + ")"
        for n in neg:
            expr = f"({expr} NOT {self.fts5(n)})"
        return expr

    def tsquery(self, node: Any) -> str:
        if isinstance(node, _CTerm):
            return _ts_term(node)
        op, children = node
        if op == "not":
            return f"!{self.tsquery(children)}"
        joiner = " | " if op == "or" else " & "
        return "(" + joiner.join(self.tsquery(c) for c in children) + ")"


def compile_query(query: str) -> CompiledQuery:
    tree = parse_query(query)
    comp = _Compiler()
    resolved = comp.resolve(tree)
    if isinstance(resolved, tuple) and resolved[0] == "not":
        raise QueryError("NOT needs something to look for as well, as in '医院 -广告'.")
    return CompiledQuery(
        fts5=comp.fts5(resolved),
        tsquery=comp.tsquery(resolved),
        check_terms=tuple(t.text for t in comp.terms),
        check_tree=resolved if comp.needs_check else None,
        highlight_terms=tuple(dict.fromkeys(t.text for t in comp.terms)),
    )


def _check_sql(node: Any, dialect: str, params: dict[str, Any]) -> str:
    """Substring check mirroring the query tree (NOT branches are left to the index)."""
    if isinstance(node, _CTerm):
        name = f"c{len(params)}"
        params[name] = node.text
        fn = "instr" if dialect == "sqlite" else "strpos"
        return f"({fn}(p.title_norm, :{name}) > 0 OR {fn}(p.text_norm, :{name}) > 0)"
    op, children = node
    if op == "not":
        return "1=1"
    parts = [_check_sql(c, dialect, params) for c in children]
    return "(" + (" OR " if op == "or" else " AND ").join(parts) + ")"


@dataclass
class SearchFilters:
    since: datetime | None = None
    until: datetime | None = None
    source_ids: list[int] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    # Filters on readings (tingfeng.analyze.reading): any of the values given matches.
    polarities: list[str] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    regions: list[str] = field(
        default_factory=list
    )  # division codes; a province covers its counties
    needs_verification: bool | None = None
    # Posts matched by these saved topics (any of them).
    topic_ids: list[int] = field(default_factory=list)
    # Only these posts: the matches of a query in the topic language (`where_ids`).
    post_ids: set[int] | None = None
    # Posts of events graded at these levels (general, serious, major, critical): any of them.
    event_levels: list[str] = field(default_factory=list)

    @property
    def on_readings(self) -> bool:
        return bool(
            self.polarities
            or self.emotions
            or self.categories
            or self.regions
            or self.needs_verification is not None
        )


@dataclass
class SearchHit:
    id: int
    source_id: int
    title: str | None
    url: str | None
    author: str | None
    lang: str
    published_at: datetime | None
    dup_group: int | None
    snippet_html: str


@dataclass
class SearchPage:
    hits: list[SearchHit]
    query: str
    sort: str


def _whole_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _where(
    conn: Connection, cq: CompiledQuery, filters: SearchFilters
) -> tuple[str, str, dict[str, Any], bool]:
    """FROM and WHERE for a query; the flag says whether the index alone can answer it."""
    dialect = conn.dialect.name
    params: dict[str, Any] = {}
    if dialect == "sqlite":
        # The low 32 bits of the index key are the post id (see search.index.sort_key).
        frm = "post_fts JOIN posts p ON p.id = (post_fts.rowid & 4294967295)"
        key = "post_fts.rowid"
        conds = ["post_fts MATCH :m"]
        params["m"] = cq.fts5
    else:
        frm = "post_search s JOIN posts p ON p.id = s.post_id"
        key = "s.sort_key"
        conds = ["s.vector @@ CAST(:m AS tsquery)"]
        params["m"] = cq.tsquery
    # Time filters are ranges of the index key (whole seconds), answered by the index itself.
    if filters.since is not None:
        conds.append(f"{key} >= :klo")
        params["klo"] = key_at(_whole_second(filters.since))
    if filters.until is not None:
        conds.append(f"{key} < :khi")
        params["khi"] = key_at(_whole_second(filters.until))
    index_only = (
        cq.check_tree is None
        and not filters.source_ids
        and not filters.langs
        and not filters.on_readings
        and not filters.topic_ids
        and filters.post_ids is None
        and not filters.event_levels
    )
    if cq.check_tree is not None:
        conds.append(_check_sql(cq.check_tree, dialect, params))
    if filters.source_ids:
        names = []
        for i, sid in enumerate(filters.source_ids):
            params[f"s{i}"] = int(sid)
            names.append(f":s{i}")
        conds.append(f"p.source_id IN ({', '.join(names)})")
    if filters.langs:
        names = []
        for i, lang in enumerate(filters.langs):
            params[f"l{i}"] = lang
            names.append(f":l{i}")
        conds.append(f"p.lang IN ({', '.join(names)})")
    conds += reading_conditions(filters, params)
    if filters.topic_ids:
        topics = ", ".join(str(int(t)) for t in filters.topic_ids)
        conds.append(
            "EXISTS (SELECT 1 FROM topic_matches tm WHERE tm.post_id = p.id "
            f"AND tm.topic_id IN ({topics}))"
        )
    if filters.event_levels:
        # A post belongs to at most one event (event_posts is keyed by post).
        conds.append(
            "p.id IN (SELECT ep.post_id FROM event_posts ep JOIN events e ON e.id = ep.event_id "
            f"WHERE e.level IN ({_in_list('el', filters.event_levels, params)}))"
        )
    if filters.post_ids is not None:
        # Integers only, so they can be written into the statement (no parameter limit).
        ids = ", ".join(str(int(i)) for i in sorted(filters.post_ids)) or "NULL"
        conds.append(f"p.id IN ({ids})")
    return frm, " AND ".join(conds), params, index_only


MAX_WHERE_POSTS = 200_000


def where_ids(
    conn: Connection,
    where: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    source_ids: list[int] | None = None,
) -> set[int]:
    """Ids of the stored posts a topic-language query matches, for `SearchFilters.post_ids`.

    Raises tingfeng.topics.QuerySyntaxError for a bad query and QueryError when it matches too
    many posts to serve as a filter.
    """
    from tingfeng.topics.stored import match_stored

    found = match_stored(
        conn, where, since=since, until=until, source_ids=source_ids, max_scan=MAX_WHERE_POSTS
    )
    if found.truncated:
        raise QueryError(
            f"The filter {where!r} reads more than {MAX_WHERE_POSTS:,} posts: add a term to "
            "look for, or a time range."
        )
    return found.ids


def _in_list(prefix: str, values: list[Any], params: dict[str, Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names)


def reading_conditions(
    filters: SearchFilters, params: dict[str, Any], post: str = "p.id"
) -> list[str]:
    """SQL conditions for the reading filters, on a query whose post id is `post`."""
    conds = []
    checks = []
    if filters.polarities:
        checks.append(f"r.polarity IN ({_in_list('rp', filters.polarities, params)})")
    if filters.emotions:
        checks.append(f"r.emotion IN ({_in_list('re', filters.emotions, params)})")
    if filters.needs_verification is not None:
        params["rv"] = filters.needs_verification
        checks.append("r.needs_verification = :rv")
    if checks:
        conds.append(
            f"EXISTS (SELECT 1 FROM readings r WHERE r.post_id = {post} AND {' AND '.join(checks)})"
        )
    for kind, values, prefix in (
        ("category", filters.categories, "lc"),
        ("region", filters.regions, "lr"),
    ):
        if values:
            conds.append(
                f"{post} IN (SELECT post_id FROM post_labels WHERE kind = '{kind}' "
                f"AND value IN ({_in_list(prefix, values, params)}))"
            )
    return conds


def _db_time(conn: Connection, value: datetime) -> datetime:
    from tingfeng.db.models import UtcDateTime

    return UtcDateTime().process_bind_param(value, conn.dialect)  # type: ignore[return-value]


def count(conn: Connection, query: str, filters: SearchFilters | None = None) -> int:
    """Number of stored posts matching `query`."""
    cq = compile_query(query)
    frm, where, params, index_only = _where(conn, cq, filters or SearchFilters())
    if index_only:
        # Every condition is on the index: counting there skips a join per match (10× faster
        # for a term found in half a million posts).
        frm = frm.split(" JOIN ")[0]
    return int(conn.execute(text(f"SELECT count(*) FROM {frm} WHERE {where}"), params).scalar_one())


def matching_ids(conn: Connection, query: str, filters: SearchFilters | None = None) -> set[int]:
    """Ids of all matching posts (for exports, comparisons and the benchmark)."""
    cq = compile_query(query)
    frm, where, params, _ = _where(conn, cq, filters or SearchFilters())
    return set(conn.execute(text(f"SELECT p.id FROM {frm} WHERE {where}"), params).scalars())


def search(
    conn: Connection,
    query: str,
    filters: SearchFilters | None = None,
    *,
    sort: str = "newest",
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    """One page of matching posts, with highlighted snippets."""
    if sort not in SORTS:
        raise QueryError(f"Unknown sort {sort!r}: choose one of {', '.join(SORTS)}.")
    cq = compile_query(query)
    frm, where, params, _ = _where(conn, cq, filters or SearchFilters())
    sqlite = conn.dialect.name == "sqlite"
    key = "post_fts.rowid" if sqlite else "s.sort_key"
    if sort == "relevance":
        order = (
            "post_fts.rank, post_fts.rowid DESC"
            if sqlite
            else ("ts_rank(s.vector, CAST(:m AS tsquery)) DESC, s.sort_key DESC")
        )
    else:
        # The index key orders by publication time: the index returns matches in this order,
        # so the first page costs the same whether a term matches ten posts or a million.
        order = f"{key} DESC" if sort == "newest" else f"{key} ASC"
    params["limit"], params["offset"] = max(0, min(int(limit), 1000)), max(0, int(offset))
    sql = (
        "SELECT p.id, p.source_id, p.title, p.url, p.author, p.lang, p.published_at, p.dup_group, "
        f"p.text_clean, p.text_norm FROM {frm} WHERE {where} ORDER BY {order} "
        "LIMIT :limit OFFSET :offset"
    )
    hits = []
    for row in conn.execute(text(sql), params):
        hits.append(
            SearchHit(
                id=row.id,
                source_id=row.source_id,
                title=row.title,
                url=row.url,
                author=row.author,
                lang=row.lang,
                published_at=as_utc(row.published_at),
                dup_group=row.dup_group,
                snippet_html=highlight(
                    row.text_clean or "", row.text_norm or "", cq.highlight_terms
                ),
            )
        )
    return SearchPage(hits=hits, query=query, sort=sort)


def highlight(clean: str, norm: str, terms: tuple[str, ...], width: int = 80) -> str:
    """An HTML-escaped snippet of the post with <mark> around the matched terms.

    Matching happens on the normalised text; when normalisation kept the length (the usual
    case: Traditional→Simplified, width and case are one character for one), the marks are
    placed on the original characters, otherwise on the normalised text.
    """
    basis = normalize_keep_length(clean)
    shown = clean
    if len(basis) != len(clean):
        shown, basis = norm, norm
    spans: list[tuple[int, int]] = []
    for term in terms:
        start = basis.find(term)
        while start != -1 and len(spans) < 50:
            spans.append((start, start + len(term)))
            start = basis.find(term, start + len(term))
    if not spans:
        return html.escape(shown[: width * 2])
    spans.sort()
    first = spans[0][0]
    lo = max(0, first - width // 2)
    hi = min(len(shown), lo + width * 2)
    out: list[str] = ["…" if lo > 0 else ""]
    cursor = lo
    for s, e in spans:
        if s < cursor or s >= hi:
            continue
        out.append(html.escape(shown[cursor:s]))
        out.append("<mark>" + html.escape(shown[s : min(e, hi)]) + "</mark>")
        cursor = min(e, hi)
    out.append(html.escape(shown[cursor:hi]))
    if hi < len(shown):
        out.append("…")
    return "".join(out)


_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalize_keep_length(text_: str) -> str:
    """Normalised one character for one, so offsets in it are offsets in `text_`."""
    return to_simplified(text_).translate(_FULLWIDTH).lower()


def group_keywords(
    conn: Connection,
    query: str,
    filters: SearchFilters | None = None,
    *,
    k: int = 10,
    posts: int = 2000,
) -> list[tuple[str, float]]:
    """Keywords of the newest `posts` posts matching `query` (TF-IDF over the group)."""
    cq = compile_query(query)
    frm, where, params, _ = _where(conn, cq, filters or SearchFilters())
    key = "post_fts.rowid" if conn.dialect.name == "sqlite" else "s.sort_key"
    params["limit"] = max(1, int(posts))
    sql = f"SELECT p.text_norm FROM {frm} WHERE {where} ORDER BY {key} DESC LIMIT :limit"
    texts = [row[0] for row in conn.execute(text(sql), params)]
    if not texts:
        return []
    return [(kw.word, float(kw.weight)) for kw in _keyword_extractor().group_keywords(texts, k=k)]


@functools.cache
def _keyword_extractor():  # type: ignore[no-untyped-def]
    # One per process: building rjieba's dictionary and loading the idf table cost ~0.3 s.
    from tingfeng.analyze.keywords import KeywordExtractor, load_default_idf
    from tingfeng.analyze.segment import Segmenter

    return KeywordExtractor(load_default_idf(), Segmenter())
