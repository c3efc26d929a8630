"""What stormd does with each event, timer, segment change, cron slot and request.

`build_registry()` is the one place that says which handler reacts to what, and in which
order the reactions to one event type run (inside one transaction: the state first, then
what reacts to it). Nothing registers itself on import; a new handler is added here.
"""

from __future__ import annotations

from stormd.handlers.automations import anniversary, segment_entry, triggers
from stormd.handlers.campaigns import campaigns, service
from stormd.handlers.carts import carts, recovery
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.handlers.reporting import kpis
from stormd.handlers.scoring import nightly, segments
from stormd.handlers.shop import customers, engagement, orders, products


def build_registry() -> HandlerRegistry:
    r = HandlerRegistry()

    # Events, each type's reactions in the order they run.
    on = r.on_event_batch
    on("customer.upserted")(customers.on_customer_upserted)
    on("customer.upserted")(triggers.on_customer_upserted)  # welcome series
    on("customer.consent_changed")(customers.on_consent_changed)
    on("customer.consent_changed")(segments.rescore_on_event)
    on("product.upserted")(products.on_product_upserted)
    on("cart.updated")(carts.keep_cart)
    on("cart.cleared")(carts.clear_cart)
    on("order.created")(orders.on_order_created)
    on("order.created")(triggers.on_order_paid)  # post-purchase
    on("order.created")(carts.convert_carts)
    on("order.created")(segments.rescore_on_event)
    on("order.status_changed")(orders.on_order_status_changed)
    on("order.status_changed")(triggers.on_order_paid)
    on("order.status_changed")(segments.rescore_on_event)
    on("promotion.redeemed")(orders.on_promotion_redeemed)
    on("promotion.redeemed")(segments.rescore_on_event)
    on(*engagement.EVENT_KIND)(engagement.on_email_engagement)
    on("email.open", "email.click")(segments.rescore_on_event)  # engagement feeds the stage

    # Timers.
    r.on_timer_batch(carts.ABANDON_TIMER)(carts.detect_abandonment)
    r.on_timer_batch(recovery.REMIND_TIMER)(recovery.run_due_steps)
    r.on_timer_batch(triggers.POST_PURCHASE_KIND)(triggers.fire_post_purchase)
    r.on_timer_batch(triggers.WELCOME_KIND)(triggers.fire_welcome_step)
    r.on_timer_batch(segment_entry.SEQUENCE_KIND)(segment_entry.fire_sequence_step)

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

    # Request/reply.
    for name, handler in service.HANDLERS.items():
        r.on_request(name)(handler)
    return r
