"""`column IN (thousands of values)` as one bound parameter.

SQLAlchemy expands `col.in_(values)` into one named parameter per value, renamed and
bind-processed each time the statement runs (~3 µs a value): a 5,000-cart batch asks a
dozen such questions. `in_values(col, values)` binds the whole list once instead:

- SQLite: `col IN (SELECT value FROM json_each(?))`, the list as JSON text;
- PostgreSQL: `col = ANY($1)`, the list as an array.

For ids and text keys (ints and strings); the SQL is cached like any other statement: the
cache key follows `_traverse_internals` (SQLAlchemy's private protocol, checked by
tests/schema/db/test_library_internals.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, String, TypeDecorator, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal


class _ValueList(TypeDecorator):
    """A Python list bound as JSON text (SQLite) or an array of the column's type."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: Any):
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(self.item_type))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value, dialect):
        if dialect.name == "postgresql":
            return value
        return json.dumps(value)


class InValues(ColumnElement[bool]):
    """`column IN values`, compiled per dialect (see the module docstring). Untyped: a
    Boolean element would be rendered `… = 1` in a WHERE on SQLite."""

    __visit_name__ = "in_values"
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, values: list[Any] | None = None, name: str | None = None):
        self.column = column
        if name is None:
            self.values = bindparam(None, values, type_=_ValueList(column.type), unique=True)
        else:  # a statement built once: the list comes with each execution's parameters
            self.values = bindparam(name, type_=_ValueList(column.type))


def in_values(column: Any, values: Iterable[Any]) -> InValues:
    """`column IN values` with the list bound as one parameter (ints or strings)."""
    return InValues(column, list(values))


def in_param(column: Any, name: str) -> InValues:
    """`column IN :name`, the list given at execution (`{name: [...]}`), for statements
    built once (schema/db/prepared.py)."""
    return InValues(column, name=name)


@compiles(InValues, "sqlite")
def _in_sqlite(element: InValues, compiler, **kw) -> str:
    return (f"{compiler.process(element.column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(element.values, **kw)}))")


@compiles(InValues)
def _in_any(element: InValues, compiler, **kw) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"
