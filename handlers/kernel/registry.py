"""Which handler reacts to which event type, timer kind, segment change, cron schedule and
request.

A registry is built explicitly (handlers/__init__.py `build_registry` lists every domain's
handlers) and handed to the one `Daemon` that uses it; nothing registers itself on import.
Several handlers may react to one event type: they run in the order they were added,
inside one transaction (the state first, then the reactions to it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
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
# Called after a segment refresh with the customers who entered and exited it, and those
# of the entrants who entered by a backfill (a first fill, changed criteria, an import).
SegmentChangeHandler = Callable[[HandlerContext, str, list[str], list[str], Sequence[str]],
                                Awaitable[None]]
CronJob = Callable[[JobContext], Awaitable[None]]
CronSchedule = Callable[[Settings], str]  # the job's cron expression, from the settings
RequestHandler = Callable[[JobContext, dict], Awaitable[dict]]


@dataclass(frozen=True)
class _Reaction:
    name: str
    batch: BatchEventHandler  # every reaction runs on a list (a single event: a list of one)
    set_based: bool  # written for whole runs (else it is called once per event)


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class HandlerRegistry:
    def __init__(self) -> None:
        self._events: dict[str, list[_Reaction]] = defaultdict(list)
        self._timers: dict[str, BatchTimerHandler] = {}
        self._set_based_timers: set[str] = set()
        self._segment_changes: list[SegmentChangeHandler] = []
        self._crons: dict[str, tuple[CronSchedule, CronJob]] = {}
        self._requests: dict[str, RequestHandler] = {}

    # --- building ----------------------------------------------------------------------

    def on_event(self, *types: str) -> Callable[[EventHandler], EventHandler]:
        """Add a handler called once per event of these types (after those added before)."""

        def add(fn: EventHandler) -> EventHandler:
            async def each(ctx: HandlerContext, events: list[Event]) -> None:
                for event in events:
                    await fn(ctx, event)

            for type_ in types:
                self._events[type_].append(_Reaction(_name(fn), each, False))
            return fn

        return add

    def on_event_batch(self, *types: str) -> Callable[[BatchEventHandler], BatchEventHandler]:
        """Add a set-based handler: it takes a run of events of one type and one store, in
        arrival order, no two of one actor key."""

        def add(fn: BatchEventHandler) -> BatchEventHandler:
            for type_ in types:
                self._events[type_].append(_Reaction(_name(fn), fn, True))
            return fn

        return add

    def on_timer(self, kind: str) -> Callable[[TimerHandler], TimerHandler]:
        """The handler of the `kind` timers, called once per due timer."""

        def add(fn: TimerHandler) -> TimerHandler:
            async def each(ctx: HandlerContext, fired: list[TimerFired]) -> None:
                for f in fired:
                    await fn(ctx, f)

            each.__qualname__ = f"{fn.__qualname__}[each]"
            self._add_timer(kind, each, set_based=False)
            return fn

        return add

    def on_timer_batch(self, kind: str) -> Callable[[BatchTimerHandler], BatchTimerHandler]:
        """The set-based handler of the `kind` timers: many due timers of one store."""

        def add(fn: BatchTimerHandler) -> BatchTimerHandler:
            self._add_timer(kind, fn, set_based=True)
            return fn

        return add

    def _add_timer(self, kind: str, fn: BatchTimerHandler, *, set_based: bool) -> None:
        if kind in self._timers:
            raise ValueError(f"timer kind {kind!r} already has a handler")
        self._timers[kind] = fn
        if set_based:
            self._set_based_timers.add(kind)

    def on_segment_change(self, fn: SegmentChangeHandler) -> SegmentChangeHandler:
        if fn not in self._segment_changes:
            self._segment_changes.append(fn)
        return fn

    def on_cron(self, name: str, schedule: CronSchedule) -> Callable[[CronJob], CronJob]:
        """Run the job on the cron schedule that `schedule(settings)` gives."""

        def add(fn: CronJob) -> CronJob:
            self._crons[name] = (schedule, fn)
            return fn

        return add

    def on_request(self, name: str) -> Callable[[RequestHandler], RequestHandler]:
        """Answer request/reply `name` (JSON object in, JSON object out)."""

        def add(fn: RequestHandler) -> RequestHandler:
            self._requests[name] = fn
            return fn

        return add

    def wrapped(self, wrap: Callable[[str, Callable[..., Awaitable[None]]],
                                     Callable[..., Awaitable[None]]]) -> HandlerRegistry:
        """A copy whose event reactions and timer handlers are `wrap(name, handler)`
        (instrumentation: the ingest benchmark times each handler this way)."""
        copy = HandlerRegistry()
        for type_, reactions in self._events.items():
            copy._events[type_] = [_Reaction(r.name, wrap(r.name, r.batch), r.set_based)
                                   for r in reactions]
        copy._timers = {kind: wrap(f"timer {kind}", fn) for kind, fn in self._timers.items()}
        copy._set_based_timers = set(self._set_based_timers)
        copy._segment_changes = list(self._segment_changes)
        copy._crons = dict(self._crons)
        copy._requests = dict(self._requests)
        return copy

    # --- reading -----------------------------------------------------------------------

    def event_types(self) -> list[str]:
        return [t for t, reactions in self._events.items() if reactions]

    def reactions(self, type_: str) -> list[str]:
        """The handlers of an event type, by name, in the order they run."""
        return [r.name for r in self._events.get(type_, ())]

    def batched(self, type_: str) -> bool:
        """Whether some handler of this event type is set-based (a run in one call)."""
        return any(r.set_based for r in self._events.get(type_, ()))

    def timer_kinds(self) -> list[str]:
        return sorted(self._timers)

    def set_based_timer_kinds(self) -> list[str]:
        """Timer kinds whose handler takes many due timers at once (claimed in thousands)."""
        return sorted(self._set_based_timers)

    def timer_handler(self, kind: str) -> BatchTimerHandler | None:
        return self._timers.get(kind)

    def cron_jobs(self) -> dict[str, tuple[CronSchedule, CronJob]]:
        return dict(self._crons)

    def request_handlers(self) -> dict[str, RequestHandler]:
        return dict(self._requests)

    # --- dispatching (in the caller's transaction) -------------------------------------

    async def dispatch_event(self, ctx: HandlerContext, event: Event) -> None:
        """Run every handler of the event's type, in order."""
        await self.dispatch_events(ctx, [event])

    async def dispatch_events(self, ctx: HandlerContext, events: list[Event]) -> None:
        """Run every handler of a run of same-type events of `ctx.store_id` (no two of one
        actor key), in order: a set-based one gets the whole run in one call, the others
        each event in turn."""
        if events:
            for reaction in self._events.get(events[0].type, ()):
                await reaction.batch(ctx, events)

    async def dispatch_timers(self, ctx: HandlerContext, fired: list[TimerFired]) -> None:
        """Run due timers of `ctx.store_id`: each kind's handler gets all its timers."""
        by_kind: dict[str, list[TimerFired]] = defaultdict(list)
        for f in fired:
            by_kind[f.kind].append(f)
        for kind, group in by_kind.items():
            handler = self._timers.get(kind)
            if handler is None:
                raise LookupError(f"no handler for timer kind {kind!r}")
            await handler(ctx, group)

    async def dispatch_segment_change(self, ctx: HandlerContext, segment: str,
                                      entered: list[str], exited: list[str],
                                      backfill: Sequence[str] = ()) -> None:
        """Tell every segment-change handler (segment-entry automations) who moved, and
        which of the entrants entered by a backfill (each handler decides whether those
        count: docs/segments.md, "Reactions, once per entry, and the backfill")."""
        for handler in self._segment_changes:
            await handler(ctx, segment, entered, exited, backfill)

    async def run_deferred(self, ctx: HandlerContext) -> None:
        """Do the work handlers put off in `ctx`'s transaction (once per work and store),
        and stop deferring."""
        for work, store_id, items in ctx.effects.take_deferred():
            await work(ctx.for_store(store_id), items)
