"""server/db/tables.py mirrors the schema the migrations build, for query building; nothing
else ties the two together. On a freshly migrated database, Alembic's autogenerate
comparison must find the same tables, the same columns, and the same type and nullability
for each.

Indexes, foreign keys and unique constraints are left out of the comparison: the mirror
deliberately omits most of them (partial and expression indexes, ON DELETE rules, composite
keys), and new indexes arrive in migrations without the mirror changing. Server defaults
are not compared either (Alembic's default), nor are CHECK constraints (it cannot).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.pool import NullPool
from sqlalchemy.types import NullType

from server.db.tables import Xid8, metadata
from tests.support import db

# What the comparison leaves to the migrations alone (see the module docstring).
EXCLUDED_OBJECTS = {"index", "unique_constraint", "foreign_key_constraint"}


def _included(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return type_ not in EXCLUDED_OBJECTS


@pytest.fixture(scope="module")
def migrated() -> Iterator[Connection]:
    # A database of its own: the session's gains tables at run time (the broker's, when the
    # SQLAlchemy transport is the broker) that no migration makes.
    with db.fresh_database() as url:
        engine = create_engine(url, poolclass=NullPool)
        # SQLAlchemy has no type for xid8 and would reflect it as NullType, which Alembic
        # skips when comparing types: teach this engine's reflection the mirror's own type.
        dialect = engine.dialect
        assert isinstance(dialect, PGDialect)
        dialect.ischema_names = {**dialect.ischema_names, "xid8": Xid8}
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "include_object": _included},
    )
    found: list[Any] = []
    for diff in compare_metadata(context, metadata):
        # Column changes come as a list of modify_* tuples per column; the rest as tuples.
        found.extend(diff if isinstance(diff, list) else [diff])
    return found


def test_every_migrated_column_has_a_type_the_comparison_can_check(
    migrated: Connection,
) -> None:
    inspector = inspect(migrated)
    untyped = [
        f"{table}.{column['name']}"
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
        if isinstance(column["type"], NullType)
    ]
    assert untyped == [], f"reflected without a type, so never compared: {untyped}"


def test_tables_py_matches_the_migrated_schema(migrated: Connection) -> None:
    differences = _differences(migrated)
    assert differences == [], (
        "server/db/tables.py and the migrations disagree (fix the mirror to match the "
        "migrations):\n" + "\n".join(repr(d) for d in differences)
    )
