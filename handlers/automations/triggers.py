"""The automation triggers: win-back, VIP milestone, post-purchase upsell, welcome series,
birthday (segment entry: handlers/automations/segment_entry.py; anniversary:
handlers/automations/anniversary.py).

Each run of a trigger for a customer is an AutomationExecution whose unique key is
store + trigger + customer + date bucket, so a redelivered event, a re-run cron
or two racing processes open it once; its message key derives from it, so it queues once.
Executions are the automation log: PENDING/WAITING while steps remain, COMPLETED when its
message is queued (or deferred by the daily cap), SKIPPED with the reason (cooldown, offer
cooldown, unreachable, capped, order cancelled, nothing to recommend, segment backfill),
FAILED with the reason when its message could not be rendered (a store template that
breaks; the message is recorded as failed) or the reaction itself failed
(handlers/kernel/failures.py).

A trigger whose workflow has `variants` (handlers/automations/workflows.py) sends each
customer the template of their variant, assigned as a campaign's are; the variant is kept
on the execution (`context.variant`) and on the message.

All marketing: opt-outs, the daily cap (`automations.on_cap`: defer or drop), the
same-trigger cooldown, quiet hours and Friday prayer apply through `handlers.outreach.queue`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, extract, select, update

from stormd.handlers.automations.workflows import SINGLE_MESSAGE, WorkflowError, parse_config
from stormd.handlers.campaigns.ab_testing import assign_variant
from stormd.handlers.kernel.context import HandlerContext, JobContext, TimerFired
from stormd.handlers.outreach.costs import unit_costs
from stormd.handlers.outreach.queue import (
    DISCOUNT_NAMES,
    STANDARD_NAMES,
    Outreach,
    Recipient,
    bounded_key,
    load_templates,
    send_batch,
    store_profile,
)
from stormd.handlers.outreach.recommendations import recommend_many
from stormd.handlers.outreach.send_slots import store_send_window
from stormd.handlers.scoring.features import known_store_ids
from stormd.plugins.policy.eligibility import load_reach, recently_triggered
from stormd.schema.db.inlist import in_values
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.automations import AutomationExecution, AutomationWorkflow
from stormd.schema.marketing.predictions import CustomerPrediction
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order, OrderItem
from stormd.schema.wire.events import CustomerUpserted, Event, OrderCreated, OrderStatusChanged

log = logging.getLogger(__name__)

CHUNK = 1000
WELCOME_KIND = "automation.welcome"
POST_PURCHASE_KIND = "automation.post_purchase"
NAMES = {"win_back": "Churn-risk win-back", "vip": "VIP milestone reward",
         "post_purchase": "Post-purchase upsell", "welcome": "Welcome series",
         "birthday": "Birthday greeting", "anniversary": "First-order anniversary"}


@dataclass
class Step:
    """One message of a trigger: which template, which code, what else to render."""

    trigger: str
    template: str
    discount_percent: Decimal | None = None
    channels: list[str] | None = None
    number: int = 0
    final: bool = True
    cooldown: timedelta | None = None
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # per customer
    # An A/B test: [{name, weight, template}] (else the workflow's own `variants`, if any).
    variants: list[dict[str, Any]] | None = None


def template_variables(settings: Any) -> dict[str, tuple[str, frozenset[str]]]:
    """Template slug -> (trigger, the variables that trigger supplies to it): every
    template may read the standard ones; a step with a discount adds the code and percent;
    the upsell adds its products and order (handlers/outreach/template_library.py checks a
    store's template of one of these slugs against them when it is saved)."""
    a = settings.automations

    def with_code(percent: Any) -> frozenset[str]:
        return STANDARD_NAMES | DISCOUNT_NAMES if percent else STANDARD_NAMES

    last = len(a.welcome_delays) - 1
    found = {f"welcome_{n + 1}": ("welcome", with_code(a.welcome_discount_percent
                                                       if n == last else None))
             for n in range(len(a.welcome_delays))}
    found.update({
        "win_back": ("win_back", with_code(a.win_back_discount_percent)),
        "vip_reward": ("vip", with_code(a.vip_discount_percent)),
        "birthday": ("birthday", with_code(a.birthday_discount_percent)),
        "anniversary": ("anniversary", with_code(a.anniversary_discount_percent)
                        | ANNIVERSARY_NAMES),
        "post_purchase_upsell": ("post_purchase", STANDARD_NAMES | UPSELL_NAMES),
    })
    return found


UPSELL_NAMES = frozenset({"products", "order_id"})
ANNIVERSARY_NAMES = frozenset({"years"})


def enabled(ctx: HandlerContext, trigger: str) -> bool:
    return trigger.split(":", 1)[0] in ctx.settings.automations.enabled


def execution_key(store_id: str, trigger: str, customer_id: str, bucket: str) -> str:
    return bounded_key(f"{store_id}:{trigger}:{customer_id}:{bucket}")


def local_today(ctx: HandlerContext, tz) -> date:
    return ctx.now().astimezone(tz).date()


async def ensure_workflow(ctx: HandlerContext, trigger: str, config: dict | None = None
                          ) -> AutomationWorkflow:
    """The store's workflow row for a trigger (built-ins are created enabled on first use)."""
    query = select(AutomationWorkflow).where(AutomationWorkflow.store_id == ctx.store_id,
                                             AutomationWorkflow.trigger == trigger)
    found = (await ctx.session.scalars(query)).first()
    if found is not None:
        return found
    now = ctx.now()
    await ctx.session.execute(insert_for(ctx.session, AutomationWorkflow).values(
        store_id=ctx.store_id, trigger=trigger, name=NAMES.get(trigger, trigger), enabled=True,
        config=config, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["store_id", "trigger"]))
    return (await ctx.session.scalars(query)).one()


async def open_executions(ctx: HandlerContext, workflow: AutomationWorkflow,
                          items: list[tuple[str, str, str | None]], status: str = "PENDING",
                          error: str | None = None) -> list[AutomationExecution]:
    """Open one execution per (customer, bucket, subject); returns only the new ones (an
    existing key means this trigger already ran for that customer in that bucket). A
    SKIPPED one is closed at once, `error` saying why."""
    now = ctx.now()
    keys = {execution_key(ctx.store_id, workflow.trigger, cid, bucket): (cid, subject)
            for cid, bucket, subject in items}
    if not keys:
        return []
    existing = set((await ctx.session.scalars(select(AutomationExecution.idempotency_key).where(
        AutomationExecution.idempotency_key.in_(list(keys))))).all())
    fresh = [k for k in keys if k not in existing]
    if not fresh:
        return []
    stmt = insert_for(ctx.session, AutomationExecution).on_conflict_do_nothing(
        index_elements=["idempotency_key"])
    await ctx.session.execute(stmt, [{
        "store_id": ctx.store_id, "workflow_id": workflow.id, "trigger": workflow.trigger,
        "customer_id": keys[k][0], "subject_id": keys[k][1], "idempotency_key": k,
        "status": status, "step": 0, "context": None, "error": error, "created_at": now,
        "updated_at": now, "completed_at": now if status == "SKIPPED" else None}
        for k in fresh])
    return list((await ctx.session.scalars(select(AutomationExecution).where(
        AutomationExecution.idempotency_key.in_(fresh)))).all())


async def _mark(ctx: HandlerContext, ids: list[int], status: str, error: str | None = None,
                step: int | None = None) -> None:
    if not ids:
        return
    now = ctx.now()
    values: dict[str, Any] = {"status": status, "error": error, "updated_at": now}
    if status in ("COMPLETED", "SKIPPED", "FAILED"):
        values["completed_at"] = now
    if step is not None:
        values["step"] = step
    for i in range(0, len(ids), CHUNK):
        await ctx.session.execute(update(AutomationExecution)
                                  .where(AutomationExecution.id.in_(ids[i:i + CHUNK]))
                                  .values(**values))


# What an outcome of `send_batch` means in the automation log when nothing was sent.
SKIP_REASONS = {"capped": "daily cap reached (on_cap = drop)",
                "offer_cooldown": "offer cooldown"}
_VARIANTS = "stormd.workflow_variants"  # (store, trigger) -> the workflow's variants


async def workflow_variants(ctx: HandlerContext, trigger: str) -> list[dict[str, Any]] | None:
    """The A/B variants the store's workflow of `trigger` sets (once a transaction)."""
    known = ctx.remembered(_VARIANTS)
    key = (ctx.store_id, trigger)
    if key not in known:
        config = (await ctx.session.execute(select(AutomationWorkflow.config).where(
            AutomationWorkflow.store_id == ctx.store_id,
            AutomationWorkflow.trigger == trigger))).scalar()
        known[key] = (config or {}).get("variants") if isinstance(config, dict) else None
    return known[key]


def variant_salt(store_id: str, trigger: str) -> str:
    """What an automation's customers are split by (a campaign uses its id)."""
    return f"automation:{store_id}:{trigger}"


async def deliver(ctx: HandlerContext, executions: list[AutomationExecution], step: Step
                  ) -> dict[str, str]:
    """Queue the step's message for each execution's customer; mark the executions with
    what happened. Returns customer -> outcome (queued/deferred/capped/unreachable/...)."""
    if not executions:
        return {}
    store = await store_profile(ctx.session, ctx.settings, ctx.store_id)
    now, ids = ctx.now(), [e.customer_id for e in executions]
    outcome: dict[str, str] = {}
    skip: dict[str, str] = {}
    if step.cooldown:
        for cid in await recently_triggered(ctx.session, ctx.store_id, ids, step.trigger,
                                            now - step.cooldown, step.template):
            skip[cid] = "cooldown"
    reach = await load_reach(ctx.session, ctx.store_id, [i for i in ids if i not in skip])
    variants = step.variants
    if variants is None and step.trigger in SINGLE_MESSAGE:
        variants = await workflow_variants(ctx, step.trigger)
    groups_by_variant: dict[str | None, list[Recipient]] = {}
    for e in executions:
        if e.customer_id in skip:
            continue
        if e.customer_id not in reach:
            skip[e.customer_id] = "unknown customer"
            continue
        variant = (assign_variant(variant_salt(ctx.store_id, step.trigger), e.customer_id,
                                  variants) if variants else None)
        groups_by_variant.setdefault(variant, []).append(Recipient(
            reach=reach[e.customer_id], key=bounded_key(f"{e.idempotency_key}:{step.number}"),
            variables=step.variables.get(e.customer_id, {}), execution_id=e.id))
    window = store_send_window(ctx.settings, store.tz)
    costs = await unit_costs(ctx.session, ctx.settings, ctx.store_id)
    templates = {v["name"]: v["template"] for v in variants or ()}
    by_id = {e.customer_id: e.id for e in executions}
    errors: dict[str, str] = {}
    for variant, recipients in groups_by_variant.items():
        outreach = Outreach(
            store=store, trigger=step.trigger,
            templates=await load_templates(ctx.session, ctx.store_id,
                                           templates.get(variant or "", step.template)),
            channels=step.channels or ctx.settings.automations.channels,
            routing=ctx.settings.automations.routing,
            send_at=window.next_allowed(now), costs=costs,
            on_cap=ctx.settings.automations.on_cap.get(step.trigger.split(":", 1)[0], "defer"),
            discount_percent=step.discount_percent or None,
            code_valid_until=now + ctx.settings.automations.code_valid_for, variant=variant,
        )
        result = await send_batch(ctx.session, ctx.settings, now, outreach, recipients)
        outcome.update(result.status)
        errors.update(result.errors)
        if variant is not None:
            await _note_variant(ctx, [by_id[r.reach.customer_id] for r in recipients], variant)
    outcome.update(skip)
    groups: dict[tuple[str, str | None], list[int]] = {}
    for cid, what in outcome.items():
        if what in ("queued", "deferred", "duplicate"):
            key = ("COMPLETED" if step.final else "WAITING", None)
        elif what == "failed":  # its message could not be rendered: recorded, not retried
            key = ("FAILED", errors.get(cid, "the message failed to render"))
        else:
            key = ("SKIPPED", SKIP_REASONS.get(what, what))
        groups.setdefault(key, []).append(by_id[cid])
    for (status, error), exec_ids in groups.items():
        await _mark(ctx, exec_ids, status, error, step.number)
    return outcome


async def _note_variant(ctx: HandlerContext, ids: list[int], variant: str) -> None:
    """The execution's variant, for the automation log (`context.variant`)."""
    for i in range(0, len(ids), CHUNK):
        await ctx.session.execute(update(AutomationExecution)
                                  .where(AutomationExecution.id.in_(ids[i:i + CHUNK]))
                                  .values(context={"variant": variant}))


async def run_trigger(ctx: HandlerContext, customer_ids: Iterable[str], bucket: str, step: Step,
                      subject_id: str | None = None) -> dict[str, str]:
    """Open executions for the customers in this bucket and deliver the step to the new ones."""
    if not enabled(ctx, step.trigger):
        return {}
    workflow = await ensure_workflow(ctx, step.trigger)
    if not workflow.enabled:
        return {}
    outcome: dict[str, str] = {}
    ids = list(dict.fromkeys(customer_ids))
    for i in range(0, len(ids), CHUNK):
        fresh = await open_executions(ctx, workflow, [(c, bucket, subject_id) for c in ids[i:i + CHUNK]])
        outcome.update(await deliver(ctx, fresh, step))
    return outcome


def _cooldown(ctx: HandlerContext, extra: timedelta | None = None) -> timedelta:
    base = ctx.settings.limits.same_trigger_cooldown
    return max(base, extra) if extra else base


# --- churn-risk win-back (daily) ----------------------------------------------------------


async def win_back_candidates(ctx: HandlerContext, after: str, limit: int) -> list[str]:
    """ACTIVE customers at risk (keyset page): by default those whose last completed order
    is 45+ whole days old; with `automations.win_back_by = "churn_risk"` those whose churn
    risk (docs/scoring.md) is at least `win_back_min_churn_risk`; with "churn_probability"
    those whose predicted churn probability (no purchase in the next 90 days) is at least
    `win_back_churn_probability`, however recent their last order (a customer without
    predictions is not a candidate)."""
    a = ctx.settings.automations
    lm = CustomerLifecycleMetrics
    query = select(lm.customer_id).where(lm.store_id == ctx.store_id, lm.stage == "ACTIVE",
                                         lm.customer_id > after)
    if a.win_back_by == "churn_probability":
        cp = CustomerPrediction
        query = query.join(cp, and_(cp.store_id == lm.store_id,
                                    cp.customer_id == lm.customer_id)).where(
            cp.churn_probability >= a.win_back_churn_probability)
    elif a.win_back_by == "churn_risk":
        query = query.where(lm.churn_risk >= a.win_back_min_churn_risk)
    else:
        query = query.where(lm.last_order_at <= ctx.now() - timedelta(days=a.win_back_after_days))
    return list((await ctx.session.scalars(query.order_by(lm.customer_id).limit(limit))).all())


async def run_win_back(ctx: HandlerContext, after: str = "") -> tuple[str, dict[str, str]]:
    """One page of the win-back run; returns the last customer id seen ("" when done)."""
    store = await store_profile(ctx.session, ctx.settings, ctx.store_id)
    ids = await win_back_candidates(ctx, after, CHUNK)
    a = ctx.settings.automations
    step = Step("win_back", "win_back", a.win_back_discount_percent,
                cooldown=_cooldown(ctx, a.win_back_cooldown))
    outcome = await run_trigger(ctx, ids, local_today(ctx, store.tz).isoformat(), step)
    return (ids[-1] if len(ids) == CHUNK else ""), outcome


async def _each_store_in_pages(job: JobContext, page) -> None:
    async with job.sessionmaker() as session:
        stores = await known_store_ids(session)
    for store_id in stores:
        after = ""
        while True:
            async with job.sessionmaker() as session:
                after, _ = await page(job.handler_context(session, store_id), after)
                await session.commit()
            if not after:
                break


async def win_back_job(job: JobContext) -> None:
    await _each_store_in_pages(job, run_win_back)


# --- birthday (daily) ---------------------------------------------------------------------


async def run_birthdays(ctx: HandlerContext, after: str = "") -> tuple[str, dict[str, str]]:
    """Customers whose birthday is today in the store's zone (29 Feb on 28 Feb otherwise)."""
    store = await store_profile(ctx.session, ctx.settings, ctx.store_id)
    today = local_today(ctx, store.tz)
    month, day = extract("month", Customer.birthday), extract("day", Customer.birthday)
    match = and_(month == today.month, day == today.day)
    if (today.month, today.day) == (2, 28) and not _leap(today.year):
        match = and_(month == 2, day.in_((28, 29)))
    ids = list((await ctx.session.scalars(
        select(Customer.customer_id).where(Customer.store_id == ctx.store_id, match,
                                           Customer.customer_id > after)
        .order_by(Customer.customer_id).limit(CHUNK))).all())
    step = Step("birthday", "birthday", ctx.settings.automations.birthday_discount_percent,
                cooldown=_cooldown(ctx))
    outcome = await run_trigger(ctx, ids, str(today.year), step)
    return (ids[-1] if len(ids) == CHUNK else ""), outcome


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


async def birthday_job(job: JobContext) -> None:
    await _each_store_in_pages(job, run_birthdays)


TRIGGERS = ("win_back", "vip", "post_purchase", "welcome", "birthday", "anniversary")
TRIGGER_LENGTH = 64  # AutomationWorkflow.trigger, Message.trigger


async def configure_workflow(ctx: HandlerContext, trigger: str, enabled_: bool,
                             config: dict[str, Any] | None = None) -> AutomationWorkflow:
    """Turn a store's trigger on or off, with its configuration checked
    (handlers/automations/workflows.py: A/B `variants`, a segment-entry sequence `steps`,
    `react_to_backfill`); every template it names must exist."""
    if len(trigger) > TRIGGER_LENGTH:
        raise ValueError(f"trigger: {trigger!r} is longer than {TRIGGER_LENGTH} characters")
    if not trigger.startswith("segment_entry:") and trigger not in TRIGGERS:
        raise ValueError(f"trigger: {trigger!r} is not one of {', '.join(TRIGGERS)} "
                         "or segment_entry:<slug>")
    known = (await ctx.session.execute(select(AutomationWorkflow.id).where(
        AutomationWorkflow.store_id == ctx.store_id,
        AutomationWorkflow.trigger == trigger))).scalar()
    if config is not None or (trigger.startswith("segment_entry:") and known is None):
        try:  # a known workflow switched on or off keeps its checked configuration
            parsed = parse_config(trigger, config)
        except WorkflowError as exc:
            raise ValueError(str(exc)) from None
        for template in parsed.templates():
            await load_templates(ctx.session, ctx.store_id, template)
    workflow = await ensure_workflow(ctx, trigger, config)
    workflow.enabled, workflow.updated_at = enabled_, ctx.now()
    if config is not None:
        workflow.config = config
    ctx.remembered(_VARIANTS).pop((ctx.store_id, trigger), None)
    return workflow


async def add_segment_entry_workflow(ctx: HandlerContext, segment: str, template: str,
                                     channels: list[str] | None = None,
                                     discount_percent: Decimal | None = None) -> AutomationWorkflow:
    """Let a merchant fire a template whenever a customer enters `segment`."""
    config = {"template": template, "channels": channels,
              "discount_percent": str(discount_percent) if discount_percent else None}
    return await configure_workflow(ctx, f"segment_entry:{segment}", True, config)


# --- post-purchase upsell -----------------------------------------------------------------


async def on_order_paid(ctx: HandlerContext, events: list[Event]) -> None:
    """An order reaching the first of `automations.post_purchase_on` (PAID, or DELIVERED
    for cash on delivery) opens its upsell, fired `post_purchase_delay` later; an order
    opens one, whichever of them it reaches and however often (the execution's key is the
    order)."""
    if not enabled(ctx, "post_purchase"):
        return
    too_old = ctx.now() - timedelta(days=1)  # a replayed or imported old order: too late
    starts = ctx.settings.automations.post_purchase_on
    paid = [(e.data, e.occurred_at + ctx.settings.automations.post_purchase_delay)
            for e in events if isinstance(e.data, (OrderCreated, OrderStatusChanged))
            and e.data.status in starts]
    paid = [(data, due) for data, due in paid if due >= too_old]
    if not paid:
        return
    unknown = [data.order_id for data, _ in paid if not getattr(data, "customer_id", None)]
    buyer = dict((await ctx.session.execute(
        select(Order.order_id, Order.customer_id).where(
            Order.store_id == ctx.store_id, Order.order_id.in_(unknown)))).all()
    ) if unknown else {}
    paid = [(data, getattr(data, "customer_id", None) or buyer.get(data.order_id), due)
            for data, due in paid]
    paid = [(data, customer_id, due) for data, customer_id, due in paid if customer_id]
    if not paid:
        return
    workflow = await ensure_workflow(ctx, "post_purchase")
    if not workflow.enabled:
        return
    fresh = await open_executions(ctx, workflow, [(customer_id, data.order_id, data.order_id)
                                                  for data, customer_id, _ in paid],
                                  status="WAITING")
    by_order = {x.subject_id: x for x in fresh}
    await ctx.schedule_many([
        {"key": f"post_purchase:{data.order_id}", "kind": POST_PURCHASE_KIND, "due_at": due,
         "payload": {"orderId": data.order_id, "executionId": by_order[data.order_id].id}}
        for data, _, due in paid if data.order_id in by_order])


def _rounds(fired: list[TimerFired], owner) -> list[list[TimerFired]]:
    """Split a timer batch so that no round holds two timers of one owner (customer or
    execution), each owner's timers in list order: a round's messages are in the database
    before the next round's cooldown and cap checks, as when the timers fire one by one."""
    rounds: list[list[TimerFired]] = []
    seen: dict[Any, int] = {}
    for f in fired:
        n = seen[owner(f)] = seen.get(owner(f), -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(f)
    return rounds


async def _executions(ctx: HandlerContext, fired: list[TimerFired]) -> dict[int, Any]:
    """The timers' executions by id (Core rows with what `deliver` reads)."""
    ids = list({int(f.payload["executionId"]) for f in fired})
    x = AutomationExecution
    rows = await ctx.session.execute(select(x.id, x.customer_id, x.idempotency_key, x.status)
                                     .where(in_values(x.id, ids)))
    return {r.id: r for r in rows}


async def fire_post_purchase(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """Two days after PAID (or DELIVERED): skip cancelled or refunded orders and those with nothing to
    recommend, else send the upsell. Order statuses, items and recommendations are looked
    up for the whole batch at once."""
    executions = await _executions(ctx, fired)
    first = {int(f.payload["executionId"]): f for f in reversed(fired)}  # one fire each
    fired = [f for f in fired if first[int(f.payload["executionId"])] is f
             and (e := executions.get(int(f.payload["executionId"]))) is not None
             and e.status == "WAITING"]
    orders = list({f.payload["orderId"] for f in fired})
    if not orders:
        return
    status = dict((await ctx.session.execute(select(Order.order_id, Order.status).where(
        Order.store_id == ctx.store_id, in_values(Order.order_id, orders)))).all())
    products: dict[str, list[str]] = {}
    for order_id, product_id in await ctx.session.execute(
            select(OrderItem.order_id, OrderItem.product_id).where(
                OrderItem.store_id == ctx.store_id, in_values(OrderItem.order_id, orders))
            .order_by(OrderItem.order_id, OrderItem.line_no)):
        products.setdefault(order_id, []).append(product_id)
    skipped: dict[str, list[int]] = {}
    paid = []
    for f in fired:
        execution, order_id = executions[int(f.payload["executionId"])], f.payload["orderId"]
        if status.get(order_id) not in COMPLETED_STATUSES:
            skipped.setdefault(f"order {order_id} is {status.get(order_id)}", []).append(
                execution.id)
        else:
            paid.append((f, execution, order_id))
    recs = await recommend_many(
        ctx.session, ctx.settings, ctx.store_id,
        [(e.customer_id, products.get(order_id, [])) for _, e, order_id in paid], ctx.now(),
        trigger="post_purchase")
    send = {}
    for (f, execution, order_id), products_ in zip(paid, recs):
        if products_:
            send[f.key] = (execution, {"products": products_, "order_id": order_id})
        else:
            skipped.setdefault("nothing to recommend", []).append(execution.id)
    for reason, ids in skipped.items():
        await _mark(ctx, ids, "SKIPPED", reason)
    for round_ in _rounds([f for f in fired if f.key in send],
                          lambda f: send[f.key][0].customer_id):
        chosen = [send[f.key] for f in round_]
        step = Step("post_purchase", "post_purchase_upsell", cooldown=_cooldown(ctx),
                    variables={e.customer_id: variables for e, variables in chosen})
        await deliver(ctx, [e for e, _ in chosen], step)


# --- welcome series -----------------------------------------------------------------------


def _welcome_step(ctx: HandlerContext, number: int) -> Step:
    a = ctx.settings.automations
    last = len(a.welcome_delays) - 1
    return Step("welcome", f"welcome_{number + 1}",
                a.welcome_discount_percent if number == last else None,
                number=number, final=number == last)


async def on_customer_upserted(ctx: HandlerContext, events: list[Event]) -> None:
    """Customers new within the last day start the welcome series: the first message now,
    the others by durable timers `welcome_delays` after sign-up (set-based for the run)."""
    if not enabled(ctx, "welcome"):
        return
    now = ctx.now()
    joined: dict[str, datetime] = {}
    for event in events:
        data = event.data
        if isinstance(data, CustomerUpserted):
            at = data.created_at or event.occurred_at
            if now - at <= timedelta(days=1):  # else an old customer's profile change
                joined[data.customer_id] = at
    if not joined:
        return
    workflow = await ensure_workflow(ctx, "welcome")
    if not workflow.enabled:
        return
    fresh = await open_executions(ctx, workflow, [(c, "series", None) for c in joined],
                                  status="WAITING")
    if not fresh:
        return
    delays = ctx.settings.automations.welcome_delays
    first = 0 if delays[0] <= timedelta(0) else None
    await ctx.schedule_many([
        {"key": f"welcome:{x.customer_id}:{number}", "kind": WELCOME_KIND,
         "due_at": joined[x.customer_id] + delays[number],
         "payload": {"executionId": x.id, "step": number}}
        for x in fresh for number in range(len(delays)) if number != first])
    if first is not None:
        await deliver(ctx, fresh, _welcome_step(ctx, 0))


async def fire_welcome_step(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """The welcome messages after the first, each step of the batch's executions sent
    together (an execution's steps in timer order, one round each)."""
    for round_ in _rounds(fired, lambda f: int(f.payload["executionId"])):
        executions = await _executions(ctx, round_)
        steps: dict[int, list[Any]] = {}
        for f in round_:
            execution = executions.get(int(f.payload["executionId"]))
            if execution is not None and execution.status not in ("CANCELLED", "FAILED",
                                                                  "COMPLETED"):
                steps.setdefault(int(f.payload["step"]), []).append(execution)
        for number, chosen in sorted(steps.items()):
            await deliver(ctx, chosen, _welcome_step(ctx, number))
