"""The local bKash Tokenized Checkout answers as bKash documents and real sandboxes answer.

Sources: bKash's own WooCommerce plugin, github.com/bKash-developer/bKash-for-woocommerce
(includes/classes/ApiComm.php: token/grant and token/refresh with username/password headers,
create/execute/payment/status with Authorization and X-APP-Key, mode 0011;
ProcessPayments.php: the callback's paymentID and status=success|failure|cancel); the
Tokenized Checkout reference and error codes at https://developer.bka.sh (as mirrored by
github.com/dibakarsutradhar/bkash-rs src/error.rs); sandbox transcripts published by
integrators for the create/execute bodies, 2023, 2117 and the gateway's 401 "Unauthorized" /
"The incoming token has expired"; 9999 "Username does not exist" from
github.com/karim-007/laravel-bkash-tokenize issue 2.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from stormd.daemon.demo.fakes.bkash import FakeBkash


class Client:
    """What a merchant does, over HTTP: grant a token, then call with it."""

    def __init__(self, bkash: FakeBkash, http):
        self.bkash = bkash
        self.http = http
        self.token = ""

    async def post(self, path, body, headers=None):
        headers = headers if headers is not None else {
            "Authorization": self.token, "X-APP-Key": self.bkash.app_key}
        async with self.http.post(f"{self.bkash.api_url}/{path}", json=body,
                                  headers=headers) as r:
            return r.status, await r.json()

    async def grant(self, **overrides):
        headers = {"username": self.bkash.username, "password": self.bkash.password}
        headers.update(overrides.pop("headers", {}))
        body = {"app_key": self.bkash.app_key, "app_secret": self.bkash.app_secret, **overrides}
        status, reply = await self.post("token/grant", body, headers)
        self.token = reply.get("id_token", "")
        return status, reply

    async def create(self, callback, **overrides):
        body = {"mode": "0011", "payerReference": "dhaka_bazar", "callbackURL": callback,
                "amount": "500", "currency": "BDT", "intent": "sale",
                "merchantInvoiceNumber": "TOPUP-1", **overrides}
        return await self.post("create", body)


@pytest.fixture
async def bkash(clock):
    async with FakeBkash(clock=clock) as fake:
        yield fake


async def test_top_up_paid_by_the_customer_is_executed_once(bkash, merchant, http):
    client = Client(bkash, http)
    status, grant = await client.grant()
    assert status == 200
    assert grant["statusCode"] == "0000" and grant["token_type"] == "Bearer"
    assert grant["expires_in"] == 3600 and grant["refresh_token"]

    status, created = await client.create(f"{merchant.base_url}/bkash/callback?store=dhaka")
    assert status == 200 and created["statusCode"] == "0000"
    assert created["transactionStatus"] == "Initiated"
    assert (created["amount"], created["currency"], created["intent"]) == ("500", "BDT", "sale")
    assert created["merchantInvoiceNumber"] == "TOPUP-1"
    payment_id = created["paymentID"]
    success = parse_qs(urlsplit(created["successCallbackURL"]).query)
    assert success["paymentID"] == [payment_id] and success["status"] == ["success"]
    assert success["store"] == ["dhaka"]

    _, before = await client.post("payment/status", {"paymentID": payment_id})
    assert before["transactionStatus"] == "Initiated" and "trxID" not in before

    visit = await bkash.customer_returns(payment_id, "success")
    assert visit.status == 200
    callback = merchant.received[-1]
    assert (callback.method, callback.path) == ("GET", "/bkash/callback")
    assert callback.query["paymentID"] == payment_id and callback.query["status"] == "success"
    assert callback.query["apiVersion"] == "v1.2.0-beta" and callback.query["signature"]

    status, executed = await client.post("execute", {"paymentID": payment_id})
    assert status == 200 and executed["statusCode"] == "0000"
    assert executed["transactionStatus"] == "Completed" and executed["trxID"]
    assert executed["amount"] == "500"

    _, after = await client.post("payment/status", {"paymentID": payment_id})
    assert (after["transactionStatus"], after["trxID"]) == ("Completed", executed["trxID"])

    _, again = await client.post("execute", {"paymentID": payment_id})
    assert again == {"statusCode": "2117",
                     "statusMessage": "Payment execution already been called before"}


async def test_cancel_on_the_bkash_page_redirects_and_blocks_execute(bkash, merchant, http):
    client = Client(bkash, http)
    await client.grant()
    _, created = await client.create(f"{merchant.base_url}/cb")
    async with http.get(created["bkashURL"] + "&action=cancel", allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{merchant.base_url}/cb?")
    assert query["status"] == ["cancel"] and query["paymentID"] == [created["paymentID"]]

    _, refused = await client.post("execute", {"paymentID": created["paymentID"]})
    assert refused == {"statusCode": "2056", "statusMessage": "Invalid Payment State"}
    _, status = await client.post("payment/status", {"paymentID": created["paymentID"]})
    assert status["transactionStatus"] == "Cancelled"


async def test_execute_before_the_customer_paid_and_unknown_payments(bkash, merchant, http):
    client = Client(bkash, http)
    await client.grant()
    _, created = await client.create(f"{merchant.base_url}/cb")
    _, early = await client.post("execute", {"paymentID": created["paymentID"]})
    assert early["statusCode"] == "2056"
    _, unknown = await client.post("payment/status", {"paymentID": "TR0011nope"})
    assert unknown == {"statusCode": "2002", "statusMessage": "Invalid Payment ID"}
    await bkash.customer_returns(created["paymentID"], "failure")
    assert merchant.received[-1].query["status"] == "failure"
    _, failed = await client.post("execute", {"paymentID": created["paymentID"]})
    assert failed["statusCode"] == "2056"


async def test_credentials_and_tokens_are_checked(bkash, clock, http):
    client = Client(bkash, http)
    _, reply = await client.grant(headers={"username": "someone"})
    assert reply == {"statusCode": "9999", "statusMessage": "Username does not exist"}
    _, reply = await client.grant(headers={"password": "wrong"})
    assert reply["statusCode"] == "9999" and "id_token" not in reply
    _, reply = await client.grant(app_key="wrong")
    assert reply == {"statusCode": "2001", "statusMessage": "Invalid App Key"}

    status, reply = await client.create("https://shop.example/cb")
    assert (status, reply) == (401, {"message": "Unauthorized"})

    _, grant = await client.grant()
    status, reply = await client.post("create", {}, headers={
        "Authorization": f"Bearer {client.token}", "X-APP-Key": bkash.app_key})
    assert (status, reply) == (401, {"message": "Unauthorized"})  # the raw token, no scheme

    _, grant = await client.grant()
    status, reply = await client.post("create", {}, headers={"Authorization": client.token,
                                                             "X-APP-Key": "other"})
    assert reply["statusCode"] == "2001"

    clock.advance(3601)
    status, reply = await client.create("https://shop.example/cb")
    assert (status, reply) == (401, {"message": "The incoming token has expired"})

    status, refreshed = await client.post(
        "token/refresh", {"app_key": bkash.app_key, "app_secret": bkash.app_secret,
                          "refresh_token": grant["refresh_token"]},
        {"username": bkash.username, "password": bkash.password})
    assert status == 200 and refreshed["statusCode"] == "0000"
    client.token = refreshed["id_token"]
    status, reply = await client.create("https://shop.example/cb")
    assert status == 200 and reply["statusCode"] == "0000"

    _, reused = await client.post(
        "token/refresh", {"app_key": bkash.app_key, "app_secret": bkash.app_secret,
                          "refresh_token": "not-a-refresh-token"},
        {"username": bkash.username, "password": bkash.password})
    assert reused["statusCode"] == "9999"


@pytest.mark.parametrize(("override", "code", "message"), [
    ({"mode": "0001"}, "2063", "Mode is not valid as per request data"),
    ({"amount": ""}, "2065", "Mandatory field missing"),
    ({"amount": "abc"}, "2006", "Invalid Amount"),
    ({"amount": "0"}, "2006", "Invalid Amount"),
    ({"currency": "USD"}, "2007", "Invalid Currency"),
    ({"intent": "gift"}, "2008", "Invalid Intent"),
    ({"callbackURL": "not a url"}, "2049", "Invalid Merchant Callback URL"),
])
async def test_create_refuses_what_bkash_refuses(bkash, http, override, code, message):
    client = Client(bkash, http)
    await client.grant()
    status, reply = await client.create("https://shop.example/cb", **override)
    assert (status, reply) == (200, {"statusCode": code, "statusMessage": message})
    assert bkash.payments == {}


async def test_a_system_error_then_recovery(bkash, merchant, http):
    client = Client(bkash, http)
    await client.grant()
    _, created = await client.create(f"{merchant.base_url}/cb")
    await bkash.customer_returns(created["paymentID"])
    bkash.inject_error("execute")
    bkash.inject_error("execute", "2023", "Insufficient Balance")
    _, first = await client.post("execute", {"paymentID": created["paymentID"]})
    assert first == {"statusCode": "9999", "statusMessage": "System Error"}
    _, second = await client.post("execute", {"paymentID": created["paymentID"]})
    assert second == {"statusCode": "2023", "statusMessage": "Insufficient Balance"}
    _, third = await client.post("execute", {"paymentID": created["paymentID"]})
    assert third["transactionStatus"] == "Completed"
