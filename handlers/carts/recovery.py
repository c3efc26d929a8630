"""The abandoned-cart recovery workflow: `carts.steps`, suppression, deferral, attribution.

Each abandonment gets a CartAbandonmentEvent and joins the customer's AutomationExecution
for the day (idempotency key = customer + trigger + local date: a race or a
redelivery never runs it twice). Steps run on the cart's timer (`cart:<id>`), `after`
counting from the previous step. For each step, in order:

1. the same step (template) reached this customer within `limits.same_trigger_cooldown`:
   skipped, the workflow moves on;
2. the step's channel is refused or has no address: the next consenting channel is used
   (eligibility.fallback_order), or the step is skipped;
3. quiet hours / Friday prayer, or the daily cap already reached: the step is *deferred*
   to the next allowed moment (the timer is rescheduled), never dropped;
4. a discount step issues a unique single-use code, unless the customer had another offer
   within `limits.offer_cooldown` (then the step goes without a discount);
5. the message is queued (priority = cart value, so higher-value carts go first when
   sends are throttled) with idempotency key customer + trigger + date + step.

An update, clear or order cancels what is pending (the timer row is deleted); an order for
the cart, or by the customer within `carts.attribution_window` of a reminder, marks the
abandonment RECOVERED with the order and its revenue.

Every abandonment is recorded (handlers/carts/carts.py `detect_abandonment`), reachable
customer or not. One whose customer was not known yet, or could not be reached, WAITS;
when that customer becomes known or reachable (`customer.upserted`, an opt-in), its
recovery starts at the step the flow has reached by then, the later steps at their usual
intervals, as long as the flow would still be running (`abandoned_at` plus the later of the
last step's time and `carts.attribution_window`); after that it ENDS unreminded.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import bindparam, or_, select, update

from stormd.config.settings import CartStep
from stormd.handlers.kernel.context import HandlerContext, TimerFired
from stormd.handlers.outreach.discounts import CodeRequest, codes_redeemed_by, issue_codes
from stormd.handlers.outreach.templates import (
    render_template,
    system_sms_fit,
    system_sms_limit,
    system_whatsapp_fields,
)
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_messages
from stormd.plugins.policy.eligibility import (
    Reach,
    load_reach,
    recent_offer_holders,
    recently_triggered,
    sent_today,
)
from stormd.plugins.policy.send_time import local_day_bounds, send_window
from stormd.schema.db.bulk import insert_returning
from stormd.schema.db.inlist import in_param, in_values
from stormd.schema.db.prepared import update_by_key
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent, CartItem
from stormd.schema.shop.products import Product
from stormd.schema.shop.stores import Store
from stormd.schema.wire.events import Event, OrderCreated

TRIGGER = "abandoned_cart"
REMIND_TIMER = "cart.remind"
RUNNING = ("PENDING", "RUNNING", "WAITING")
CHUNK = 5000


def without_cyclic_gc(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A timer-batch handler run with the cyclic GC paused, young cycles collected once
    after: thousands of carts allocate millions of short-lived rows and dicts, and the
    automatic collector (thousands of passes a batch) cost ~15 % of the batch's CPU."""
    @functools.wraps(handler)
    async def run(*args: Any) -> None:
        if not gc.isenabled():  # nested, or paused by someone else: leave it as it is
            return await handler(*args)
        gc.disable()
        try:
            return await handler(*args)
        finally:
            gc.enable()
            gc.collect(1)

    return run


def _key(cart_id: str) -> str:
    return f"cart:{cart_id}"


def _priority(value: Decimal) -> int:
    return max(0, min(int(value), 2**31 - 1))


@dataclass(frozen=True)
class Task:
    """One abandonment waiting for its step `step` (an index into carts.steps)."""

    abandonment_id: int
    execution_id: int
    cart_id: str
    customer_id: str
    value: Decimal
    step: int
    bucket: str  # local date of the abandonment: the idempotency date bucket


def execution_key(store_id: str, customer_id: str, bucket: str) -> str:
    return f"{TRIGGER}:{store_id}:{customer_id}:{bucket}"


def message_key(task: Task, store_id: str) -> str:
    return f"{execution_key(store_id, task.customer_id, task.bucket)}:step{task.step + 1}"


# --- starting and stopping -----------------------------------------------------------------

# Abandonments not started yet: PENDING (its customer can be reminded, the recovery
# reaction starts it), WAITING (its customer is not known, or not reachable, yet).
NOT_STARTED = ("PENDING", "WAITING")
_REACH = "stormd.cart_reach"  # what detect_abandonment learned of the customers
_PENDING = "stormd.cart_pending"  # (store, cart) -> Abandoned it just recorded PENDING


@dataclass(frozen=True)
class Abandoned:
    """A recorded abandonment, as starting its recovery needs it."""

    id: int
    cart_id: str
    customer_id: str | None
    cart_value: Decimal


async def record_abandonments(ctx: HandlerContext, carts: list[tuple[Any, str]]) -> None:
    """Record an abandonment of each cart (rows with cart_id, customer_id and total), with
    its status (PENDING or WAITING); the PENDING ones are remembered for the recovery
    reaction of the same transaction."""
    now = ctx.now()
    ids = await _insert_returning(ctx, CartAbandonmentEvent, CartAbandonmentEvent.cart_id, [
        {"store_id": ctx.store_id, "cart_id": c.cart_id, "customer_id": c.customer_id,
         "cart_value": c.total, "abandoned_at": now, "status": status, "next_step": 0,
         "recovery_attempts": 0, "last_reminder_at": None, "recovered_at": None,
         "order_id": None, "recovered_revenue": None}
        for c, status in carts
    ])
    pending = ctx.remembered(_PENDING)
    for c, status in carts:
        if status == "PENDING":
            pending[(ctx.store_id, c.cart_id)] = Abandoned(ids[c.cart_id], c.cart_id,
                                                           c.customer_id, c.total)


def remember_reach(ctx: HandlerContext, reach: dict[str, Reach]) -> None:
    """Keep the customers' reach for the recovery reaction of the same transaction."""
    ctx.remembered(_REACH).update(reach)


@functools.cache
def _pending_of() -> Any:
    Ab = CartAbandonmentEvent
    return select(Ab.id, Ab.cart_id, Ab.customer_id, Ab.cart_value).where(
        Ab.store_id == bindparam("b_store"), in_param(Ab.cart_id, "b_carts"),
        Ab.status == "PENDING")


@without_cyclic_gc
async def start_pending(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """The reaction to abandonment: start the recovery of the carts just recorded PENDING
    (as the state handler remembered them, else as the table has them)."""
    ids = [f.payload.get("cart") or f.key.removeprefix("cart:") for f in fired]
    pending = ctx.remembered(_PENDING)
    rows: list[Any] = [a for i in ids if (a := pending.get((ctx.store_id, i))) is not None]
    if len(rows) < len(ids):
        seen = {r.cart_id for r in rows}
        rest = [i for i in ids if i not in seen]
        for i in range(0, len(rest), CHUNK):
            rows.extend((await ctx.session.execute(_pending_of(), {
                "b_store": ctx.store_id, "b_carts": rest[i:i + CHUNK]})).all())
    if not rows:
        return
    known = ctx.remembered(_REACH)
    missing = [r.customer_id for r in rows if r.customer_id not in known]
    if missing:
        known.update(await load_reach(ctx.session, ctx.store_id, missing))
    await start_recovery(ctx, [(r, known[r.customer_id]) for r in rows
                               if r.customer_id in known])


async def start_recovery(ctx: HandlerContext, abandoned: list[tuple[Any, Reach]],
                         steps: dict[int, int] | None = None) -> None:
    """Start (or resume) the customer's execution for the day for each recorded
    abandonment (rows with id, cart_id, customer_id and cart_value), from its first step
    or the one `steps` gives (abandonment id -> step, run now)."""
    now = ctx.now()
    bucket = now.astimezone(ctx.settings.tz).date().isoformat()
    abandoned = sorted(abandoned, key=lambda a: a[0].cart_value, reverse=True)
    executions = await _claim_executions(ctx, [(row, row.id) for row, _ in abandoned], bucket)
    first, resumed, busy = [], [], []
    for row, _ in abandoned:
        eid = executions.get(row.cart_id)
        if eid is None:
            busy.append(row.id)
            continue
        step = (steps or {}).get(row.id, 0)
        task = Task(row.id, eid, row.cart_id, row.customer_id or "", row.cart_value, step,
                    bucket)
        (resumed if step else first).append(task)
    if busy:  # the customer's recovery for today is already running for another cart
        await _set(ctx, CartAbandonmentEvent, busy, status="ENDED")
    for t in resumed:
        await _set(ctx, CartAbandonmentEvent, [t.abandonment_id], next_step=t.step)
    reach = {r.customer_id: r for _, r in abandoned}
    # OPEN from here: written with the step's own update (sent, skipped), else on its own.
    await _advance_or_run(ctx, first, now, reach, opening=True)
    if resumed:
        await run_steps(ctx, resumed, reach, opening=True)


def current_step(abandoned_at: datetime, now: datetime, settings: Any) -> int | None:
    """The step a flow that began at `abandoned_at` has reached by `now` (0 before the
    first is due), or None once it would have ended."""
    steps = settings.carts.steps
    due, at = [], abandoned_at
    for step in steps:
        at = at + step.after
        due.append(at)
    if not due or now >= abandoned_at + max(due[-1] - abandoned_at,
                                            settings.carts.attribution_window):
        return None
    return max((k for k, d in enumerate(due) if d <= now), default=0)


@functools.cache
def _waiting_of() -> Any:
    Ab = CartAbandonmentEvent
    return select(Ab.id, Ab.cart_id, Ab.customer_id, Ab.cart_value, Ab.abandoned_at).where(
        Ab.store_id == bindparam("b_store"), in_param(Ab.customer_id, "b_customers"),
        Ab.status == "WAITING")


async def resume_waiting(ctx: HandlerContext, events: list[Event]) -> None:
    """The reaction to a customer becoming known or reachable (`customer.upserted`, an
    opt-in): the abandonments that waited for them start, at the step the flow has reached,
    or end if the flow would be over."""
    customers = list({c for e in events if (c := getattr(e.data, "customer_id", None))})
    rows: list[Any] = []
    for i in range(0, len(customers), CHUNK):
        rows.extend((await ctx.session.execute(_waiting_of(), {
            "b_store": ctx.store_id, "b_customers": customers[i:i + CHUNK]})).all())
    if not rows:
        return
    now = ctx.now()
    reach = await load_reach(ctx.session, ctx.store_id, {r.customer_id for r in rows})
    start, steps, late = [], {}, []
    for row in rows:
        who = reach.get(row.customer_id)
        if who is None or not who.channels():
            continue  # still not reachable: it waits on
        step = current_step(row.abandoned_at, now, ctx.settings)
        if step is None:
            late.append(row.id)
        else:
            start.append((row, who))
            steps[row.id] = step
    if late:
        await _set(ctx, CartAbandonmentEvent, late, status="ENDED")
    if start:
        await start_recovery(ctx, start, steps)


async def _claim_executions(
    ctx: HandlerContext, items: list[tuple[Any, int]], bucket: str
) -> dict[str, int]:
    """cart -> execution id; a customer whose execution today is busy with another cart
    gets none (one recovery per customer a day)."""
    now = ctx.now()
    wanted: dict[str, tuple[Any, int]] = {}
    for cart, abandonment_id in items:  # highest value first: it wins the day's execution
        wanted.setdefault(execution_key(ctx.store_id, cart.customer_id or "", bucket),
                          (cart, abandonment_id))
    existing: dict[str, AutomationExecution] = {}
    keys = list(wanted)
    for i in range(0, len(keys), CHUNK):
        for row in (await ctx.session.scalars(select(AutomationExecution).where(
                in_values(AutomationExecution.idempotency_key, keys[i:i + CHUNK])))).all():
            existing[row.idempotency_key] = row
    claimed: dict[str, int] = {}
    fresh = []
    for key, (cart, abandonment_id) in wanted.items():
        row = existing.get(key)
        context = {"abandonment": abandonment_id, "cart": cart.cart_id}
        if row is None:
            fresh.append({
                "store_id": ctx.store_id, "workflow_id": None, "trigger": TRIGGER,
                "customer_id": cart.customer_id, "subject_id": cart.cart_id,
                "idempotency_key": key, "status": "RUNNING", "step": 0, "context": context,
                "error": None, "created_at": now, "updated_at": now, "completed_at": None,
            })
        elif row.status in RUNNING and row.subject_id != cart.cart_id:
            continue
        else:  # the day's execution resumes for this abandonment (cooldown skips sent steps)
            row.status, row.subject_id, row.step, row.context = "RUNNING", cart.cart_id, 0, context
            row.updated_at, row.completed_at = now, None
            claimed[cart.cart_id] = row.id
    if fresh:
        ids = await _insert_returning(ctx, AutomationExecution, AutomationExecution.subject_id,
                                      fresh, unique="idempotency_key")
        claimed.update(ids)
    return claimed


async def cancel_recovery(ctx: HandlerContext, cart_ids: list[str], reason: str,
                          status: str = "CANCELLED") -> list[CartAbandonmentEvent]:
    """Stop what is pending for these carts: the timer, open abandonments, executions.
    Returns the abandonments that were open."""
    return await cancel_recoveries(ctx, {c: reason for c in cart_ids}, status)


@functools.cache
def _open_abandonments() -> Any:
    Ab = CartAbandonmentEvent
    return select(Ab).where(Ab.store_id == bindparam("b_store"),
                            in_param(Ab.cart_id, "b_carts"),
                            Ab.status.in_(("OPEN", *NOT_STARTED)))


async def cancel_recoveries(ctx: HandlerContext, reasons: dict[str, str],
                            status: str = "CANCELLED") -> list[CartAbandonmentEvent]:
    """`cancel_recovery` for many carts at once, each with its own reason (cart id ->
    reason), in a few statements."""
    cart_ids = list(reasons)
    if not cart_ids:
        return []
    await ctx.cancel(*(_key(c) for c in cart_ids))
    open_rows: list[CartAbandonmentEvent] = []
    for i in range(0, len(cart_ids), CHUNK):
        open_rows.extend((await ctx.session.scalars(_open_abandonments(), {
            "b_store": ctx.store_id, "b_carts": cart_ids[i:i + CHUNK]})).all())
    if not open_rows:
        return []
    for row in open_rows:
        row.status = status
    # The running executions first (one indexed read), then one executemany by primary
    # key: each cart has its own reason, so one UPDATE a reason would be one an order.
    x = AutomationExecution
    running: list[Any] = []
    for i in range(0, len(cart_ids), CHUNK):
        running.extend((await ctx.session.execute(select(x.id, x.subject_id).where(
            x.store_id == ctx.store_id, x.trigger == TRIGGER,
            in_values(x.subject_id, cart_ids[i:i + CHUNK]), x.status.in_(RUNNING)))).all())
    if running:
        now = ctx.now()
        await ctx.session.execute(update(x).execution_options(synchronize_session=False), [
            {"id": id_, "status": "CANCELLED", "error": reasons[cart_id], "updated_at": now}
            for id_, cart_id in running])
    return open_rows


# --- the steps -----------------------------------------------------------------------------


@without_cyclic_gc
async def run_due_steps(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """Run the steps whose time has come (skipping any whose abandonment moved on)."""
    by_id = {int(f.payload["abandonment"]): f for f in fired}
    rows: list[CartAbandonmentEvent] = []
    ids = list(by_id)
    for i in range(0, len(ids), CHUNK):
        rows.extend((await ctx.session.scalars(select(CartAbandonmentEvent).where(
            CartAbandonmentEvent.store_id == ctx.store_id,
            in_values(CartAbandonmentEvent.id, ids[i:i + CHUNK]),
            CartAbandonmentEvent.status == "OPEN"))).all())
    tasks = []
    for row in rows:
        p = by_id[row.id].payload
        if int(p["step"]) != row.next_step:
            continue
        tasks.append(Task(row.id, int(p["execution"]), row.cart_id, row.customer_id or "",
                          row.cart_value, row.next_step, p["bucket"]))
    await run_steps(ctx, tasks)


async def _advance_or_run(ctx: HandlerContext, tasks: list[Task], now: datetime,
                          reach: dict[str, Reach] | None = None, opening: bool = False) -> None:
    """Run the tasks whose step is due now; schedule the others at their time (`opening`:
    the abandonments start now, and turn OPEN)."""
    steps = ctx.settings.carts.steps
    due, later, finished = _partition(tasks, steps)
    await _schedule(ctx, [(t, now + steps[t.step].after, None) for t in later])
    if opening and later:
        await _set(ctx, CartAbandonmentEvent, [t.abandonment_id for t in later], status="OPEN")
    await _finish(ctx, finished)
    if due:
        await run_steps(ctx, due, reach, opening)


def _partition(tasks: list[Task], steps: list[CartStep]) -> tuple[list[Task], list[Task], list[Task]]:
    """Split tasks into (step due at once, step due later, no step left)."""
    due, later, finished = [], [], []
    for t in tasks:
        if t.step >= len(steps):
            finished.append(t)
        elif steps[t.step].after.total_seconds() <= 0:
            due.append(t)
        else:
            later.append(t)
    return due, later, finished


async def run_steps(ctx: HandlerContext, tasks: list[Task],
                    reach: dict[str, Reach] | None = None, opening: bool = False) -> None:
    """Apply suppression and deferral, then queue each task's step; repeat for follow-up
    steps due at once (`after = "0s"`). `reach` may carry customers already loaded;
    `opening`: the abandonments start now (each turns OPEN; it is OPEN already when a
    timer runs its step, so the sent and skipped steps' updates always say so)."""
    settings, now = ctx.settings, ctx.now()
    steps, limits = settings.carts.steps, settings.limits
    window = send_window(settings)
    allowed_at = window.next_allowed(now)
    tomorrow = window.next_allowed(local_day_bounds(now, settings.tz)[1])
    while tasks:
        customers = list({t.customer_id for t in tasks})
        reach = dict(reach or {})
        missing = [c for c in customers if c not in reach]
        if missing:
            reach.update(await load_reach(ctx.session, ctx.store_id, missing))
        counts = await sent_today(ctx.session, ctx.store_id, customers, now, settings.tz)
        cooled: dict[str, set[str]] = {}
        for template in {steps[t.step].template for t in tasks}:
            cooled[template] = await recently_triggered(
                ctx.session, ctx.store_id, customers, TRIGGER, now - limits.same_trigger_cooldown,
                template=template)
        offer_askers = {t.customer_id: t.cart_id for t in tasks if steps[t.step].discount_percent}
        offers_held = await recent_offer_holders(
            ctx.session, ctx.store_id, list(offer_askers), now - limits.offer_cooldown,
            own_cart=offer_askers) if offer_askers else set()

        sends: list[tuple[Task, str, Decimal]] = []
        skipped: list[Task] = []
        deferred: list[tuple[Task, datetime, str]] = []
        for t in sorted(tasks, key=lambda t: t.value, reverse=True):
            step = steps[t.step]
            who = reach.get(t.customer_id)
            channel = who.pick(step.channel) if who else None
            if t.customer_id in cooled[step.template] or channel is None:
                skipped.append(t)
            elif allowed_at > now:
                deferred.append((t, allowed_at, "quiet_hours"))
            elif counts.get(t.customer_id, 0) >= limits.max_messages_per_customer_per_day:
                deferred.append((t, tomorrow, "daily_cap"))
            else:
                counts[t.customer_id] = counts.get(t.customer_id, 0) + 1
                discount = step.discount_percent if t.customer_id not in offers_held else Decimal(0)
                sends.append((t, channel, discount))

        await _send(ctx, sends, reach)
        await _schedule(ctx, deferred)
        if opening and deferred:
            await _set(ctx, CartAbandonmentEvent, [t.abandonment_id for t, _, _ in deferred],
                       status="OPEN")
        if sends:
            await _set(ctx, AutomationExecution, [t.execution_id for t, _, _ in sends],
                       status="WAITING", updated_at=now)
        moved = [replace(t, step=t.step + 1) for t in [s[0] for s in sends] + skipped]
        for step_no in {t.step for t in skipped}:
            group = [t.abandonment_id for t in skipped if t.step == step_no]
            await _set(ctx, CartAbandonmentEvent, group, next_step=step_no + 1, status="OPEN")
        tasks, later, finished = _partition(moved, steps)
        await _schedule(ctx, [(t, now + steps[t.step].after, None) for t in later])
        await _finish(ctx, finished)


async def _send(ctx: HandlerContext, sends: list[tuple[Task, str, Decimal]],
                reach: dict[str, Reach]) -> None:
    if not sends:
        return
    now, settings = ctx.now(), ctx.settings
    steps = settings.carts.steps
    with_code = [(t, d) for t, _, d in sends if d > 0]
    codes = dict(zip(
        [t.abandonment_id for t, _ in with_code],
        await issue_codes(ctx.session, ctx.store_id, [
            CodeRequest(t.customer_id, d, TRIGGER, cart_id=t.cart_id,
                        expires_at=now + settings.carts.attribution_window)
            for t, d in with_code
        ], now),
    ))
    items = await _cart_items(ctx, [t.cart_id for t, _, _ in sends])
    store = await ctx.session.get(Store, ctx.store_id)
    store_name = (store.name if store else None) or ctx.store_id
    requests = []
    for t, channel, discount in sends:
        step: CartStep = steps[t.step]
        who = reach[t.customer_id]
        code = codes.get(t.abandonment_id)
        variables = template_variables(
            name=who.name, store_name=store_name, items=items.get(t.cart_id, []),
            total=t.value, recovery_url=recovery_url(settings.carts.recovery_url,
                                                     ctx.store_id, t.cart_id, code),
            discount_code=code, discount_percent=int(discount) if code else 0,
            step=t.step + 1)
        rendered = render_template(step.template, channel, who.locale, variables,
                                   tail=system_sms_limit(step.template, channel) is not None)
        requests.append(MessageRequest(
            store_id=ctx.store_id, customer_id=t.customer_id, channel=channel,
            to_address=who.address(channel), body=rendered.body, subject=rendered.subject,
            html=rendered.html, template=step.template, trigger=TRIGGER,
            execution_id=t.execution_id, priority=_priority(t.value),
            idempotency_key=message_key(t, ctx.store_id),
            data={"cartId": t.cart_id, "step": t.step + 1, "discountCode": code,
                  "abandonmentId": t.abandonment_id,  # and the SMS trimming its template allows
                  **system_sms_fit(step.template, channel, who.locale, rendered),
                  **system_whatsapp_fields(step.template, channel, who.locale, variables,
                                           _first_image(variables["items"]))},
        ))
    await enqueue_messages(ctx.session, requests, now)
    for step_no in {t.step for t, _, _ in sends}:
        await _set(ctx, CartAbandonmentEvent,
                   [t.abandonment_id for t, _, _ in sends if t.step == step_no],
                   recovery_attempts=CartAbandonmentEvent.recovery_attempts + 1, status="OPEN",
                   last_reminder_at=now, next_step=step_no + 1)


# What a reminder's template may read: exactly these (a store's template of a reminder's
# slug is checked against them when saved, handlers/outreach/template_library.py).
TEMPLATE_VARIABLES = frozenset({"name", "store_name", "items", "total", "recovery_url",
                                "discount_code", "discount_percent", "step"})


def template_variables(**values: Any) -> dict[str, Any]:
    """A reminder's variables (TEMPLATE_VARIABLES, each given)."""
    assert values.keys() == TEMPLATE_VARIABLES, sorted(values.keys() ^ TEMPLATE_VARIABLES)
    return values


def recovery_url(pattern: str, store_id: str, cart_id: str, code: str | None) -> str:
    """carts.recovery_url for this cart, with the discount code applied when there is one."""
    url = pattern.format(store=store_id, cart=cart_id)
    if not code:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"discount": code})) if q)
    return urlunsplit(parts._replace(query=query))


def _first_image(items: list[dict]) -> str | None:
    return next((item["image_url"] for item in items if item.get("image_url")), None)


async def _cart_items(ctx: HandlerContext, cart_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each cart's lines for the template: name, quantity, price, line total, image."""
    rows: list[Any] = []
    item, product = CartItem.__table__.c, Product.__table__.c  # Core: no ORM row loading
    for i in range(0, len(cart_ids), CHUNK):
        rows.extend((await ctx.session.execute(select(
            item.cart_id, item.product_id, item.name, item.quantity, item.unit_price,
            item.image_url).where(
            item.store_id == ctx.store_id, in_values(item.cart_id, cart_ids[i:i + CHUNK]))
            .order_by(item.id))).all())
    rows = [tuple(r) for r in rows]  # plain tuples: unpacked below, not looked up by name
    product_ids = list({pid for _, pid, name, _, _, image in rows if not (name and image)})
    products: dict[str, Any] = {}
    for i in range(0, len(product_ids), CHUNK):
        for p in (await ctx.session.execute(select(
                product.product_id, product.name, product.image_url).where(
                product.store_id == ctx.store_id,
                in_values(product.product_id, product_ids[i:i + CHUNK])))).all():
            products[p.product_id] = p
    out: dict[str, list[dict[str, Any]]] = {}
    for cart_id, pid, name, quantity, price, image in rows:
        p = products.get(pid)
        out.setdefault(cart_id, []).append({
            "name": name or (p.name if p else pid), "quantity": quantity,
            "unit_price": price, "line_total": price * quantity,
            "image_url": image or (p.image_url if p else None),
        })
    return out


async def _schedule(ctx: HandlerContext, items: list[tuple[Task, datetime, str | None]]) -> None:
    await ctx.schedule_many([
        {"key": _key(t.cart_id), "kind": REMIND_TIMER, "due_at": at,
         "priority": _priority(t.value),
         "payload": {"abandonment": t.abandonment_id, "execution": t.execution_id,
                     "step": t.step, "bucket": t.bucket, "deferred": reason}}
        for t, at, reason in items
    ])
    waiting = [t.execution_id for t, _, reason in items if reason]
    if waiting:
        await _set(ctx, AutomationExecution, waiting, status="WAITING", updated_at=ctx.now())


async def _finish(ctx: HandlerContext, tasks: list[Task]) -> None:
    """Every step done: the abandonment stays attributable, the execution completes."""
    if not tasks:
        return
    now = ctx.now()
    await _set(ctx, CartAbandonmentEvent, [t.abandonment_id for t in tasks], status="ENDED")
    await _set(ctx, AutomationExecution, [t.execution_id for t in tasks],
               status="COMPLETED", step=len(ctx.settings.carts.steps), completed_at=now,
               updated_at=now)


# --- attribution ---------------------------------------------------------------------------


async def attribute_orders(ctx: HandlerContext,
                           orders: list[tuple[OrderCreated, datetime, list[str]]]) -> None:
    """Credit each order (with when it happened and the carts it converted; one order per
    customer) to one abandonment: its cart's, else the cart whose code it redeemed, else
    the customer's most recent reminder within the attribution window. Whatever is still
    pending for the customer's carts stops: they have ordered."""
    if not orders:
        return
    Ab = CartAbandonmentEvent
    redeemed = await codes_redeemed_by(ctx.session, ctx.store_id, {
        order.order_id: order.promotion_codes or [] for order, _, _ in orders})
    explicit = [{c.cart_id for c in redeemed.get(order.order_id, ()) if c.cart_id} | (
        {order.cart_id} if order.cart_id else set()) for order, _, _ in orders]
    carts = sorted(set().union(*explicit))
    customers = sorted({order.customer_id for order, _, _ in orders})
    rows: list[CartAbandonmentEvent] = []
    for i in range(0, max(len(carts), len(customers)), CHUNK):
        rows.extend((await ctx.session.scalars(select(Ab).where(
            Ab.store_id == ctx.store_id, Ab.status != "RECOVERED",
            or_(in_values(Ab.cart_id, carts[i:i + CHUNK]),
                in_values(Ab.customer_id, customers[i:i + CHUNK])),
        ))).all())
    rows = list(dict.fromkeys(rows))
    reasons: dict[str, str] = {}
    credited: list[tuple[OrderCreated, datetime, set[str], list[CartAbandonmentEvent]]] = []
    for (order, at, converted), mine in zip(orders, explicit):
        window_start = at - ctx.settings.carts.attribution_window
        candidates = [r for r in rows if r.cart_id in mine or (
            r.customer_id == order.customer_id and r.last_reminder_at is not None
            and window_start <= r.last_reminder_at <= at)]
        pending = [r.cart_id for r in rows
                   if r.customer_id == order.customer_id and r.status in ("OPEN", *NOT_STARTED)]
        for cart_id in (*converted, *pending, *(c.cart_id for c in candidates)):
            reasons.setdefault(cart_id, f"order {order.order_id}")
        if candidates:
            credited.append((order, at, mine, candidates))
    await cancel_recoveries(ctx, reasons, status="ENDED")
    now = ctx.now()
    recovered: dict[str, str] = {}  # cart -> the order that recovered it
    for order, at, mine, candidates in credited:
        candidates = [r for r in candidates if r.status != "RECOVERED"]
        if not candidates:
            continue
        best = max(candidates, key=lambda row, mine=mine: (
            1 if row.cart_id in mine else 0, row.last_reminder_at or row.abandoned_at))
        best.status, best.recovered_at = "RECOVERED", at
        best.order_id, best.recovered_revenue = order.order_id, order.total
        recovered[best.cart_id] = order.order_id
    if not recovered:
        return
    await set_carts(ctx, [{"cart_id": c, "status": "RECOVERED", "order_id": o}
                          for c, o in recovered.items()])
    ids = list(recovered)
    for i in range(0, len(ids), CHUNK):
        await ctx.session.execute(
            update(AutomationExecution)
            .where(AutomationExecution.store_id == ctx.store_id,
                   AutomationExecution.trigger == TRIGGER,
                   in_values(AutomationExecution.subject_id, ids[i:i + CHUNK]))
            .values(status="COMPLETED", completed_at=now, updated_at=now, error=None)
            .execution_options(synchronize_session=False)
        )


async def set_carts(ctx: HandlerContext, rows: list[dict[str, Any]]) -> None:
    """UPDATE carts by primary key in one executemany (each dict: cart_id and the new
    values). The handlers hold carts as Core rows, so no session object goes stale."""
    await update_by_key(ctx.session, Cart.__table__, ("store_id", "cart_id"),
                        [{"store_id": ctx.store_id, **r} for r in rows])


# --- small set-based helpers ---------------------------------------------------------------


async def _set(ctx: HandlerContext, model: Any, ids: list[int], **values: Any) -> None:
    """UPDATE model SET values WHERE id IN ids, in chunks."""
    for i in range(0, len(ids), CHUNK):
        await ctx.session.execute(
            update(model).where(in_values(model.id, ids[i:i + CHUNK])).values(**values)
            .execution_options(synchronize_session=False)
        )


async def _insert_returning(ctx: HandlerContext, model: Any, label: Any,
                            rows: list[dict[str, Any]], unique: str | None = None
                            ) -> dict[str, int]:
    """Insert rows and map `label` -> new id (skipping rows whose `unique` key exists)."""
    found = await insert_returning(ctx.session, model.__table__, rows, ("id", label.key),
                                   unique=unique)
    return {lab: id_ for id_, lab in found}
