"""The demo's "hostile input" section: what a careless or hostile storefront sends at the end
of the day, and what stormd does with it (docs/events.md, "Limits"; docs/daemon.md,
"Supervision").

It publishes a handful of events over the limits (nested 1,000 levels, a total of 1e30, a
price of 10.999, a 300-character id, a NUL in an id, an order dated 9999, a quantity of
10^30) and one event id used by two stores, then reports each dead letter's reason, that
both stores' events were handled, and that every part of the daemon is still up with no
restart.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.daemon.demo.section import Section
from stormd.schema.metrics import COMPONENTS
from stormd.schema.shop.customers import Customer

STORE = "dhaka_bazar"
OTHER = "chittagong_mart"  # a second store sending the very same event id
SHARED_ID = "evt-7"


def _hostile(now: str) -> list[tuple[str, str, bytes]]:
    """(what, type, raw body) of each hostile event."""

    def cart(id_: str, **data: Any) -> dict:
        return {"id": id_, "type": "cart.updated", "storeId": STORE, "occurredAt": now,
                "data": {"cartId": f"k_{id_}", "items": [
                    {"productId": "p1", "quantity": 1, "unitPrice": "100.00"}], **data}}

    def raw(env: dict, placeholder: str = "", literal: str = "") -> bytes:
        text = json.dumps(env)
        return (text.replace(f'"{placeholder}"', literal) if placeholder else text).encode()

    deep = cart("h_deep", extra="@deep")
    order = {"id": "h_9999", "type": "order.status_changed", "storeId": STORE,
             "occurredAt": "9999-12-31T23:00:00-06:00",
             "data": {"orderId": "o_1", "status": "CANCELLED"}}
    return [
        ("JSON nested 1,000 levels", "cart.updated",
         raw(deep, "@deep", "[" * 1000 + "]" * 1000)),
        ("a total of 1e30", "cart.updated", raw(cart("h_1e30", total="@t"), "@t", "1e30")),
        ("a price of 10.999", "cart.updated", raw(cart("h_price", items=[
            {"productId": "p1", "quantity": 1, "unitPrice": "10.999"}]))),
        ("a 300-character cart id", "cart.updated",
         raw(cart("h_long") | {"data": {"cartId": "k" * 300, "items": []}})),
        ("a NUL in a cart id", "cart.updated",
         raw(cart("h_nul") | {"data": {"cartId": "k\u0000", "items": []}})),
        ("a CANCELLED dated 9999", "order.status_changed", raw(order)),
        ("a quantity of 10^30", "cart.updated", raw(cart("h_qty", items=[
            {"productId": "p1", "quantity": "@q", "unitPrice": "1.00"}]), "@q", str(10**30))),
    ]


def _restarts() -> dict[str, float]:
    return {c: REGISTRY.get_sample_value("stormd_component_restarts_total",
                                         {"component": c}) or 0.0 for c in COMPONENTS}


async def report_hostile(session: AsyncSession, player: Any) -> Section:
    """Publish the hostile events, wait for them, report what became of them."""
    daemon, js, prefix = player.daemon, player.js, player.prefix
    restarts = _restarts()
    now = player.clock.now().isoformat()
    hostile = _hostile(now)
    for _, type_, body in hostile:
        await js.publish(f"{prefix}.events.{STORE}.{type_}", body)
    for store, name in ((STORE, "Shared id, first store"), (OTHER, "Shared id, second store")):
        env = {"id": SHARED_ID, "type": "customer.upserted", "storeId": store,
               "occurredAt": now, "data": {"customerId": "c_shared", "name": name}}
        await js.publish(f"{prefix}.events.{store}.customer.upserted", json.dumps(env).encode(),
                         headers={"Nats-Msg-Id": f"{store}:{SHARED_ID}"})
    await player.drained()

    letters = await js.pull_subscribe(f"{prefix}.dlq.>", durable=None,
                                      stream=daemon.settings.nats.dlq_stream)
    reasons: dict[bytes, str] = {}
    while True:
        try:
            batch = await letters.fetch(100, timeout=1)
        except TimeoutError:
            break
        reasons.update((m.data, m.headers.get("Stormd-Error", "")) for m in batch)
    await letters.unsubscribe()
    refused = [(what, reasons.get(body, "(not dead-lettered!)")) for what, _, body in hostile]
    async with daemon.sessionmaker() as fresh:  # the report's session predates these events
        both = sorted((await fresh.execute(select(Customer.store_id).where(
            Customer.customer_id == "c_shared"))).scalars())
    ready = await daemon.readiness()
    down = [c for c, up in ready["components"].items() if not up]
    restarted = {c: n - restarts[c] for c, n in _restarts().items() if n != restarts[c]}
    lines = [f"{len(hostile)} hostile events, each dead-lettered before any handler:"]
    lines += [f"  {what:<26} -> {why}" for what, why in refused]
    lines.append(f"event id {SHARED_ID!r} sent by two stores: handled for "
                 f"{' and '.join(both) or 'none'} (de-duplication is per store)")
    lines.append(f"afterwards: /readyz {'ready' if ready['ready'] else 'NOT ready'}; parts "
                 f"down: {', '.join(down) or 'none'} of {len(ready['components'])}; restarts: "
                 f"{restarted or 'none'}")
    data = {"deadLettered": dict(refused), "sharedIdHandledFor": both,
            "ready": ready["ready"], "restarts": restarted}
    return Section("hostile", "Hostile input (limits, per-store de-duplication, supervision)",
                   lines, data)
