"""What the handlers of one transaction asked of the runtime besides their rows.

Handlers never commit, publish or wake anything: they write rows in the transaction they
are given and note here what the runtime must do once it commits (wake the timer loop for
a timer due soon, the relay for events out, the re-scoring loop for queued customers), the
work they put off to the end of a group-commit batch, and the facts the transaction has
learned (a store's row is there, its segments, its RFM bounds) so later handlers of the
same transaction need not ask again.

One `Effects` belongs to one transaction. A SAVEPOINT gets a `child()`: what it notes
reaches the parent only through `merge()` after the savepoint committed, and what it
learns is forgotten with it (a rolled-back savepoint must not leave a cached "the store's
row exists" behind).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stormd.handlers.kernel.context import HandlerContext

# Work a handler may put off to the end of a group-commit batch: called once per store with
# everything put off (in order, each once), in the batch's own transaction.
DeferredWork = Callable[["HandlerContext", list[str]], Awaitable[Any]]


@dataclass
class Effects:
    earliest_timer: datetime | None = None  # the nearest due time scheduled
    events_out: int = 0  # events staged in the outbox
    rescores_queued: int = 0  # customers queued for the re-scoring loop
    # (work, store) -> items, while the transaction defers (a group commit's fast path);
    # None: work is done at once.
    deferred: dict[tuple[DeferredWork, str], dict[str, None]] | None = None
    memo: dict[str, dict[Any, Any]] = field(default_factory=dict)

    @classmethod
    def deferring(cls) -> Effects:
        """For a batch transaction whose handlers' deferrable work runs once at its end."""
        return cls(deferred={})

    def timers_scheduled(self, due: datetime) -> None:
        if self.earliest_timer is None or due < self.earliest_timer:
            self.earliest_timer = due

    def defer(self, work: DeferredWork, store_id: str, items: Iterable[str]) -> bool:
        """Queue `items` for `work` at the end of the batch; False when this transaction
        does not defer (the caller then does the work now)."""
        if self.deferred is None:
            return False
        self.deferred.setdefault((work, store_id), {}).update(dict.fromkeys(items))
        return True

    def take_deferred(self) -> list[tuple[DeferredWork, str, list[str]]]:
        """The work put off so far, and stop deferring."""
        pending, self.deferred = self.deferred or {}, None
        return [(work, store_id, list(items)) for (work, store_id), items in pending.items()]

    def remembered(self, name: str) -> dict[Any, Any]:
        """The dict `name` of facts this transaction has learned (see the module)."""
        return self.memo.setdefault(name, {})

    def child(self) -> Effects:
        """For a SAVEPOINT: no deferring (its work is done inside it), a copy of what the
        transaction knows."""
        return Effects(memo={name: dict(facts) for name, facts in self.memo.items()})

    def merge(self, child: Effects) -> None:
        """Take over what a committed savepoint noted (not what it learned)."""
        if child.earliest_timer is not None:
            self.timers_scheduled(child.earliest_timer)
        self.events_out += child.events_out
        self.rescores_queued += child.rescores_queued
