"""Reactions to customers entering segments: the VIP milestone reward and the merchants'
segment-entry sequences.

Entering `vip` (composite >= 38) earns the VIP reward, at most once a month (with
`automations.vip_by = "predicted_clv"`, entering the top of the store by predicted
365-day value does instead). A segment with
an enabled `segment_entry:<slug>` workflow starts its sequence for each entrant, at most
once a local day: the first step at once (or after its `after`), each later step by a
durable timer `after` the one before it (handlers/automations/workflows.py). A customer
who has left the segment when a later step is due gets no more of it (the execution is
CANCELLED, "left the segment").

A refresh says which entrants came by a backfill (a segment's first fill, changed criteria,
imported history: docs/segments.md). They react only where the workflow's
`react_to_backfill`, or `automations.react_to_backfill`, says so; otherwise each gets a
SKIPPED execution ("segment backfill") in that bucket, so the log shows why no reward went
out and a later entry in the same bucket does not send it either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, select

from stormd.handlers.automations.triggers import (
    Step,
    _cooldown,
    _executions,
    _mark,
    _rounds,
    deliver,
    enabled,
    ensure_workflow,
    local_today,
    open_executions,
    run_trigger,
)
from stormd.handlers.automations.workflows import (
    WorkflowConfig,
    WorkflowError,
    parse_config,
    reacts_to_backfill,
)
from stormd.handlers.kernel.context import HandlerContext, TimerFired
from stormd.handlers.outreach.queue import store_profile
from stormd.handlers.predictions.nightly import VIP_PREDICTED
from stormd.schema.db.inlist import in_values
from stormd.schema.marketing.automations import AutomationWorkflow
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember

log = logging.getLogger(__name__)

SEQUENCE_KIND = "automation.segment_entry"
BACKFILL = "segment backfill"
RUNNING = ("PENDING", "RUNNING", "WAITING")


async def _skip_backfill(ctx: HandlerContext, trigger: str, customers: list[str],
                         bucket: str, subject: str) -> None:
    """A SKIPPED execution for each backfill entrant the trigger does not react to."""
    if not customers:
        return
    workflow = await ensure_workflow(ctx, trigger)
    if not workflow.enabled:
        return
    for i in range(0, len(customers), 1000):
        await open_executions(ctx, workflow, [(c, bucket, subject)
                                              for c in customers[i:i + 1000]],
                              status="SKIPPED", error=BACKFILL)


def _split(entered: list[str], backfill: Sequence[str], react: bool
           ) -> tuple[list[str], list[str]]:
    """(who reacts, who is skipped as backfill)."""
    if react or not backfill:
        return entered, []
    held = set(backfill)
    return [c for c in entered if c not in held], [c for c in entered if c in held]


async def on_segment_entered(ctx: HandlerContext, segment: str, entered: list[str],
                             exited: list[str], backfill: Sequence[str] = ()) -> None:
    """The VIP reward on entering `vip`; a segment-entry workflow's sequence on entering
    its segment (backfill entrants only where the workflow reacts to them)."""
    if not entered:
        return
    store = await store_profile(ctx.session, ctx.settings, ctx.store_id)
    today = local_today(ctx, store.tz)
    a = ctx.settings.automations
    if segment == ("vip" if a.vip_by == "rfm" else VIP_PREDICTED) and enabled(ctx, "vip"):
        month = today.strftime("%Y-%m")
        config = await _workflow_config(ctx, "vip")
        react, skipped = _split(entered, backfill,
                                reacts_to_backfill(ctx.settings, "vip", config))
        await _skip_backfill(ctx, "vip", skipped, month, "vip")
        step = Step("vip", "vip_reward", ctx.settings.automations.vip_discount_percent,
                    cooldown=_cooldown(ctx))
        await run_trigger(ctx, react, month, step, subject_id="vip")
    if not enabled(ctx, "segment_entry"):
        return
    trigger = f"segment_entry:{segment}"
    workflow = (await ctx.session.scalars(select(AutomationWorkflow).where(
        AutomationWorkflow.store_id == ctx.store_id, AutomationWorkflow.trigger == trigger,
        AutomationWorkflow.enabled.is_(True)))).first()
    if workflow is None:
        return
    try:
        config = parse_config(trigger, workflow.config)
    except WorkflowError as exc:  # saved before the check existed: say so, send nothing
        log.error("store %s workflow %s has a bad configuration, skipped: %s",
                  ctx.store_id, trigger, exc)
        return
    react, skipped = _split(entered, backfill, reacts_to_backfill(ctx.settings, trigger, config))
    await _skip_backfill(ctx, trigger, skipped, today.isoformat(), segment)
    await start_sequence(ctx, workflow, config, segment, react, today.isoformat())


async def _workflow_config(ctx: HandlerContext, trigger: str) -> WorkflowConfig | None:
    config = (await ctx.session.execute(select(AutomationWorkflow.config).where(
        AutomationWorkflow.store_id == ctx.store_id,
        AutomationWorkflow.trigger == trigger))).scalar()
    try:
        return parse_config(trigger, config) if config else None
    except WorkflowError:
        return None


def _step(ctx: HandlerContext, trigger: str, config: WorkflowConfig, number: int) -> Step:
    s = config.steps[number]
    return Step(trigger, s.template or s.variants[0]["template"], s.discount_percent,
                channels=s.channels, number=number, final=number == len(config.steps) - 1,
                cooldown=_cooldown(ctx), variants=s.variants)


async def start_sequence(ctx: HandlerContext, workflow: AutomationWorkflow,
                         config: WorkflowConfig, segment: str, customers: list[str],
                         bucket: str) -> None:
    """Open the entrants' executions; send the steps due now, schedule the others."""
    if not customers:
        return
    now = ctx.now()
    offsets, total = [], timedelta(0)
    for s in config.steps:
        total += s.after
        offsets.append(total)
    for i in range(0, len(customers), 1000):
        fresh = await open_executions(ctx, workflow, [(c, bucket, segment)
                                                      for c in customers[i:i + 1000]],
                                      status="WAITING")
        if not fresh:
            continue
        await ctx.schedule_many([
            {"key": f"seq:{x.id}:{number}", "kind": SEQUENCE_KIND, "due_at": now + offset,
             "payload": {"executionId": x.id, "step": number, "segment": segment}}
            for x in fresh for number, offset in enumerate(offsets) if offset > timedelta(0)])
        for number, offset in enumerate(offsets):
            if offset > timedelta(0):
                break
            await deliver(ctx, fresh, _step(ctx, workflow.trigger, config, number))


async def fire_sequence_step(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """A later step of segment-entry sequences: sent to those still running and still in
    the segment; those who left it are CANCELLED."""
    configs: dict[str, WorkflowConfig | None] = {}
    for round_ in _rounds(fired, lambda f: int(f.payload["executionId"])):
        executions = await _executions(ctx, round_)
        by_step: dict[tuple[str, int], list[Any]] = {}
        for f in round_:
            e = executions.get(int(f.payload["executionId"]))
            if e is not None and e.status not in ("CANCELLED", "FAILED", "COMPLETED"):
                by_step.setdefault((f.payload["segment"], int(f.payload["step"])), []).append(e)
        for (segment, number), chosen in sorted(by_step.items()):
            trigger = f"segment_entry:{segment}"
            if trigger not in configs:
                configs[trigger] = await _workflow_config(ctx, trigger)
            config = configs[trigger]
            if config is None or number >= len(config.steps):
                await _mark(ctx, [e.id for e in chosen], "CANCELLED", "workflow changed")
                continue
            members = await _still_members(ctx, segment, [e.customer_id for e in chosen])
            gone = [e.id for e in chosen if e.customer_id not in members]
            await _mark(ctx, gone, "CANCELLED", "left the segment")
            await deliver(ctx, [e for e in chosen if e.customer_id in members],
                          _step(ctx, trigger, config, number))


async def _still_members(ctx: HandlerContext, segment: str, customers: list[str]) -> set[str]:
    m, s = CustomerSegmentMember, CustomerSegment
    return set((await ctx.session.scalars(
        select(m.customer_id).join(s, and_(s.id == m.segment_id, s.store_id == m.store_id))
        .where(m.store_id == ctx.store_id, s.slug == segment,
               in_values(m.customer_id, customers)))).all())
