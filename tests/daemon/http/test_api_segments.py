"""Segments over the HTTP API on a running daemon, on both databases: the CLI's behaviour
(create with members at once, preview, members), problem+json refusals, ETag/If-Match."""

from __future__ import annotations

from api_helpers import problem_of
from campaign_data import add_customers, customer_row

from stormd.handlers.scoring.criteria import MAX_LIST
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics

STORE = "store_1"
BASE = f"/api/v1/stores/{STORE}"


async def _shop(api, n: int = 5) -> None:
    """Customers with lifecycle rows: c0..c{n-1}, c0 and c1 with 3 orders, the rest 1."""
    now = api.daemon.clock.now()
    async with api.daemon.sessionmaker() as s:
        await add_customers(s, [customer_row(f"c{i}") for i in range(n)])
        for i in range(n):
            s.add(CustomerLifecycleMetrics(store_id=STORE, customer_id=f"c{i}", stage="ACTIVE",
                                           orders_count=3 if i < 2 else 1, as_of=now))
        await s.commit()


async def test_segments_lifecycle_over_http(api):
    a = await api()
    client = await a.store_client(STORE)
    await _shop(a)

    listed = await client.get(f"{BASE}/segments")
    assert listed.status_code == 200, listed.text
    assert [s["slug"] for s in listed.json()["items"]] == ["vip", "loyal", "at-risk",
                                                          "hibernating"]
    preview = await client.post(f"{BASE}/segments/preview",
                                json={"criteria": {"orders.count": {"gte": 3}}, "sample": 1})
    assert preview.json() == {"count": 2, "sample": [{"customerId": "c0", "enteredAt": None}]}

    created = await client.post(f"{BASE}/segments", json={
        "slug": "repeat", "name": "Repeat buyers", "criteria": {"orders.count": {"gte": 3}}})
    assert created.status_code == 201, created.text
    assert created.json()["members"] == 2  # at once, not at the next nightly run
    members = await client.get(f"{BASE}/segments/repeat/members", params={"limit": 1})
    page1 = members.json()
    assert [m["customerId"] for m in page1["items"]] == ["c0"]
    page2 = (await client.get(f"{BASE}/segments/repeat/members",
                              params={"limit": 1, "cursor": page1["nextCursor"]})).json()
    assert [m["customerId"] for m in page2["items"]] == ["c1"] and page2["nextCursor"] is None

    got = await client.get(f"{BASE}/segments/repeat")
    etag = got.headers["etag"]
    problem_of(await client.patch(f"{BASE}/segments/repeat", json={"name": "x"}), 428)
    changed = await client.patch(f"{BASE}/segments/repeat", headers={"If-Match": etag},
                                 json={"criteria": {"orders.count": {"gte": 1}}})
    assert changed.status_code == 200 and changed.json()["members"] == 5
    stale = await client.patch(f"{BASE}/segments/repeat", headers={"If-Match": etag},
                               json={"name": "Mine"})
    assert "changed since you read it" in problem_of(stale, 412)["detail"]
    problem_of(await client.delete(f"{BASE}/segments/vip", headers={"If-Match": "*"}), 409)
    gone = await client.delete(f"{BASE}/segments/repeat",
                               headers={"If-Match": changed.headers["etag"]})
    assert gone.status_code == 204
    problem_of(await client.get(f"{BASE}/segments/repeat"), 404)


async def test_bad_segments_are_4xx_problems_naming_the_field(api):
    a = await api()
    client = await a.store_client(STORE)
    unknown = await client.post(f"{BASE}/segments/preview",
                                json={"criteria": {"orders.totl": 1}})
    assert "unknown field 'orders.totl'" in problem_of(unknown, 422)["detail"]
    bad_slug = problem_of(await client.post(f"{BASE}/segments", json={
        "slug": "Bad Slug", "name": "x", "criteria": {}}), 422)
    assert bad_slug["errors"][0]["field"] == "body.slug"
    problem_of(await client.post(f"{BASE}/segments", content=b"{nope",
                                 headers={"content-type": "application/json"}), 400)
    deep = b'{"criteria": ' + b"[" * 40 + b"]" * 40 + b"}"
    problem_of(await client.post(f"{BASE}/segments/preview", content=deep,
                                 headers={"content-type": "application/json"}), 400)
    problem_of(await client.post(f"{BASE}/segments/preview", content=b"x" * (1024 * 1024 + 1),
                                 headers={"content-type": "application/json"}), 413)
    wide = {"customer.locale": {"in": [f"l{i}" for i in range(MAX_LIST + 1)]}}
    problem_of(await client.post(f"{BASE}/segments/preview", json={"criteria": wide}), 422)
    problem_of(await client.get(f"{BASE}/segments", params={"limit": 500}), 422)
    problem_of(await client.get(f"{BASE}/segments", params={"cursor": "garbage"}), 422)
