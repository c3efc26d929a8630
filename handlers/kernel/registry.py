"""Which handler reacts to which event type, timer kind, segment change and cron schedule.

A registry is built explicitly (handlers/wiring.py `build_registry` lists every domain's
handlers) and handed to the one `Daemon` that uses it; nothing registers itself on import.
Several handlers may react to one event type: they run in the order they were added,
inside one transaction, the state handlers first, then the reactions to it.

A *state handler* keeps the store's picture (a customer, a cart, an order): if it fails,
the event fails and is retried. A *reaction* acts on that state (a welcome message, a
re-scoring, a post-purchase upsell): its failure must never undo the state change that
caused it. The registry raises `ReactionFailed` around a reaction's error so the runtime
can tell the two apart; the runtime then keeps the state and runs each reaction in a
SAVEPOINT of its own (daemon/runtime/batching.py, daemon/runtime/scheduler.py). Timers
work the same way: a kind has at most one state handler and any number of reactions.
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


@dataclass(frozen=True)
class _Reaction:
    name: str
    batch: BatchEventHandler  # every reaction runs on a list (a single event: a list of one)
    set_based: bool  # written for whole runs (else it is called once per event)
    state: bool = True  # a state handler; False: a reaction to the state
    label: str = ""  # a reaction's short name: metric label, automation-log trigger


@dataclass(frozen=True)
class TimerReaction:
    label: str
    handler: BatchTimerHandler


class ReactionFailed(Exception):
    """A reaction raised (`label` names it; the error is the cause). The runtime keeps the
    state and records the failure instead of failing the event."""

    def __init__(self, label: str, exc: BaseException):
        super().__init__(f"reaction {label} failed: {type(exc).__name__}: {exc}")
        self.label = label
        self.exc = exc


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _label(fn: Callable[..., Any], given: str | None) -> str:
    return given or fn.__name__


class HandlerRegistry:
    def __init__(self) -> None:
        self._events: dict[str, list[_Reaction]] = defaultdict(list)
        self._timers: dict[str, BatchTimerHandler] = {}
        self._timer_reactions: dict[str, list[TimerReaction]] = defaultdict(list)
        self._set_based_timers: set[str] = set()
        self._segment_changes: list[SegmentChangeHandler] = []
        self._crons: dict[str, tuple[CronSchedule, CronJob]] = {}

    # --- building ----------------------------------------------------------------------

    def on_event(self, *types: str) -> Callable[[EventHandler], EventHandler]:
        """Add a handler called once per event of these types (after those added before)."""

        def add(fn: EventHandler) -> EventHandler:
            async def each(ctx: HandlerContext, events: list[Event]) -> None:
                for event in events:
                    await fn(ctx, event)

            for type_ in types:
                self._add_event(type_, _Reaction(_name(fn), each, False))
            return fn

        return add

    def on_event_batch(self, *types: str) -> Callable[[BatchEventHandler], BatchEventHandler]:
        """Add a set-based handler: it takes a run of events of one type and one store, in
        arrival order, no two of one actor key."""

        def add(fn: BatchEventHandler) -> BatchEventHandler:
            for type_ in types:
                self._add_event(type_, _Reaction(_name(fn), fn, True))
            return fn

        return add

    def react_to(self, *types: str, name: str | None = None
                 ) -> Callable[[EventHandler], EventHandler]:
        """Add a reaction called once per event of these types, after their state
        handlers; `name` labels its failures (metric, log, automation log)."""

        def add(fn: EventHandler) -> EventHandler:
            async def each(ctx: HandlerContext, events: list[Event]) -> None:
                for event in events:
                    await fn(ctx, event)

            for type_ in types:
                self._add_event(type_, _Reaction(_name(fn), each, False, False,
                                                 _label(fn, name)))
            return fn

        return add

    def react_to_batch(self, *types: str, name: str | None = None
                       ) -> Callable[[BatchEventHandler], BatchEventHandler]:
        """Add a set-based reaction (a run of events of one type and one store)."""

        def add(fn: BatchEventHandler) -> BatchEventHandler:
            for type_ in types:
                self._add_event(type_, _Reaction(_name(fn), fn, True, False, _label(fn, name)))
            return fn

        return add

    def _add_event(self, type_: str, reaction: _Reaction) -> None:
        added = self._events[type_]
        if reaction.state and any(not r.state for r in added):
            raise ValueError(f"{type_}: state handler {reaction.name} added after a reaction; "
                             "the state handlers of a type come first")
        added.append(reaction)

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

    def react_to_timer_batch(self, kind: str, name: str | None = None
                             ) -> Callable[[BatchTimerHandler], BatchTimerHandler]:
        """Add a set-based reaction to the `kind` timers, run after the kind's state
        handler (if it has one): its failure never undoes what that handler did."""

        def add(fn: BatchTimerHandler) -> BatchTimerHandler:
            if kind in self._timers and kind not in self._set_based_timers:
                raise ValueError(f"timer kind {kind!r}: a set-based reaction needs a "
                                 "set-based state handler")
            self._timer_reactions[kind].append(TimerReaction(_label(fn, name), fn))
            self._set_based_timers.add(kind)
            return fn

        return add

    def _add_timer(self, kind: str, fn: BatchTimerHandler, *, set_based: bool) -> None:
        if kind in self._timers:
            raise ValueError(f"timer kind {kind!r} already has a handler")
        if self._timer_reactions.get(kind) and not set_based:
            raise ValueError(f"timer kind {kind!r} has set-based reactions: its state "
                             "handler must be set-based too")
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

    def wrapped(self, wrap: Callable[[str, Callable[..., Awaitable[None]]],
                                     Callable[..., Awaitable[None]]]) -> HandlerRegistry:
        """A copy whose event reactions and timer handlers are `wrap(name, handler)`
        (instrumentation: the ingest benchmark times each handler this way)."""
        copy = HandlerRegistry()
        for type_, reactions in self._events.items():
            copy._events[type_] = [_Reaction(r.name, wrap(r.name, r.batch), r.set_based,
                                             r.state, r.label) for r in reactions]
        copy._timers = {kind: wrap(f"timer {kind}", fn) for kind, fn in self._timers.items()}
        copy._timer_reactions = defaultdict(list, {
            kind: [TimerReaction(r.label, wrap(f"timer {kind} {r.label}", r.handler))
                   for r in reactions] for kind, reactions in self._timer_reactions.items()})
        copy._set_based_timers = set(self._set_based_timers)
        copy._segment_changes = list(self._segment_changes)
        copy._crons = dict(self._crons)
        return copy

    # --- reading -----------------------------------------------------------------------

    def event_types(self) -> list[str]:
        return [t for t, reactions in self._events.items() if reactions]

    def reactions(self, type_: str) -> list[str]:
        """The handlers of an event type, by name, in the order they run."""
        return [r.name for r in self._events.get(type_, ())]

    def reaction_labels(self) -> list[str]:
        """Every reaction's label (events and timers), each once: the bounded label set of
        the reaction-failure metric."""
        labels = [r.label for rs in self._events.values() for r in rs if not r.state]
        labels += [r.label for rs in self._timer_reactions.values() for r in rs]
        return sorted(set(labels))

    def state_handlers(self, type_: str) -> list[_Reaction]:
        return [r for r in self._events.get(type_, ()) if r.state]

    def event_reactions(self, type_: str) -> list[_Reaction]:
        return [r for r in self._events.get(type_, ()) if not r.state]

    def timer_reactions(self, kind: str) -> list[TimerReaction]:
        return list(self._timer_reactions.get(kind, ()))

    def batched(self, type_: str) -> bool:
        """Whether some handler of this event type is set-based (a run in one call)."""
        return any(r.set_based for r in self._events.get(type_, ()))

    def timer_kinds(self) -> list[str]:
        return sorted(set(self._timers) | {k for k, rs in self._timer_reactions.items() if rs})

    def set_based_timer_kinds(self) -> list[str]:
        """Timer kinds whose handler takes many due timers at once (claimed in thousands)."""
        return sorted(self._set_based_timers)

    def timer_handler(self, kind: str) -> BatchTimerHandler | None:
        return self._timers.get(kind)

    def cron_jobs(self) -> dict[str, tuple[CronSchedule, CronJob]]:
        return dict(self._crons)

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
                if reaction.state:
                    await reaction.batch(ctx, events)
                    continue
                try:
                    await reaction.batch(ctx, events)
                except Exception as exc:
                    raise ReactionFailed(reaction.label, exc) from exc

    async def dispatch_state(self, ctx: HandlerContext, events: list[Event]) -> None:
        """Run only the state handlers of a run of same-type events (the careful rerun
        then runs each reaction in a SAVEPOINT of its own)."""
        if events:
            for reaction in self.state_handlers(events[0].type):
                await reaction.batch(ctx, events)

    async def dispatch_timers(self, ctx: HandlerContext, fired: list[TimerFired]) -> None:
        """Run due timers of `ctx.store_id`: each kind's state handler, then its reactions,
        gets all its timers (a reaction's error is raised as `ReactionFailed`)."""
        for kind, group in self._by_kind(fired).items():
            await self.dispatch_timer_state(ctx, kind, group)
            for reaction in self._timer_reactions.get(kind, ()):
                try:
                    await reaction.handler(ctx, group)
                except Exception as exc:
                    raise ReactionFailed(reaction.label, exc) from exc

    async def dispatch_timer_state(self, ctx: HandlerContext, kind: str,
                                   fired: list[TimerFired]) -> None:
        """Run the `kind` timers' state handler alone (none: nothing to do)."""
        handler = self._timers.get(kind)
        if handler is None:
            if not self._timer_reactions.get(kind):
                raise LookupError(f"no handler for timer kind {kind!r}")
            return
        await handler(ctx, fired)

    @staticmethod
    def _by_kind(fired: list[TimerFired]) -> dict[str, list[TimerFired]]:
        by_kind: dict[str, list[TimerFired]] = defaultdict(list)
        for f in fired:
            by_kind[f.kind].append(f)
        return by_kind

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
