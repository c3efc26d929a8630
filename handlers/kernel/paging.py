"""Cursor pagination, the same on every list: `limit` (at most 200), an opaque `cursor`
from the previous page's `nextCursor`, and `sort` (a field, `-field` for descending).

Pages are keyset pages (the sort value and a unique tie-breaker of the last row), so a
page costs the same however deep it is and rows added meanwhile neither repeat nor vanish.
A cursor is bound to the sort and filters it was made with; used with others it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.service import Invalid

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    """One page of a list; `nextCursor` is null on the last page."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last.")


@dataclass(frozen=True)
class SortKey:
    """A sortable field: its column, the attribute of a result row that holds it, and the
    Python type its cursor value decodes to."""

    column: Any
    attr: str
    kind: type = str


@dataclass
class PageRequest:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    sort: str = ""
    filters: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        text = json.dumps({k: v for k, v in sorted(self.filters.items()) if v is not None},
                          default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode(value: Any, kind: type) -> Any:
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is Decimal:
        return Decimal(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not an integer")
        return value
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _cursor(request: PageRequest, value: Any, tiebreak: Any) -> str:
    raw = json.dumps([request.sort, request.fingerprint(), _encode(value), _encode(tiebreak)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSOR = ("cursor: not a cursor of this list, or one made with other sort or filters; "
              "start again without a cursor")


def _position(request: PageRequest, key: SortKey, tiebreak: SortKey) -> tuple[Any, Any]:
    try:
        text = request.cursor or ""
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        sort, fingerprint, value, last = json.loads(raw)
        if sort != request.sort or fingerprint != request.fingerprint():
            raise ValueError("made for another list")
        return _decode(value, key.kind), _decode(last, tiebreak.kind)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise Invalid(BAD_CURSOR) from exc


async def fetch_page(session: AsyncSession, query: Select, request: PageRequest,
                     keys: dict[str, SortKey], tiebreak: SortKey,
                     convert: Callable[[Any], T]) -> Page[T]:
    """Run `query` (rows or entities carrying the keys' attributes) for one page."""
    name = request.sort.lstrip("-")
    if name not in keys:
        raise Invalid(f"sort: {request.sort!r} is not one of "
                      f"{', '.join(sorted(keys))} (prefix '-' for descending)")
    key, descending = keys[name], request.sort.startswith("-")
    if request.cursor:
        value, last = _position(request, key, tiebreak)
        after = (or_(key.column < value, and_(key.column == value, tiebreak.column < last))
                 if descending else
                 or_(key.column > value, and_(key.column == value, tiebreak.column > last)))
        query = query.where(after)
    order = [key.column.desc(), tiebreak.column.desc()] if descending else [
        key.column.asc(), tiebreak.column.asc()]
    rows: Sequence[Any] = (await session.execute(
        query.order_by(*order).limit(request.limit + 1))).all()
    rows = [r[0] if len(r) == 1 and not hasattr(r, key.attr) else r for r in rows]
    more = len(rows) > request.limit
    rows = rows[:request.limit]
    cursor = None
    if more and rows:
        last_row = rows[-1]
        cursor = _cursor(request, getattr(last_row, key.attr), getattr(last_row, tiebreak.attr))
    return Page[Any](items=[convert(r) for r in rows], next_cursor=cursor)
