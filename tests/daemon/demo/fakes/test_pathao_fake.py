"""The local Pathao Courier Merchant API answers and calls back as Pathao documents.

Sources: Pathao's merchant API documentation (merchant.pathao.com/courier/developer-api:
issue-token, orders, orders/{consignment_id}/info and their response envelopes); Pathao's own
WooCommerce plugin, github.com/pathao-eng/courier-woocommerce-plugin plugin-api.php (the
X-PATHAO-Signature header carrying the webhook secret, the 202 + X-Pathao-Merchant-Webhook-
Integration-Secret answer to "webhook_integration", the event -> status map); the merchant
panel's webhook page for the per-event payloads. Error bodies are inferred (Laravel Passport
for tokens, Laravel validation for orders), as the fake's docstring says.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from stormd.daemon.demo.fakes.pathao import DELIVERED_PATH, INTEGRATION_SECRET, FakePathao


def integration_ok(request, body):
    return web.json_response({"status": "ok"}, status=202,
                             headers={"X-Pathao-Merchant-Webhook-Integration-Secret":
                                      INTEGRATION_SECRET})


ORDER = {"store_id": 130820, "merchant_order_id": "ORD-1001", "recipient_name": "Karim Uddin",
         "recipient_phone": "01711000000",
         "recipient_address": "House 12, Road 4, Dhanmondi, Dhaka-1209", "delivery_type": 48,
         "item_type": 2, "item_quantity": 1, "item_weight": "0.5", "amount_to_collect": 1250,
         "item_description": "Cotton panjabi"}


@pytest.fixture
async def pathao(clock):
    async with FakePathao(clock=clock) as fake:
        yield fake


async def token(pathao, http) -> str:
    async with http.post(f"{pathao.base_url}/aladdin/api/v1/issue-token", json={
            "client_id": pathao.client_id, "client_secret": pathao.client_secret,
            "grant_type": "password", "username": pathao.username,
            "password": pathao.password}) as r:
        assert r.status == 200
        return (await r.json())["access_token"]


async def test_a_cod_order_is_created_tracked_and_delivered(pathao, merchant, http):
    merchant.reply = integration_ok
    assert await pathao.integrate_webhook(f"{merchant.base_url}/couriers/pathao")
    handshake = merchant.received[0]
    assert json.loads(handshake.body) == {"event": "webhook_integration"}
    assert handshake.headers["X-PATHAO-Signature"] == pathao.webhook_secret

    auth = {"Authorization": f"Bearer {await token(pathao, http)}"}
    async with http.post(f"{pathao.base_url}/aladdin/api/v1/orders", json=ORDER,
                         headers=auth) as r:
        assert r.status == 200
        created = await r.json()
    assert (created["message"], created["type"], created["code"]) == (
        "Order Created Successfully", "success", 200)
    data = created["data"]
    assert (data["merchant_order_id"], data["order_status"], data["delivery_fee"]) == (
        "ORD-1001", "Pending", 80)
    cid = data["consignment_id"]

    await pathao.drain()  # order.created is posted after the answer, not inside it
    created_hook = json.loads(merchant.received[-1].body)
    assert created_hook["event"] == "order.created"
    assert (created_hook["consignment_id"], created_hook["merchant_order_id"]) == (cid, "ORD-1001")
    assert created_hook["store_id"] == 130820 and created_hook["delivery_fee"] == 80
    assert created_hook["timestamp"].endswith("+00:00")

    info_url = f"{pathao.base_url}/aladdin/api/v1/orders/{cid}/info"
    async with http.get(info_url, headers=auth) as r:
        info = await r.json()
    assert (info["message"], info["data"]["order_status_slug"]) == ("Order info", "Pending")

    before = len(merchant.received)
    deliveries = await pathao.advance_through(cid)
    assert all(d is not None and d.status == 202 for d in deliveries)
    hooks = merchant.received[before:]
    assert [json.loads(h.body)["event"] for h in hooks] == list(DELIVERED_PATH)
    assert all(h.headers["X-PATHAO-Signature"] == pathao.webhook_secret for h in hooks)
    assert json.loads(hooks[0].body)["delivery_fee"] == 80

    async with http.get(info_url, headers=auth) as r:
        data = (await r.json())["data"]
    assert (data["order_status"], data["order_status_slug"]) == ("Delivered", "Delivered")
    assert data["merchant_order_id"] == "ORD-1001" and data["updated_at"]


async def test_returns_and_partial_deliveries_carry_their_details(pathao, merchant, http):
    merchant.reply = integration_ok
    await pathao.integrate_webhook(f"{merchant.base_url}/hook")
    auth = {"Authorization": f"Bearer {await token(pathao, http)}"}
    async with http.post(f"{pathao.base_url}/aladdin/api/v1/orders", json=ORDER,
                         headers=auth) as r:
        cid = (await r.json())["data"]["consignment_id"]
    await pathao.drain()
    await pathao.advance(cid, "order.partial-delivery", collected_amount=600,
                         reason="Customer kept one item")
    partial = json.loads(merchant.received[-1].body)
    assert (partial["collected_amount"], partial["reason"]) == (600, "Customer kept one item")
    await pathao.advance(cid, "order.returned", reason="Customer refused")
    assert json.loads(merchant.received[-1].body)["event"] == "order.returned"
    assert pathao.orders[cid].status_slug == "Return"
    with pytest.raises(ValueError):
        await pathao.advance(cid, "order.teleported")


async def test_no_events_reach_a_callback_that_failed_the_integration_check(pathao, merchant,
                                                                            http):
    assert not await pathao.integrate_webhook(f"{merchant.base_url}/hook")  # answers 200
    auth = {"Authorization": f"Bearer {await token(pathao, http)}"}
    async with http.post(f"{pathao.base_url}/aladdin/api/v1/orders", json=ORDER,
                         headers=auth) as r:
        cid = (await r.json())["data"]["consignment_id"]
    assert await pathao.advance(cid, "order.picked") is None
    await pathao.drain()
    assert len(merchant.received) == 1  # only the failed check
    assert pathao.orders[cid].status_slug == "Picked"


async def test_token_grants_follow_oauth(pathao, http):
    url = f"{pathao.base_url}/aladdin/api/v1/issue-token"
    base = {"client_id": pathao.client_id, "client_secret": pathao.client_secret}
    async with http.post(url, json={**base, "grant_type": "password",
                                    "username": pathao.username,
                                    "password": pathao.password}) as r:
        issued = await r.json()
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 432000)

    async with http.post(url, json={**base, "grant_type": "refresh_token",
                                    "refresh_token": issued["refresh_token"]}) as r:
        assert r.status == 200 and (await r.json())["access_token"] != issued["access_token"]

    async with http.post(url, json={**base, "client_secret": "wrong", "grant_type": "password",
                                    "username": pathao.username,
                                    "password": pathao.password}) as r:
        assert (r.status, (await r.json())["error"]) == (401, "invalid_client")
    async with http.post(url, json={**base, "grant_type": "password",
                                    "username": pathao.username, "password": "wrong"}) as r:
        assert (r.status, (await r.json())["error"]) == (400, "invalid_grant")
    async with http.post(url, json={**base, "grant_type": "client_credentials"}) as r:
        assert (r.status, (await r.json())["error"]) == (400, "unsupported_grant_type")


async def test_orders_refused_for_auth_validation_and_unknown_consignments(pathao, clock, http):
    orders = f"{pathao.base_url}/aladdin/api/v1/orders"
    async with http.post(orders, json=ORDER) as r:
        assert (r.status, await r.json()) == (401, {"message": "Unauthenticated."})

    auth = {"Authorization": f"Bearer {await token(pathao, http)}"}
    bad = dict(ORDER, recipient_phone="+88017", store_id=1, item_weight=25)
    del bad["recipient_name"]
    async with http.post(orders, json=bad, headers=auth) as r:
        assert r.status == 422
        refused = await r.json()
    assert (refused["type"], refused["code"]) == ("error", 422)
    assert set(refused["errors"]) == {"recipient_name", "recipient_phone", "store_id",
                                      "item_weight"}
    assert pathao.orders == {}

    async with http.get(f"{orders}/DL000000NOPE/info", headers=auth) as r:
        assert r.status == 404 and (await r.json())["type"] == "error"

    clock.advance(432001)
    async with http.get(f"{orders}/DL000000NOPE/info", headers=auth) as r:
        assert r.status == 401
