"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tingfeng.db.engine import make_engine
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Base


def _modelled(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Leave out the full-text index tables, which the search layer creates with raw SQL."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = getattr(table, "name", name)
    return not (table_name or "").startswith(("post_fts", "post_search"))


def _differences(url: str) -> list:
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": False, "include_object": _modelled}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_sqlite_migrations_match_models(tmp_path) -> None:
    assert _differences(f"sqlite:///{tmp_path / 'schema.db'}") == []


@pytest.mark.postgres
def test_postgresql_migrations_match_models(fresh_postgres_db) -> None:
    assert _differences(fresh_postgres_db) == []
