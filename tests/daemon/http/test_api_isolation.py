"""Tenant isolation, for every operation of the API: a key of store A, used on store B's
path, gets exactly the 404 a store that does not exist gets, and changes nothing of B.
The operations come from the daemon's own /openapi.json, so a new path is covered the day
it is added; each is tried with requests schemathesis builds from its schema (valid ones,
naming B's real segment, campaign, template, code, customer and trigger)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests
import schemathesis
from campaign_data import NOON, add_customers, customer_row
from hypothesis import HealthCheck, Phase, given, settings
from live_daemon import LiveDaemon
from sqlalchemy import func, select

from stormd.handlers.access.keys import create_key
from stormd.handlers.campaigns.service import create_campaign, parse_spec
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call
from stormd.schema.marketing.campaigns import CampaignTemplate, EmailCampaign
from stormd.schema.marketing.segments import CustomerSegment
from stormd.schema.runtime.access import AuditEntry
from stormd.schema.shop.promotions import DiscountCode
from stormd.schema.shop.stores import Store

A, B = "store_a", "store_b"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _seed(daemon) -> dict:
    job = JobContext(daemon.sessionmaker, daemon.settings, daemon.clock, daemon.registry)
    call = Call(job, Actor.command_line())
    keys = {s: (await create_key(call, s)).key for s in (A, B)}
    ids = {}
    for store in (A, B):
        async with daemon.sessionmaker() as s:
            await add_customers(s, [customer_row(f"c{i}", store_id=store) for i in range(3)])
            s.add(DiscountCode(store_id=store, code="SAVE10-SHARED", customer_id="c0",
                               percent=Decimal(10), trigger="win_back", created_at=NOON))
            await s.commit()
        async with daemon.sessionmaker() as s:
            seg = CustomerSegment(store_id=store, slug="regulars", name="regulars",
                                  criteria={}, builtin=False, member_count=0, created_at=NOON,
                                  updated_at=NOON)
            s.add(seg)
            await s.commit()
        from stormd.handlers.outreach.service import TemplateDefinition, save_template

        await save_template(call, store, "mine", TemplateDefinition(
            name="Mine", content={"sms": {"en": "Hello {{ name }}"}}))
        made = await create_campaign(call, store, parse_spec({
            "name": "Known", "channels": ["sms"], "segments": ["regulars"], "template": "mine"}))
        ids[store] = made.id
    return {"keys": keys, "campaigns": ids}


async def _state(daemon, store: str) -> str:
    """Everything of a store the API could change, as one comparable text."""
    async with daemon.sessionmaker() as s:
        rows = {
            "store": [(r.name, r.timezone, str(r.min_roi), r.shop_url)
                      for r in (await s.scalars(select(Store).where(Store.id == store))).all()],
            "segments": sorted((r.slug, r.name, json.dumps(r.criteria)) for r in (
                await s.scalars(select(CustomerSegment).where(
                    CustomerSegment.store_id == store))).all()),
            "campaigns": sorted((r.id, r.name, r.status) for r in (await s.scalars(
                select(EmailCampaign).where(EmailCampaign.store_id == store))).all()),
            "templates": sorted((r.slug, json.dumps(r.default_content)) for r in (
                await s.scalars(select(CampaignTemplate).where(
                    CampaignTemplate.store_id == store))).all()),
            "codes": sorted((r.code, str(r.redeemed_at)) for r in (await s.scalars(
                select(DiscountCode).where(DiscountCode.store_id == store))).all()),
            "audit": await s.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.store_id == store)),
        }
    return json.dumps(rows, default=str)


@pytest.fixture
def live(daemon_settings):
    daemon = LiveDaemon.start(daemon_settings())
    try:
        yield daemon, daemon.run(_seed(daemon.daemon))
    finally:
        daemon.stop()


def _prober(strategy, expect: str, url: str, session, headers: dict, leaks: list[str]):
    """Send a few of `strategy`'s requests; note any answer but the no-such-store 404."""

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def probe(case):
        reply = case.call(base_url=url, session=session, headers=headers, timeout=60)
        body = reply.json() if reply.content else {}
        kind = reply.headers.get("content-type") or [""]
        if (reply.status_code != 404
                or not str(kind[0] if isinstance(kind, list) else kind).startswith(
                    "application/problem")
                or body.get("detail") != f"there is no store {expect!r}"):
            leaks.append(f"{case.method} {case.formatted_path}: {reply.status_code} "
                         f"{reply.text[:200]}")

    return probe


def test_a_store_key_cannot_read_or_change_another_store(live):
    daemon, seeded = live
    doc = requests.get(f"{daemon.url}/openapi.json", timeout=30).json()
    for path in doc["paths"].values():
        for op in path.values():
            op.pop("security", None)
    schema = schemathesis.openapi.from_dict(doc)
    session = requests.Session()
    as_a = {"Authorization": f"Bearer {seeded['keys'][A]}"}
    before = daemon.run(_state(daemon.daemon, B))
    covered, leaks = [], []
    for result in schema.get_all_operations():
        op = result.ok()
        if "{storeId}" not in op.path:
            continue
        covered.append(f"{op.method.upper()} {op.path}")
        named = {"storeId": B, "slug": "regulars", "id": seeded["campaigns"][B],
                 "code": "SAVE10-SHARED", "customerId": "c0", "trigger": "win_back"}
        params = {p: v for p, v in named.items() if f"{{{p}}}" in op.path}
        for store, expect in ((B, B), ("no_such_store", "no_such_store")):
            strategy = op.as_strategy(path_parameters={**params, "storeId": store},
                                      headers={"If-Match": "*", "Idempotency-Key": "k-1"}
                                      if op.method in ("put", "patch", "delete", "post") else None)

            _prober(strategy, expect, daemon.url, session, as_a, leaks)()
    assert len(covered) >= 35, covered
    assert leaks == []
    assert daemon.run(_state(daemon.daemon, B)) == before  # nothing of B changed
    listed = session.get(f"{daemon.url}/api/v1/stores", headers=as_a, timeout=30).json()
    assert [s["id"] for s in listed["items"]] == [A]
