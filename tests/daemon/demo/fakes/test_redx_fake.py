"""The local RedX OpenAPI answers and calls back as RedX documents.

Source: RedX's OpenAPI documentation v1.0.0-beta (merchant panel "Developer API"; no public
URL was found, so this follows the copy kept in public repositories): API-ACCESS-TOKEN:
Bearer header, POST /parcel -> tracking_id, /parcel/info and /parcel/track, /areas, and the
webhook body {tracking_number, timestamp, status, message_en, message_bn, invoice_number}
posted to the merchant's callback URL with its credentials in the query string. Error bodies
are inferred, as the fake's docstring says.
"""

from __future__ import annotations

import json

import pytest

from stormd.daemon.demo.fakes.redx import DELIVERED_PATH, FakeRedx

PARCEL = {"customer_name": "Karim Uddin", "customer_phone": "01711000000",
          "delivery_area": "Dhanmondi", "delivery_area_id": 2,
          "customer_address": "House 12, Road 4, Dhanmondi, Dhaka-1209",
          "merchant_invoice_id": "ORD-1001", "cash_collection_amount": "1250",
          "parcel_weight": 500, "value": 1250, "instruction": "Call first"}


@pytest.fixture
async def redx(merchant):
    async with FakeRedx(callback_url=f"{merchant.base_url}/couriers/redx?token=s3cret") as fake:
        yield fake


def auth(fake):
    return {"API-ACCESS-TOKEN": f"Bearer {fake.access_token}"}


async def test_parcel_is_created_tracked_and_delivered(redx, merchant, http):
    async with http.post(f"{redx.api_url}/parcel", json=PARCEL, headers=auth(redx)) as r:
        assert r.status == 200
        tracking_id = (await r.json())["tracking_id"]

    async with http.get(f"{redx.api_url}/parcel/info/{tracking_id}", headers=auth(redx)) as r:
        parcel = (await r.json())["parcel"]
    assert (parcel["status"], parcel["merchant_invoice_id"]) == ("pickup-pending", "ORD-1001")
    assert (parcel["cash_collection_amount"], parcel["delivery_area_id"]) == (1250, 2)

    deliveries = await redx.advance_through(tracking_id)
    assert all(d is not None and d.status == 200 for d in deliveries)
    hooks = merchant.received[-len(DELIVERED_PATH):]
    assert all(h.path == "/couriers/redx" and h.query == {"token": "s3cret"} for h in hooks)
    bodies = [json.loads(h.body) for h in hooks]
    assert [b["status"] for b in bodies] == list(DELIVERED_PATH)
    last = bodies[-1]
    assert (last["tracking_number"], last["invoice_number"]) == (tracking_id, "ORD-1001")
    assert last["message_en"] and last["message_bn"] and last["timestamp"].endswith("Z")

    async with http.get(f"{redx.api_url}/parcel/info/{tracking_id}", headers=auth(redx)) as r:
        assert (await r.json())["parcel"]["status"] == "delivered"
    async with http.get(f"{redx.api_url}/parcel/track/{tracking_id}", headers=auth(redx)) as r:
        tracking = (await r.json())["tracking"]
    assert tracking[0]["message_en"] == "Package is created successfully"
    assert len(tracking) == 1 + len(DELIVERED_PATH)


async def test_requests_redx_would_refuse(redx, http):
    async with http.post(f"{redx.api_url}/parcel", json=PARCEL,
                         headers={"API-ACCESS-TOKEN": "Bearer wrong"}) as r:
        assert (r.status, await r.json()) == (401, {"message": "Unauthorized"})
    async with http.post(f"{redx.api_url}/parcel", json=PARCEL,
                         headers={"Authorization": f"Bearer {redx.access_token}"}) as r:
        assert r.status == 401

    bad = dict(PARCEL, delivery_area_id=999, customer_phone="123")
    del bad["value"]
    async with http.post(f"{redx.api_url}/parcel", json=bad, headers=auth(redx)) as r:
        assert r.status == 400
        errors = (await r.json())["validation_errors"]
    assert set(errors) == {"delivery_area_id", "customer_phone", "value"}
    assert redx.parcels == {}

    async with http.get(f"{redx.api_url}/parcel/info/NOPE", headers=auth(redx)) as r:
        assert (r.status, await r.json()) == (404, {"message": "Parcel not found"})
    async with http.get(f"{redx.api_url}/areas", params={"post_code": "1209"},
                        headers=auth(redx)) as r:
        assert [a["name"] for a in (await r.json())["areas"]] == ["Dhanmondi"]
    with pytest.raises(KeyError):
        await redx.advance("NOPE", "delivered")
