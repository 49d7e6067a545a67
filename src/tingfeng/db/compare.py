"""Two databases compared table by table, row by row (every column; JSON by value), whichever
of SQLite and PostgreSQL each is: the check after a restore, or between two installations."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from tingfeng.db import portable
from tingfeng.db.portable import TableSpec


@dataclass
class TableComparison:
    name: str
    rows_a: int
    rows_b: int
    differences: list[str] = field(default_factory=list)
    differing_rows: int = 0

    @property
    def same(self) -> bool:
        return not self.differences


@dataclass
class Comparison:
    tables: list[TableComparison]

    @property
    def same(self) -> bool:
        return all(t.same for t in self.tables)

    def lines(self) -> list[str]:
        out = []
        for t in self.tables:
            state = "same" if t.same else f"DIFFERENT ({t.differing_rows} rows)"
            out.append(f"{t.name:<24} {t.rows_a:>9} {t.rows_b:>9}  {state}")
            out.extend(f"    {d}" for d in t.differences)
        return out


def _values_equal(kind: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if kind == "json" and a is not None and b is not None:
        # The same JSON written by two different writers may differ in spacing only.
        return bool(json.loads(a) == json.loads(b))
    return False


def compare(
    a: Engine, b: Engine, *, ignore: Mapping[str, set[str]] | None = None, limit: int = 5
) -> Comparison:
    """Every table of `a` and `b` row by row (by primary key, every column; JSON by value).
    `ignore` leaves out columns of some tables ({"reports": {"path"}})."""
    ignore = ignore or {}
    out = []
    with a.connect() as ca, b.connect() as cb:
        portable.snapshot(ca)
        portable.snapshot(cb)
        specs_a = {s.name: s for s in portable.table_specs(ca)}
        specs_b = {s.name: s for s in portable.table_specs(cb)}
        for name in sorted(set(specs_a) | set(specs_b)):
            sa, sb = specs_a.get(name), specs_b.get(name)
            if sa is None or sb is None:
                present = sa or sb
                conn = ca if sa else cb
                assert present is not None
                rows = sum(len(x) for x in portable.read_rows(conn, present))
                side = "a" if sa else "b"
                out.append(
                    TableComparison(name, rows if sa else 0, rows if sb else 0, [f"only in {side}"])
                )
                continue
            out.append(_compare_table(ca, cb, sa, sb, ignore.get(name, set()), limit))
        ca.rollback()
        cb.rollback()
    return Comparison(out)


def _compare_table(
    ca: Connection, cb: Connection, sa: TableSpec, sb: TableSpec, skip: set[str], limit: int
) -> TableComparison:
    kinds_b = dict(sb.columns)
    result = TableComparison(sa.name, 0, 0)
    names = [n for n in sa.column_names if n in kinds_b and n not in skip]
    missing = sorted(set(sa.column_names) ^ set(kinds_b))
    if missing:
        result.differences.append(f"columns in only one of them: {', '.join(missing)}")
    kinds = dict(sa.columns)
    pk = sa.primary_key if sa.primary_key and set(sa.primary_key) <= set(names) else tuple(names)
    view_a = TableSpec(sa.name, tuple((n, kinds[n]) for n in names), pk)
    view_b = TableSpec(sb.name, tuple((n, kinds_b[n]) for n in names), pk)
    at = [names.index(k) for k in pk]

    def rows(conn: Connection, spec: TableSpec) -> Iterator[list[Any]]:
        for batch in portable.read_rows(conn, spec):
            yield from batch

    def note(text: str) -> None:
        result.differing_rows += 1
        if len(result.differences) < limit:
            result.differences.append(text)

    ia, ib = rows(ca, view_a), rows(cb, view_b)
    ra, rb = next(ia, None), next(ib, None)
    while ra is not None or rb is not None:
        ka = tuple(ra[i] for i in at) if ra is not None else None
        kb = tuple(rb[i] for i in at) if rb is not None else None
        if kb is None or (ka is not None and ka < kb):
            note(f"row {ka} only in a")
            result.rows_a += 1
            ra = next(ia, None)
        elif ka is None or kb < ka:
            note(f"row {kb} only in b")
            result.rows_b += 1
            rb = next(ib, None)
        else:
            assert ra is not None and rb is not None
            if ra != rb:
                cols = [
                    n
                    for n, x, y in zip(names, ra, rb, strict=True)
                    if not _values_equal(kinds[n], x, y)
                ]
                if cols:
                    note(f"row {ka} differs in {', '.join(cols)}")
            result.rows_a += 1
            result.rows_b += 1
            ra, rb = next(ia, None), next(ib, None)
    return result
