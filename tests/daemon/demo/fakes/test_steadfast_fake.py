"""The local Steadfast Courier API answers and calls back as Steadfast documents.

Sources: Steadfast Courier Limited API Documentation V1
(https://docs.google.com/document/d/e/2PACX-1vTi0sTyR353xu1AK0nR8E_WKe5onCkUXGEf8ch8uoJy9qxGfgGnboSIkNosjQ0OOdXkJhgGuAsWxnIh/pub:
Api-Key/Secret-Key headers, create_order, status_by_cid/_invoice/_trackingcode, get_balance,
the delivery statuses) and the merchant panel's webhook documentation (Bearer auth token,
delivery_status and tracking_update bodies). Error bodies are inferred from integrators'
records, as the fake's docstring says.
"""

from __future__ import annotations

import json

import pytest

from stormd.daemon.demo.fakes.steadfast import FakeSteadfast

ORDER = {"invoice": "ORD-1001", "recipient_name": "Karim Uddin",
         "recipient_phone": "01711000000",
         "recipient_address": "House 12, Road 4, Dhanmondi, Dhaka-1209", "cod_amount": 1250,
         "note": "Call before delivery", "item_description": "Cotton panjabi",
         "delivery_type": 0}


@pytest.fixture
async def steadfast(merchant):
    async with FakeSteadfast(callback_url=f"{merchant.base_url}/couriers/steadfast") as fake:
        yield fake


def keys(fake):
    return {"Api-Key": fake.api_key, "Secret-Key": fake.secret_key}


async def test_consignment_is_created_polled_and_delivered_by_webhook(steadfast, merchant,
                                                                      http):
    async with http.post(f"{steadfast.api_url}/create_order", json=ORDER,
                         headers=keys(steadfast)) as r:
        assert r.status == 200
        created = await r.json()
    assert created["status"] == 200
    assert created["message"] == "Consignment has been created successfully."
    consignment = created["consignment"]
    assert (consignment["invoice"], consignment["status"], consignment["cod_amount"]) == (
        "ORD-1001", "in_review", 1250)
    cid, code = consignment["consignment_id"], consignment["tracking_code"]

    for path in (f"status_by_cid/{cid}", "status_by_invoice/ORD-1001",
                 f"status_by_trackingcode/{code}"):
        async with http.get(f"{steadfast.api_url}/{path}", headers=keys(steadfast)) as r:
            assert await r.json() == {"status": 200, "delivery_status": "in_review"}

    await steadfast.advance(cid, "pending")
    delivery = await steadfast.advance(cid, "delivered")
    assert delivery is not None and delivery.status == 200
    hook = merchant.received[-1]
    assert hook.path == "/couriers/steadfast"
    assert hook.headers["Authorization"] == f"Bearer {steadfast.webhook_token}"
    body = json.loads(hook.body)
    assert body["notification_type"] == "delivery_status"
    assert (body["consignment_id"], body["invoice"], body["status"]) == (
        cid, "ORD-1001", "delivered")
    assert (body["cod_amount"], body["delivery_charge"]) == (1250, 60)
    assert body["tracking_message"] and len(body["updated_at"]) == 19

    async with http.get(f"{steadfast.api_url}/status_by_invoice/ORD-1001",
                        headers=keys(steadfast)) as r:
        assert (await r.json())["delivery_status"] == "delivered"
    async with http.get(f"{steadfast.api_url}/get_balance", headers=keys(steadfast)) as r:
        assert await r.json() == {"status": 200, "current_balance": 1190}

    await steadfast.track(cid, "Package arrived at the sorting center.")
    tracking = json.loads(merchant.received[-1].body)
    assert tracking["notification_type"] == "tracking_update"
    assert tracking["tracking_message"] == "Package arrived at the sorting center."


async def test_requests_steadfast_would_refuse(steadfast, http):
    url = f"{steadfast.api_url}/create_order"
    async with http.post(url, json=ORDER, headers={"Api-Key": "x", "Secret-Key": "y"}) as r:
        assert (r.status, await r.json()) == (401, {"message": "Unauthenticated."})

    async with http.post(url, json=ORDER, headers=keys(steadfast)) as r:
        assert r.status == 200
    async with http.post(url, json=ORDER, headers=keys(steadfast)) as r:
        assert r.status == 400
        refused = await r.json()
    assert refused["status"] == 400
    assert refused["errors"] == {"invoice": ["The invoice has already been taken."]}

    bad = dict(ORDER, invoice="ORD 2", recipient_phone="01711", cod_amount=-5)
    async with http.post(url, json=bad, headers=keys(steadfast)) as r:
        assert set((await r.json())["errors"]) == {"invoice", "recipient_phone", "cod_amount"}
    assert len(steadfast.consignments) == 1

    async with http.get(f"{steadfast.api_url}/status_by_cid/1", headers=keys(steadfast)) as r:
        assert r.status == 404 and (await r.json())["status"] == 404
    with pytest.raises(ValueError):
        await steadfast.advance(next(iter(steadfast.consignments)), "teleported")
