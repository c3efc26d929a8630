"""Which handler reacts to which event type or timer kind.

Handler modules register with the decorators below; the runtime looks handlers up here
and knows nothing about carts or segments. Several handlers may react to one event type:
they run in `stage` order inside one transaction (state first, then reactions).
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stormd.config.settings import Settings
from stormd.handlers.kernel.context import HandlerContext, JobContext, TimerFired
from stormd.schema.wire.events import Event

EventHandler = Callable[[HandlerContext, Event], Awaitable[None]]
# Handles a run of events of one type and one store (arrival order, at most one per actor
# key) in one call: set-based work instead of a few statements per event.
BatchEventHandler = Callable[[HandlerContext, list[Event]], Awaitable[None]]
TimerHandler = Callable[[HandlerContext, TimerFired], Awaitable[None]]
# Handles many due timers of one kind and one store in one transaction (set-based work).
BatchTimerHandler = Callable[[HandlerContext, list[TimerFired]], Awaitable[None]]
# Called after a segment refresh with the customers who entered and exited it.
SegmentChangeHandler = Callable[[HandlerContext, str, list[str], list[str]], Awaitable[None]]
CronJob = Callable[[JobContext], Awaitable[None]]
ApiHandler = Callable[[JobContext, dict], Awaitable[dict]]

# Work a handler may put off to the end of a group-commit batch: called once per store
# with everything put off (in order, each once), in the batch's own transaction.
DeferredWork = Callable[[HandlerContext, list[str]], Awaitable[Any]]
_DEFERRED = "stormd.deferred"  # session.info while a batch defers: (work, store) -> items

STATE = 0  # keeps stormd's picture of customers, carts, orders
REACT = 10  # automations reacting to the new state

# The handler modules the daemon loads; a new automation adds its module here.
HANDLER_MODULES = (
    "stormd.handlers.shop.customers",
    "stormd.handlers.shop.products",
    "stormd.handlers.shop.orders",
    "stormd.handlers.carts.carts",
    "stormd.handlers.scoring.segments",
    "stormd.handlers.scoring.nightly",
    "stormd.handlers.shop.engagement",
    "stormd.handlers.automations.triggers",
    "stormd.handlers.campaigns.campaigns",
    "stormd.handlers.campaigns.service",
    "stormd.handlers.reporting.kpis",
)


@dataclass(frozen=True)
class _Registered:
    stage: int
    name: str
    fn: EventHandler
    batch: BatchEventHandler | None = None  # the set-based form, when there is one


class HandlerRegistry:
    def __init__(self) -> None:
        self._events: dict[str, list[_Registered]] = defaultdict(list)
        self._timers: dict[str, TimerHandler] = {}
        self._timer_batches: dict[str, BatchTimerHandler] = {}
        self._segment_changes: list[SegmentChangeHandler] = []
        self._crons: dict[str, tuple[Callable[[Settings], str], CronJob]] = {}
        self._apis: dict[str, ApiHandler] = {}

    def on_event(self, *types: str, stage: int = REACT) -> Callable[[EventHandler], EventHandler]:
        def register(fn: EventHandler) -> EventHandler:
            for type_ in types:
                entries = self._events[type_]
                entries.append(_Registered(stage, f"{fn.__module__}.{fn.__qualname__}", fn))
                entries.sort(key=lambda r: (r.stage, r.name))
            return fn

        return register

    def on_event_batch(
        self, *types: str, stage: int = REACT
    ) -> Callable[[BatchEventHandler], BatchEventHandler]:
        """Like on_event, but the handler takes a list of events of one type and one store,
        in arrival order, no two of one actor key; `dispatch_event` still works, handing it
        a list of one."""

        def register(fn: BatchEventHandler) -> BatchEventHandler:
            async def one(ctx: HandlerContext, event: Event) -> None:
                await fn(ctx, [event])

            name = f"{fn.__module__}.{fn.__qualname__}"
            for type_ in types:
                entries = self._events[type_]
                entries.append(_Registered(stage, name, one, fn))
                entries.sort(key=lambda r: (r.stage, r.name))
            return fn

        return register

    def batched(self, type_: str) -> bool:
        """Whether some handler of this event type has a set-based form."""
        return any(r.batch is not None for r in self._events.get(type_, ()))

    def on_timer(self, kind: str) -> Callable[[TimerHandler], TimerHandler]:
        def register(fn: TimerHandler) -> TimerHandler:
            if kind in self._timers and self._timers[kind] is not fn:
                raise ValueError(f"timer kind {kind!r} already has a handler")
            self._timers[kind] = fn
            return fn

        return register

    def on_timer_batch(self, kind: str) -> Callable[[BatchTimerHandler], BatchTimerHandler]:
        """Like on_timer, but the handler takes a list of due timers (one store, one kind);
        `dispatch_timer` still works, handing it a list of one."""

        def register(fn: BatchTimerHandler) -> BatchTimerHandler:
            async def one(ctx: HandlerContext, fired: TimerFired) -> None:
                await fn(ctx, [fired])

            one.__qualname__ = f"{fn.__qualname__}[one]"
            self.on_timer(kind)(one)
            self._timer_batches[kind] = fn
            return fn

        return register

    def timer_batch_handler(self, kind: str) -> BatchTimerHandler | None:
        return self._timer_batches.get(kind)

    def timer_batch_kinds(self) -> list[str]:
        return sorted(self._timer_batches)

    def on_segment_change(self, fn: SegmentChangeHandler) -> SegmentChangeHandler:
        if fn not in self._segment_changes:
            self._segment_changes.append(fn)
        return fn

    def on_cron(
        self, name: str, schedule: Callable[[Settings], str]
    ) -> Callable[[CronJob], CronJob]:
        """Run the job on the cron schedule that `schedule(settings)` gives (daemon timezone)."""

        def register(fn: CronJob) -> CronJob:
            self._crons[name] = (schedule, fn)
            return fn

        return register

    def on_api(self, name: str) -> Callable[[ApiHandler], ApiHandler]:
        """Answer request/reply on `<prefix>.api.<name>` (JSON in, JSON out)."""

        def register(fn: ApiHandler) -> ApiHandler:
            self._apis[name] = fn
            return fn

        return register

    def segment_change_handlers(self) -> list[SegmentChangeHandler]:
        return list(self._segment_changes)

    def cron_jobs(self) -> dict[str, tuple[Callable[[Settings], str], CronJob]]:
        return dict(self._crons)

    def api_handlers(self) -> dict[str, ApiHandler]:
        return dict(self._apis)

    def event_handlers(self, type_: str) -> list[EventHandler]:
        return [r.fn for r in self._events.get(type_, ())]

    def timer_handler(self, kind: str) -> TimerHandler | None:
        return self._timers.get(kind)


registry = HandlerRegistry()
on_event = registry.on_event
on_event_batch = registry.on_event_batch
on_timer = registry.on_timer
on_timer_batch = registry.on_timer_batch
on_segment_change = registry.on_segment_change
on_cron = registry.on_cron
on_api = registry.on_api


def load_handlers() -> HandlerRegistry:
    """Import every handler module (which registers it) and return the registry."""
    for name in HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module
                raise
    return registry


async def dispatch_event(ctx: HandlerContext, event: Event) -> None:
    """Run every handler of the event's type, in stage order, in the caller's transaction."""
    for handler in registry.event_handlers(event.type):
        await handler(ctx, event)


async def dispatch_events(ctx: HandlerContext, events: list[Event]) -> None:
    """Run every handler of a run of same-type events of `ctx.store_id` (no two of one actor
    key) in stage order: a batch handler gets the whole run in one call, the others each
    event in turn."""
    if not events:
        return
    for entry in registry._events.get(events[0].type, ()):
        if entry.batch is not None:
            await entry.batch(ctx, events)
        else:
            for event in events:
                await entry.fn(ctx, event)


def start_deferring(session: Any) -> None:
    """From now on in this session's transaction, `defer` queues work instead of running it
    (the group commit's fast path: re-scoring is queued once a batch, not once a run of
    each type)."""
    session.info[_DEFERRED] = {}


def defer(ctx: HandlerContext, work: DeferredWork, items: Iterable[str]) -> bool:
    """Queue `items` for `work(ctx of this store, items)` at the end of the batch; False
    when the transaction does not defer (a single dispatch, a timer, a careful rerun's
    savepoint): then the caller does the work now."""
    pending = ctx.session.info.get(_DEFERRED)
    if pending is None or ctx.session.in_nested_transaction():
        return False
    pending.setdefault((work, ctx.store_id), {}).update(dict.fromkeys(items))
    return True


async def run_deferred(session: Any, context: Callable[[str], HandlerContext]) -> None:
    """Do the work put off in this transaction (once per work and store), and stop
    deferring; `context(store_id)` makes each call's context."""
    pending = session.info.pop(_DEFERRED, None) or {}
    for (work, store_id), items in pending.items():
        await work(context(store_id), list(items))


async def dispatch_segment_change(
    ctx: HandlerContext, segment: str, entered: list[str], exited: list[str]
) -> None:
    """Tell every segment-change handler (segment-entry automations) who moved."""
    for handler in registry.segment_change_handlers():
        await handler(ctx, segment, entered, exited)


async def dispatch_timer(ctx: HandlerContext, fired: TimerFired) -> None:
    handler = registry.timer_handler(fired.kind)
    if handler is None:
        raise LookupError(f"no handler for timer kind {fired.kind!r}")
    await handler(ctx, fired)


async def dispatch_timers(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """Run many due timers of `ctx.store_id` in the caller's transaction: each kind with a
    batch handler gets all its timers in one call, the others one by one (in list order)."""
    by_kind: dict[str, list[TimerFired]] = defaultdict(list)
    for f in fired:
        by_kind[f.kind].append(f)
    for kind, group in by_kind.items():
        batch = registry.timer_batch_handler(kind)
        if batch is not None:
            await batch(ctx, group)
        else:
            for f in group:
                await dispatch_timer(ctx, f)
