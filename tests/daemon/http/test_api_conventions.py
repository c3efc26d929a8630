"""The conventions every list and write follows: cursor pages that neither repeat nor skip
(whatever the sort), cursors bound to their sort and filters, idempotent redemption, and
the audit log of every write, made through the API or at the command line."""

from __future__ import annotations

import asyncio
import json

import pytest
from api_helpers import problem_of
from campaign_data import NOON, STORE, add_store
from click.testing import CliRunner

from stormd.daemon.cli.main import main
from stormd.schema.shop.promotions import DiscountCode

BASE = f"/api/v1/stores/{STORE}"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _walk(client, path: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = await client.get(path, params={**params, "limit": 3,
                                              **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return items


@SQLITE_ONLY
async def test_every_list_pages_completely_in_any_order(api):
    a = await api()
    async with a.daemon.sessionmaker() as s:
        await add_store(s)
        await s.commit()
    client = await a.store_client(STORE)
    everything = (await client.get(f"{BASE}/templates", params={"limit": 200})).json()["items"]
    for sort in ("slug", "-slug", "name", "-name"):
        walked = await _walk(client, f"{BASE}/templates", sort=sort)
        keys = [t["slug"] for t in walked]
        assert sorted(keys) == sorted(t["slug"] for t in everything) and len(set(keys)) == len(keys)
        field = sort.lstrip("-")
        values = [(t[field], t["slug"]) for t in walked]
        assert [v[0] for v in values] == sorted((v[0] for v in values),
                                                reverse=sort.startswith("-"))
    segments = await _walk(client, f"{BASE}/segments", sort="-slug")
    assert [s["slug"] for s in segments] == ["vip", "loyal", "hibernating", "at-risk"]
    first = (await client.get(f"{BASE}/templates", params={"limit": 3, "sort": "slug"})).json()
    other_sort = await client.get(f"{BASE}/templates", params={
        "limit": 3, "sort": "-name", "cursor": first["nextCursor"]})
    assert "cursor" in problem_of(other_sort, 422)["detail"]
    other_filter = await client.get(f"{BASE}/templates", params={
        "limit": 3, "sort": "slug", "cursor": first["nextCursor"], "system": "true"})
    problem_of(other_filter, 422)
    problem_of(await client.get(f"{BASE}/templates", params={"sort": "usage"}), 422)


@SQLITE_ONLY
async def test_redeem_with_an_idempotency_key_replays_instead_of_failing(api):
    a = await api()
    async with a.daemon.sessionmaker() as s:
        await add_store(s)
        s.add(DiscountCode(store_id=STORE, code="SAVE10-BBBB", customer_id=None,
                           percent=10, trigger="campaign", created_at=NOON))
        await s.commit()
    client = await a.store_client(STORE)
    body = {"customerId": "c9", "orderId": "o9"}
    headers = {"Idempotency-Key": "checkout-o9"}
    first = await client.post(f"{BASE}/discounts/SAVE10-BBBB/redeem", json=body, headers=headers)
    retry = await client.post(f"{BASE}/discounts/SAVE10-BBBB/redeem", json=body, headers=headers)
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
    plain = await client.post(f"{BASE}/discounts/SAVE10-BBBB/redeem", json=body)
    problem_of(plain, 409)  # without the key a second redemption is refused
    problem_of(await client.post(f"{BASE}/discounts/SAVE10-BBBB/redeem", json=body,
                                 headers={"Idempotency-Key": "x" * 201}), 422)


async def test_writes_are_audited_with_who_what_when(api, tmp_path):
    a = await api()
    async with a.daemon.sessionmaker() as s:
        await add_store(s)
        await s.commit()
    key = await a.key(STORE, "console")
    client = a.client(key)
    await client.post(f"{BASE}/segments", json={"slug": "big", "name": "Big spenders",
                                                 "criteria": {"orders.total": {"gte": 5000}}})
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{a.daemon.settings.database.url}"\n')
    defn = tmp_path / "s.json"
    defn.write_text(json.dumps({"name": "Bigger spenders"}))
    cli = await asyncio.to_thread(CliRunner().invoke, main, [
        "segments", "update", "big", "--file", str(defn), "--store", STORE,
        "--config", str(config)])
    assert cli.exit_code == 0, cli.output
    entries = (await client.get(f"{BASE}/audit")).json()["items"]
    assert [(e["action"], e["target"]) for e in entries[:2]] == [
        ("segments.update", "big"), ("segments.create", "big")]
    by_cli, by_key = entries[0], entries[1]
    assert by_cli["actor"].startswith("cli:") and by_cli["keyId"] is None
    assert by_cli["detail"] == {"name": "Bigger spenders"}
    assert by_key["keyId"] == key.split("_")[1] and "console" in by_key["actor"]
    assert by_key["detail"]["criteria"] == {"orders.total": {"gte": 5000}}
    only = (await client.get(f"{BASE}/audit", params={"action": "segments.create"})).json()
    assert [e["action"] for e in only["items"]] == ["segments.create"]
    assert (await client.get(f"{BASE}/segments/big")).json()["name"] == "Bigger spenders"
