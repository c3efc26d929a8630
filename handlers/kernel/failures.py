"""What happens when a reaction fails: the rule, and the record it leaves.

A reaction (handlers/kernel/registry.py) acts on a state change that is already made. Its
failure never undoes that change. The runtime runs it again in a SAVEPOINT of its own and,
if it fails there too:

- a failure of the database itself (`retried`: locked past busy_timeout, a lost
  connection, a serialization conflict or deadlock) says nothing about the reaction: the
  whole event (or timer) fails and is retried, as any event is;
- any other error (a template that cannot render, a bad configuration, a bug) would fail
  again the same way: the reaction is *dropped* for that event or timer, and recorded as a
  FAILED automation execution (`stormd campaigns automation-log --status FAILED`), counted
  in `stormd_reaction_failures_total{reaction}` and logged. The event counts as processed.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from stormd.handlers.kernel.context import HandlerContext, TimerFired
from stormd.schema.db.inlist import in_values
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.metrics import REACTION_FAILURES
from stormd.schema.wire.events import Event

log = logging.getLogger("stormd.reactions")
_RETRIED_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock (PostgreSQL)
# Classes of PostgreSQL errors that are the server's state, not the statement's: connection,
# insufficient resources, operator intervention.
_RETRIED_CLASSES = ("08", "53", "57")
# What SQLite says (as OperationalError, which it also uses for statements it refuses) when
# the database, not the statement, is at fault.
_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open", "readonly", "timeout")
_KEY = 200  # AutomationExecution.idempotency_key


def retried(exc: BaseException) -> bool:
    """Whether a failure is the database's, not the reaction's: retried with the event.
    (A statement the database refuses, e.g. SQLite's "Expression tree is too large", is
    the reaction's.)"""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str):
            return state in _RETRIED_SQLSTATES or state[:2] in _RETRIED_CLASSES
        if isinstance(exc, InterfaceError):
            return True
        if isinstance(exc, OperationalError):
            text = str(exc.orig).lower()
            return any(word in text for word in _SQLITE_TRANSIENT)
        return False
    return isinstance(exc, (OSError, TimeoutError))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _key(*parts: str) -> str:
    key = ":".join(parts)
    if len(key) <= _KEY:
        return key
    return f"{key[:150]}~{hashlib.sha256(key.encode()).hexdigest()[:48]}"


async def record_event_failure(ctx: HandlerContext, label: str, events: list[Event],
                               exc: BaseException) -> None:
    """The reaction `label` failed on these events (their state is kept): one FAILED
    execution per event, the metric, a log line."""
    now = ctx.now()
    reason = _reason(exc)
    rows: list[dict[str, Any]] = [{
        "store_id": ctx.store_id, "workflow_id": None, "trigger": label[:64],
        "customer_id": getattr(e.data, "customer_id", None), "subject_id": e.id[:128],
        "idempotency_key": _key("reaction", label, ctx.store_id, e.id), "status": "FAILED",
        "step": 0, "context": {"event": e.type, "eventId": e.id, "reaction": label},
        "error": reason, "created_at": now, "updated_at": now, "completed_at": now,
    } for e in events]
    await ctx.session.execute(insert_for(ctx.session, AutomationExecution).on_conflict_do_nothing(
        index_elements=["idempotency_key"]), rows)
    REACTION_FAILURES.labels(label).inc(len(events))
    for e in events:
        log.warning("reaction %s failed on %s %s of store %s (%s); the state is kept and the "
                    "reaction dropped", label, e.type, e.id, ctx.store_id, reason)


async def record_timer_failure(ctx: HandlerContext, label: str, fired: list[TimerFired],
                               exc: BaseException) -> None:
    """The reaction `label` failed on these timers: the execution each one carries (its
    payload's execution id) turns FAILED, or a FAILED execution is added for it."""
    now = ctx.now()
    reason = _reason(exc)
    owned: list[int] = []
    loose: list[TimerFired] = []
    for f in fired:
        execution = f.payload.get("executionId", f.payload.get("execution"))
        if isinstance(execution, int) or (isinstance(execution, str) and execution.isdigit()):
            owned.append(int(execution))
        else:
            loose.append(f)
    if owned:
        x = AutomationExecution
        await ctx.session.execute(
            update(x).where(x.store_id == ctx.store_id, in_values(x.id, owned))
            .values(status="FAILED", error=reason, updated_at=now, completed_at=now)
            .execution_options(synchronize_session=False))
    if loose:
        await ctx.session.execute(
            insert_for(ctx.session, AutomationExecution).on_conflict_do_nothing(
                index_elements=["idempotency_key"]), [{
                    "store_id": ctx.store_id, "workflow_id": None, "trigger": label[:64],
                    "customer_id": f.payload.get("customerId"), "subject_id": f.key[:128],
                    "idempotency_key": _key("reaction", label, ctx.store_id, f.key,
                                            f.due_at.isoformat()),
                    "status": "FAILED", "step": 0,
                    "context": {"timer": f.kind, "key": f.key, "reaction": label},
                    "error": reason, "created_at": now, "updated_at": now, "completed_at": now,
                } for f in loose])
    REACTION_FAILURES.labels(label).inc(len(fired))
    for f in fired:
        log.warning("reaction %s failed on timer %s (%s) of store %s (%s); the timer is done "
                    "and the reaction dropped", label, f.key, f.kind, ctx.store_id, reason)
