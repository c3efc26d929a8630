"""Which handler reacts to which event type or timer kind.

Handler modules register with the decorators below; the runtime looks handlers up here
and knows nothing about carts or segments. Several handlers may react to one event type:
they run in `stage` order inside one transaction (state first, then reactions).
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Awaitable, Callable

from stormd.handlers.context import HandlerContext, TimerFired
from stormd.handlers.events import Event

EventHandler = Callable[[HandlerContext, Event], Awaitable[None]]
TimerHandler = Callable[[HandlerContext, TimerFired], Awaitable[None]]

STATE = 0  # keeps stormd's picture of customers, carts, orders
REACT = 10  # automations reacting to the new state

# The handler modules the daemon loads; a new automation adds its module here.
HANDLER_MODULES = (
    "stormd.handlers.customers",
    "stormd.handlers.products",
    "stormd.handlers.orders",
    "stormd.handlers.carts",
    "stormd.handlers.segments",
    "stormd.handlers.engagement",
    "stormd.handlers.automations",
)


@dataclass(frozen=True)
class _Registered:
    stage: int
    name: str
    fn: EventHandler


class HandlerRegistry:
    def __init__(self) -> None:
        self._events: dict[str, list[_Registered]] = defaultdict(list)
        self._timers: dict[str, TimerHandler] = {}

    def on_event(self, *types: str, stage: int = REACT) -> Callable[[EventHandler], EventHandler]:
        def register(fn: EventHandler) -> EventHandler:
            for type_ in types:
                entries = self._events[type_]
                entries.append(_Registered(stage, f"{fn.__module__}.{fn.__qualname__}", fn))
                entries.sort(key=lambda r: (r.stage, r.name))
            return fn

        return register

    def on_timer(self, kind: str) -> Callable[[TimerHandler], TimerHandler]:
        def register(fn: TimerHandler) -> TimerHandler:
            if kind in self._timers and self._timers[kind] is not fn:
                raise ValueError(f"timer kind {kind!r} already has a handler")
            self._timers[kind] = fn
            return fn

        return register

    def event_handlers(self, type_: str) -> list[EventHandler]:
        return [r.fn for r in self._events.get(type_, ())]

    def timer_handler(self, kind: str) -> TimerHandler | None:
        return self._timers.get(kind)


registry = HandlerRegistry()
on_event = registry.on_event
on_timer = registry.on_timer


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


async def dispatch_timer(ctx: HandlerContext, fired: TimerFired) -> None:
    handler = registry.timer_handler(fired.kind)
    if handler is None:
        raise LookupError(f"no handler for timer kind {fired.kind!r}")
    await handler(ctx, fired)
