"""docs/metrics.md on a running daemon: `/metrics`, read by prometheus_client's own parser, has
every metric the contract names with its type and labels from start-up on, counts what
happens, and its label values stay bounded (never a customer or event id)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from daemon_helpers import customer, eventually, publish
from prometheus_client.parser import text_string_to_metric_families

from stormd.schema.marketing.segments import CustomerSegment

# family (the parser drops `_total`) -> (type, label names)
CONTRACT = {
    "stormd_events": ("counter", {"type", "outcome"}),
    "stormd_event_seconds": ("histogram", set()),
    "stormd_messages": ("counter", {"channel", "provider", "status"}),
    "stormd_mailbox_depth": ("gauge", {"actor"}),
    "stormd_rfm_run_seconds": ("histogram", set()),
    "stormd_segment_members": ("gauge", {"store", "segment"}),
}


async def scrape(daemon) -> tuple[dict, dict]:
    """(families by name, {(sample name, sorted labels): value})."""
    host, port = daemon.http.bound["metrics"]
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://{host}:{port}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    return families, samples


def events(samples: dict, type_: str, outcome: str) -> float:
    return samples[("stormd_events_total", (("outcome", outcome), ("type", type_)))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_every_contract_metric_is_exposed_with_its_type_and_labels_and_counts(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():  # refreshed before this start
        session.add(CustomerSegment(store_id="store_9", slug="champions", name="Champions",
                                    criteria={}, builtin=True, member_count=42,
                                    created_at=now, updated_at=now, refreshed_at=now))
    d = await start_daemon(daemon_settings())

    families, before = await scrape(d)  # nothing has happened yet
    for name, (type_, labels) in CONTRACT.items():
        family = families.get(name)
        assert family is not None, f"{name} missing"
        assert family.type == type_, name
        assert family.documentation, f"{name} has no HELP"
        assert family.samples, f"{name} has no series"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample
    # Bounded label sets are there from the start (at zero in a fresh process; the
    # registry is the process's, so other tests in this one may have counted already).
    for series in (("stormd_events_total", (("outcome", "rejected"), ("type", "order.created"))),
                   ("stormd_messages_total",
                    (("channel", "sms"), ("provider", "outbox"), ("status", "sent"))),
                   ("stormd_messages_total",
                    (("channel", "email"), ("provider", "none"), ("status", "held"))),
                   ("stormd_mailbox_depth", (("actor", "cart"),))):
        assert series in before, series
    # The last refresh's segment sizes are reported before the next one.
    assert before[("stormd_segment_members",
                   (("segment", "champions"), ("store", "store_9")))] == 42

    for i in range(20):
        await publish(js, customer(f"cust_{i}", id_=f"evt_metrics_{i}"))
    await publish(js, customer("cust_0", id_="evt_metrics_0"), msg_id=None)  # the inbox's
    await js.publish("stormcom.events.store_1.customer.upserted", b"not json")

    expected = {"processed": 20, "duplicate": 1, "rejected": 1}

    def increments(samples: dict) -> dict[str, float]:
        return {outcome: events(samples, "customer.upserted", outcome)
                - events(before, "customer.upserted", outcome) for outcome in expected}

    async def after_events():
        _, samples = await scrape(d)
        done = all(n >= expected[o] for o, n in increments(samples).items())
        return samples if done else None

    after = await eventually(after_events)
    assert increments(after) == expected
    assert after[("stormd_event_seconds_count", ())] == before[
        ("stormd_event_seconds_count", ())] + 20
    # Label values are bounded sets: no customer or event id ever becomes one.
    values = {v for _, labels in after for _, v in labels}
    assert not [v for v in values if v.startswith(("cust_", "evt_"))]
