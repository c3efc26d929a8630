"""Provider webhooks: signatures checked over the raw bytes (the providers' published test vectors), bad, stale
and replayed requests refused with 4xx, verified events applied to the delivery log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from stormd.plugins import (
    WebhookRejected,
    hub_signature,
    svix_signature,
    verify_hub_signature,
    verify_svix,
)
from stormd.schema.marketing.messages import EmailEvent, Message, WhatsAppMessage
from stormd.schema.runtime.inbox import OutboundEvent

SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SVIX_TS = "1614265330"
SVIX_BODY = b'{"test": 2432232314}'
SVIX_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SVIX_NOW = datetime.fromtimestamp(1614265330, tz=UTC)


def test_svix_vector_from_svix_own_tests():
    headers = {"svix-id": SVIX_ID, "svix-timestamp": SVIX_TS, "svix-signature": SVIX_SIG}
    assert verify_svix(SVIX_SECRET, headers, SVIX_BODY, SVIX_NOW) == SVIX_ID
    several = {**headers, "svix-signature": "v1,bm90IGl0 " + SVIX_SIG}
    assert verify_svix(SVIX_SECRET, several, SVIX_BODY, SVIX_NOW) == SVIX_ID


@pytest.mark.parametrize("change, status", [
    ({"svix-signature": SVIX_SIG[:-2] + "A="}, 401),                 # ...1OA= must fail
    ({"svix-signature": "v2," + SVIX_SIG[3:]}, 401),                  # wrong version
    ({"svix-id": "msg_other"}, 401),                                  # signed id differs
    ({"svix-timestamp": str(1614265330 - 301)}, 400),                 # more than 5 min off
    ({"svix-signature": None}, 400),
])
def test_svix_rejects_bad_and_stale_requests(change, status):
    headers = {"svix-id": SVIX_ID, "svix-timestamp": SVIX_TS, "svix-signature": SVIX_SIG,
               **change}
    headers = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(WebhookRejected) as err:
        verify_svix(SVIX_SECRET, headers, SVIX_BODY, SVIX_NOW)
    assert err.value.status == status


def test_meta_hub_signature_vector():
    assert hub_signature("secret", b"test") == (
        "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914")
    verify_hub_signature("secret", {"X-Hub-Signature-256": hub_signature("secret", b"test")},
                         b"test")
    with pytest.raises(WebhookRejected):
        verify_hub_signature("secret", {"X-Hub-Signature-256": hub_signature("secret",
                                                                             b"test")},
                             b"test ")  # re-serialised bytes do not verify


@pytest.fixture
async def webhook_client(settings_factory, pipelines):
    """`await webhook_client(**settings)` -> (aiohttp test client, pipeline)."""
    from stormd.plugins.delivery.webhooks import routes

    clients: list[TestClient] = []

    async def make(**sections):
        pipeline = pipelines(settings_factory(**sections))
        app = web.Application()
        app.add_routes(routes(pipeline))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, pipeline

    yield make
    for client in clients:
        await client.close()


async def _sent(sessionmaker, clock, channel, provider, external_id, **fields):
    async with sessionmaker() as session, session.begin():
        m = Message(store_id="store_1", customer_id="c1", channel=channel, provider=provider,
                    idempotency_key=f"k-{external_id}", status="sent", attempts=1,
                    not_before=clock.now(), body="b", external_id=external_id,
                    campaign_id="camp1", created_at=clock.now(), updated_at=clock.now(),
                    **fields)
        session.add(m)
        await session.flush()
        if channel == "whatsapp":
            session.add(WhatsAppMessage(store_id="store_1", message_id=m.id,
                                        template_name="t", phone_number="+880",
                                        status="SENT", created_at=clock.now()))
        return m.id


def _svix_headers(body: bytes, when: datetime, msg_id: str = "msg_1") -> dict:
    ts = str(int(when.timestamp()))
    return {"svix-id": msg_id, "svix-timestamp": ts,
            "svix-signature": "v1," + svix_signature(SVIX_SECRET, msg_id, ts, body),
            "content-type": "application/json"}


async def test_resend_webhook_records_open_and_click_and_refuses_replay(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"resend": {
        "api_key": "k", "from_address": "s@example.com", "webhook_secret": SVIX_SECRET}})
    message_id = await _sent(sessionmaker, clock, "email", "resend", "4ef9a417")
    opened = json.dumps({"type": "email.opened", "created_at": "2026-11-24T04:00:00Z",
                         "data": {"email_id": "4ef9a417"}}).encode()
    resp = await client.post("/webhooks/resend", data=opened,
                             headers=_svix_headers(opened, clock.now(), "msg_open"))
    assert resp.status == 200, await resp.text()
    clicked = json.dumps({"type": "email.clicked", "created_at": "2026-11-24T04:01:00Z",
                          "data": {"email_id": "4ef9a417",
                                   "click": {"link": "https://shop.example/p/1"}}}).encode()
    resp = await client.post("/webhooks/resend", data=clicked,
                             headers=_svix_headers(clicked, clock.now(), "msg_click"))
    assert resp.status == 200
    replay = await client.post("/webhooks/resend", data=clicked,
                               headers=_svix_headers(clicked, clock.now(), "msg_click"))
    assert replay.status == 409
    async with sessionmaker() as session:
        events = (await session.scalars(select(EmailEvent).order_by(EmailEvent.id))).all()
        message = await session.get(Message, message_id)
        out = [e.payload["type"] for e in (await session.scalars(select(OutboundEvent)))]
    assert [(e.type, e.url, e.message_id) for e in events] == [
        ("OPEN", None, str(message_id)), ("CLICK", "https://shop.example/p/1", str(message_id))]
    assert message.status == "read"
    assert sorted(out) == ["email.click", "email.open", "message.status"]


async def test_resend_webhook_with_bad_or_stale_signature_changes_nothing(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"resend": {
        "api_key": "k", "from_address": "s@example.com", "webhook_secret": SVIX_SECRET}})
    await _sent(sessionmaker, clock, "email", "resend", "4ef9a417")
    body = json.dumps({"type": "email.bounced", "data": {"email_id": "4ef9a417"}}).encode()
    forged = _svix_headers(body, clock.now())
    forged["svix-signature"] = "v1,AAAA" + forged["svix-signature"][7:]
    assert (await client.post("/webhooks/resend", data=body, headers=forged)).status == 401
    stale = _svix_headers(body, clock.now() - timedelta(minutes=10))
    assert (await client.post("/webhooks/resend", data=body, headers=stale)).status == 400
    async with sessionmaker() as session:
        assert (await session.scalars(select(EmailEvent))).all() == []


async def test_meta_status_webhook_moves_whatsapp_message_to_read(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"meta": {
        "access_token": "t", "phone_number_id": "1", "app_secret": "app-secret",
        "verify_token": "vt"}})
    message_id = await _sent(sessionmaker, clock, "whatsapp", "meta", "wamid.ABC")
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "statuses": [{"id": "wamid.ABC", "status": "read", "timestamp": "1764000000",
                          "recipient_id": "8801711000001"}]}}]}]}, separators=(",", ":"))
    raw = body.encode()
    good = {"X-Hub-Signature-256": hub_signature("app-secret", raw),
            "content-type": "application/json"}
    bad = {"X-Hub-Signature-256": hub_signature("wrong", raw)}
    assert (await client.post("/webhooks/meta", data=raw, headers=bad)).status == 401
    assert (await client.post("/webhooks/meta", data=raw, headers=good)).status == 200
    assert (await client.post("/webhooks/meta", data=raw, headers=good)).status == 409
    async with sessionmaker() as session:
        message = await session.get(Message, message_id)
        wa = await session.scalar(select(WhatsAppMessage))
    assert message.status == "read"  # read may arrive without delivered
    assert wa.status == "READ" and wa.read_at is not None
    handshake = await client.get("/webhooks/meta", params={
        "hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"})
    assert (handshake.status, await handshake.text()) == (200, "1158201444")
    wrong = await client.get("/webhooks/meta", params={
        "hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "1"})
    assert wrong.status == 403


async def test_sms_delivery_report_needs_the_token(webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"sslwireless": {
        "api_token": "t", "dlr_token": "s3cret"}})
    message_id = await _sent(sessionmaker, clock, "sms", "sslwireless", "ref-77")
    report = {"reference_id": "ref-77", "status": "DELIVERED"}
    denied = await client.post("/webhooks/sslwireless", params={"token": "guess"},
                               data=report)
    assert denied.status == 401
    ok = await client.post("/webhooks/sslwireless", params={"token": "s3cret"}, data=report)
    assert ok.status == 200, await ok.text()
    async with sessionmaker() as session:
        assert (await session.get(Message, message_id)).status == "delivered"


async def test_unknown_or_unconfigured_provider_is_404(webhook_client):
    client, _ = await webhook_client()
    assert (await client.post("/webhooks/nope", data=b"{}")).status == 404
    assert (await client.post("/webhooks/resend", data=b"{}")).status == 404  # no config


async def test_outbox_receipts_move_messages_like_a_real_providers(
        webhook_client, sessionmaker, clock):
    """A staging harness (or `stormd demo`) stands in for the provider behind the outbox."""
    client, _ = await webhook_client(providers={"outbox": {"webhook_secret": "harness"}})
    sms = await _sent(sessionmaker, clock, "sms", "outbox", "outbox-1")
    wa = await _sent(sessionmaker, clock, "whatsapp", "outbox", "outbox-2")
    email = await _sent(sessionmaker, clock, "email", "outbox", "outbox-3")
    body = json.dumps({"id": "batch-1", "receipts": [
        {"messageId": "outbox-1", "status": "delivered", "at": "2026-11-24T04:00:00+00:00"},
        {"messageId": "outbox-2", "status": "read"},
        {"messageId": "outbox-3", "status": "click", "url": "https://shop.example/p/1"},
    ]}).encode()
    signed = {"X-Stormd-Signature": hub_signature("harness", body)}
    forged = {"X-Stormd-Signature": hub_signature("guess", body)}
    assert (await client.post("/webhooks/outbox", data=body, headers=forged)).status == 401
    assert (await client.post("/webhooks/outbox", data=body)).status == 401
    resp = await client.post("/webhooks/outbox", data=body, headers=signed)
    assert resp.status == 200, await resp.text()
    assert (await client.post("/webhooks/outbox", data=body, headers=signed)).status == 409
    odd = json.dumps({"id": "batch-2", "receipts": [{"messageId": "outbox-1",
                                                    "status": "teleported"}]}).encode()
    bad = await client.post("/webhooks/outbox", data=odd,
                            headers={"X-Stormd-Signature": hub_signature("harness", odd)})
    assert bad.status == 400 and "teleported" in await bad.text()
    async with sessionmaker() as session:
        statuses = {m.id: m.status for m in (await session.scalars(select(Message))).all()}
        clicks = (await session.scalars(select(EmailEvent))).all()
        wa_row = await session.scalar(select(WhatsAppMessage))
    assert statuses == {sms: "delivered", wa: "read", email: "read"}
    assert [(c.type, c.url) for c in clicks] == [("CLICK", "https://shop.example/p/1")]
    assert wa_row.status == "READ"


async def test_outbox_receipts_are_refused_without_a_secret(webhook_client, sessionmaker,
                                                            clock):
    client, _ = await webhook_client()
    await _sent(sessionmaker, clock, "sms", "outbox", "outbox-1")
    body = json.dumps({"receipts": [{"messageId": "outbox-1", "status": "delivered"}]}).encode()
    resp = await client.post("/webhooks/outbox", data=body,
                             headers={"X-Stormd-Signature": hub_signature("", body)})
    assert resp.status == 404
    async with sessionmaker() as session:
        assert (await session.scalar(select(Message))).status == "sent"


async def test_resend_delivery_then_bounce_fails_the_email_and_publishes_the_reason(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"resend": {
        "api_key": "k", "from_address": "s@example.com", "webhook_secret": SVIX_SECRET}})
    message_id = await _sent(sessionmaker, clock, "email", "resend", "5a1b")
    delivered = json.dumps({"type": "email.delivered", "data": {"email_id": "5a1b"}}).encode()
    bounced = json.dumps({"type": "email.bounced", "data": {
        "email_id": "5a1b", "bounce": {"message": "Mailbox does not exist"}}}).encode()
    for i, body in enumerate((delivered, bounced)):
        resp = await client.post("/webhooks/resend", data=body,
                                 headers=_svix_headers(body, clock.now(), f"msg_{i}"))
        assert resp.status == 200, await resp.text()
    async with sessionmaker() as session:
        message = await session.get(Message, message_id)
        events = (await session.scalars(select(EmailEvent).order_by(EmailEvent.id))).all()
        out = {e.payload["type"]: e.payload["data"]
               for e in (await session.scalars(select(OutboundEvent).order_by(OutboundEvent.id)))}
    assert (message.status, message.error) == ("failed", "Mailbox does not exist")
    assert [(e.type, e.reason) for e in events] == [
        ("DELIVERED", None), ("BOUNCE", "Mailbox does not exist")]
    assert out["email.bounce"]["reason"] == "Mailbox does not exist"
    assert out["message.status"]["status"] == "failed"  # the last change: delivered, then failed


async def test_meta_failed_status_fails_the_whatsapp_message_with_its_error(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"meta": {
        "access_token": "t", "phone_number_id": "1", "app_secret": "app-secret"}})
    message_id = await _sent(sessionmaker, clock, "whatsapp", "meta", "wamid.FAIL")
    raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
            {"id": "wamid.FAIL", "status": "failed", "timestamp": "1764000000",
             "recipient_id": "8801711000001",
             "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}}]}]}).encode()
    resp = await client.post("/webhooks/meta", data=raw, headers={
        "X-Hub-Signature-256": hub_signature("app-secret", raw),
        "content-type": "application/json"})
    assert resp.status == 200, await resp.text()
    async with sessionmaker() as session:
        message = await session.get(Message, message_id)
        wa = await session.scalar(select(WhatsAppMessage))
        [out] = (await session.scalars(select(OutboundEvent))).all()
    assert (message.status, message.error) == ("failed", "Message undeliverable")
    assert (wa.status, wa.error_code) == ("FAILED", "131026")
    assert (out.payload["type"], out.payload["data"]["status"]) == ("message.status", "failed")


async def test_a_resend_time_without_a_zone_is_read_as_utc_not_a_500(
        webhook_client, sessionmaker, clock):
    client, _ = await webhook_client(providers={"resend": {
        "api_key": "k", "from_address": "s@example.com", "webhook_secret": SVIX_SECRET}})
    await _sent(sessionmaker, clock, "email", "resend", "4ef9a417")
    opened = json.dumps({"type": "email.opened", "created_at": "2026-11-24T03:59:00",
                         "data": {"email_id": "4ef9a417"}}).encode()
    resp = await client.post("/webhooks/resend", data=opened,
                             headers=_svix_headers(opened, clock.now(), "msg_naive"))
    assert resp.status == 200, await resp.text()
    async with sessionmaker() as session:
        [event] = (await session.scalars(select(EmailEvent))).all()
    assert event.occurred_at == datetime(2026, 11, 24, 3, 59, tzinfo=UTC)


@pytest.mark.parametrize("receipt, status, words", [
    ({"at": "2026-11-24T03:00:00"}, 400, "time zone"),
    ({"at": "1970-01-01T00:00:00Z"}, 400, "out of range"),
    ({"reason": "r\u0000"}, 400, "reason is not text without NUL"),
    ({"url": "https://x.example/" + "a" * 1001}, 400, "url longer than 1000"),
])
async def test_outbox_receipts_a_database_could_not_store_are_a_400(
        webhook_client, receipt, status, words):
    from stormd.plugins import hub_signature

    client, _ = await webhook_client(providers={"outbox": {"webhook_secret": "s"}})
    raw = json.dumps({"id": "r1", "receipts": [
        {"messageId": "outbox-1", "status": "delivered", **receipt}]}).encode()
    resp = await client.post("/webhooks/outbox", data=raw,
                             headers={"X-Stormd-Signature": hub_signature("s", raw)})
    assert (resp.status, words in await resp.text()) == (status, True), await resp.text()
