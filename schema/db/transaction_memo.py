"""Facts a transaction has learned, kept for the rest of that transaction only.

Every handler of a group-commit batch runs in one transaction and asks some of the same
things (is the store's row there, which segments does it have, its latest RFM bounds).
`transaction_memo(session, name)` is a dict that lives as long as the session's root
transaction: a new transaction starts with an empty one. Inside a SAVEPOINT it is a copy,
so what a savepoint learns (and might roll back) is never remembered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


def transaction_memo(session: AsyncSession, name: str) -> dict[Any, Any]:
    """The dict `name` of the session's current root transaction (see the module)."""
    root = session.sync_session.get_transaction()
    if root is None:
        return {}
    held = session.info.get(name)
    if held is None or held[0] is not root:
        held = session.info[name] = (root, {})
    return dict(held[1]) if session.in_nested_transaction() else held[1]
