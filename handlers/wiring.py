"""What stormd does with each event, timer, segment change and cron slot.

`build_registry()` is the one place that says which handler reacts to what, and in which
order the reactions to one event type run (inside one transaction: the state first, then
what reacts to it). Nothing registers itself on import; a new handler is added here.

`on` adds a state handler (it keeps the store's picture: a failure fails the event, which
is retried); `react` adds a reaction (it acts on that picture: its failure never undoes
the state; handlers/kernel/failures.py). Its `name` labels its failures in the metric and
the automation log.
"""

from __future__ import annotations

from stormd.handlers.automations import anniversary, segment_entry, triggers
from stormd.handlers.campaigns import campaigns
from stormd.handlers.carts import carts, recovery
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.handlers.reporting import kpis
from stormd.handlers.scoring import nightly, segments
from stormd.handlers.shop import customers, engagement, orders, products
from stormd.handlers.upkeep import inbox


def build_registry() -> HandlerRegistry:
    r = HandlerRegistry()

    # Events: each type's state handlers, then its reactions, in the order they run.
    on, react = r.on_event_batch, r.react_to_batch
    on("customer.upserted")(customers.on_customer_upserted)
    react("customer.upserted", name="welcome")(triggers.on_customer_upserted)
    react("customer.upserted", name="abandoned_cart")(recovery.resume_waiting)
    on("customer.consent_changed")(customers.on_consent_changed)
    react("customer.consent_changed", name="rescoring")(segments.rescore_on_event)
    react("customer.consent_changed", name="abandoned_cart")(recovery.resume_waiting)
    on("product.upserted")(products.on_product_upserted)
    on("cart.updated")(carts.keep_cart)
    on("cart.cleared")(carts.clear_cart)
    on("order.created")(orders.on_order_created)
    on("order.created")(carts.convert_carts)
    react("order.created", name="post_purchase")(triggers.on_order_paid)
    react("order.created", name="rescoring")(segments.rescore_on_event)
    on("order.status_changed")(orders.on_order_status_changed)
    react("order.status_changed", name="post_purchase")(triggers.on_order_paid)
    react("order.status_changed", name="rescoring")(segments.rescore_on_event)
    on("promotion.redeemed")(orders.on_promotion_redeemed)
    react("promotion.redeemed", name="rescoring")(segments.rescore_on_event)
    on(*engagement.EVENT_KIND)(engagement.on_email_engagement)
    # E-mail engagement feeds the lifecycle stage.
    react("email.open", "email.click", name="rescoring")(segments.rescore_on_event)

    # Timers: a kind's state handler, then its reactions.
    r.on_timer_batch(carts.ABANDON_TIMER)(carts.detect_abandonment)
    r.react_to_timer_batch(carts.ABANDON_TIMER, name="abandoned_cart")(recovery.start_pending)
    r.react_to_timer_batch(recovery.REMIND_TIMER, name="abandoned_cart")(recovery.run_due_steps)
    r.react_to_timer_batch(triggers.POST_PURCHASE_KIND, name="post_purchase")(
        triggers.fire_post_purchase)
    r.react_to_timer_batch(triggers.WELCOME_KIND, name="welcome")(triggers.fire_welcome_step)
    r.react_to_timer_batch(segment_entry.SEQUENCE_KIND, name="segment_entry")(
        segment_entry.fire_sequence_step)

    # Segment changes (after every refresh: nightly, real time, on demand).
    r.on_segment_change(segment_entry.on_segment_entered)

    # Cron jobs, on schedules read from the settings (daemon time zone).
    r.on_cron("rfm", lambda s: s.rfm.schedule)(nightly.nightly_rfm)
    r.on_cron("automations.win_back", lambda s: s.automations.win_back_schedule)(
        triggers.win_back_job)
    r.on_cron("automations.birthday", lambda s: s.automations.birthday_schedule)(
        triggers.birthday_job)
    r.on_cron("automations.anniversary", lambda s: s.automations.anniversary_schedule)(
        anniversary.anniversary_job)
    r.on_cron("campaigns.dispatch", lambda s: "* * * * *")(campaigns.dispatch_due_campaigns)
    r.on_cron("kpis", lambda s: "*/5 * * * *")(kpis.refresh_kpi_gauges)
    r.on_cron("inbox.prune", lambda s: inbox.SCHEDULE)(inbox.prune_inbox)
    return r
