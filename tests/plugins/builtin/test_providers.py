"""Each built-in provider against a local server speaking its wire format."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from stormd.daemon.bus.nats_server import free_port
from stormd.plugins.policy.preferences import preferences_key, read_token
from stormd.schema.marketing.messages import WhatsAppMessage, WhatsAppTemplate
from stormd.schema.shop.customers import Customer


async def test_resend_sends_with_idempotency_key_and_records_its_id(
        settings_factory, fake_provider, queue, messages, pipelines):
    resend = await fake_provider()
    resend.reply(200, {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})
    settings = settings_factory(
        channels={"email": "resend"},
        providers={"resend": {"api_key": "re_123", "from_address": "Shop <s@example.com>",
                              "base_url": resend.url}})
    key = await queue(channel="email", to_address="rahim@example.com", subject="Your cart",
                      body="Come back", html="<p>Come back</p>", marketing=False)
    await pipelines(settings).run_once()
    path, headers, _ = resend.requests[0]
    assert path == "/emails"
    assert headers["Authorization"] == "Bearer re_123"
    assert headers["Idempotency-Key"] == key
    sent = resend.json()
    assert sent["to"] == ["rahim@example.com"] and sent["subject"] == "Your cart"
    assert sent["from"] == "Shop <s@example.com>" and sent["html"] == "<p>Come back</p>"
    [m] = await messages()
    assert (m.status, m.provider, m.external_id) == (
        "sent", "resend", "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")


RESEND_ERRORS = [  # recipient, status, body, outcome
    ("bad@example.com", 422, {"statusCode": 422, "name": "validation_error",
                              "message": "Invalid `to` field"}, "failed"),
    ("busy@example.com", 429, {"statusCode": 429, "name": "rate_limit_exceeded",
                               "message": "Too many requests"}, "queued"),
    ("oops@example.com", 500, {"statusCode": 500, "name": "internal_server_error",
                               "message": "Unexpected error"}, "queued"),
]


async def test_resend_errors_are_permanent_or_retried(settings_factory, fake_provider, queue,
                                                      messages, pipelines, clock):
    resend = await fake_provider()
    for to, status, body, _ in RESEND_ERRORS:
        resend.reply_when(to, status, body, {"Retry-After": "120"} if status == 429 else {})
    settings = settings_factory(
        channels={"email": "resend"}, delivery={"breaker_failures": 10},
        providers={"resend": {"api_key": "k", "from_address": "s@example.com",
                              "base_url": resend.url}})
    for to, *_ in RESEND_ERRORS:
        await queue(channel="email", to_address=to, marketing=False)
    await pipelines(settings).run_once()
    for m, (_, status, body, outcome) in zip(await messages(), RESEND_ERRORS):
        assert m.status == outcome
        assert body["message"] in m.error
        if status == 429:
            assert m.not_before >= clock.now() + timedelta(seconds=120)


class Inbox:
    """A mail server's inbox; recipients named in `refuse` get that answer at RCPT."""

    def __init__(self):
        self.received: list[bytes] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


async def test_smtp_delivers_marketing_email_with_unsubscribe_link_and_token(
        settings_factory, smtp_server, queue, messages, pipelines, sessionmaker, clock):
    port, inbox = smtp_server
    settings = settings_factory(
        channels={"email": "smtp"},
        providers={"smtp": {"host": "127.0.0.1", "port": port,
                            "from_address": "Shop <shop@example.com>"}})
    async with sessionmaker() as session, session.begin():
        session.add(Customer(store_id="store_1", customer_id="c1", email="rahim@example.com"))
    await queue(channel="email", to_address=None, customer_id="c1", subject="Eid offer",
                body="20% off", html="<p>20% off</p>", marketing=True)
    await pipelines(settings).run_once()
    [m] = await messages()
    assert m.status == "sent", m.error
    [raw] = inbox.received
    email = message_from_bytes(raw, policy=policy.default)
    assert email["To"] == "rahim@example.com" and email["Subject"] == "Eid offer"
    assert email["Message-ID"] == m.external_id
    unsubscribe = email["List-Unsubscribe"].strip("<>")
    token = unsubscribe.split("token=")[1]
    assert read_token(preferences_key(settings), token) == ("store_1", "c1", "email")
    text = email.get_body(("plain",)).get_content()
    assert unsubscribe in text
    assert unsubscribe in email.get_body(("html",)).get_content()


async def test_smtp_refused_recipient_fails_and_a_greylisted_one_is_retried(
        settings_factory, smtp_server, queue, messages, pipelines):
    port, inbox = smtp_server
    inbox.refuse = {"gone@example.com": "550 5.1.1 No such user",
                    "later@example.com": "451 4.7.1 Greylisted, try again later"}
    settings = settings_factory(channels={"email": "smtp"}, delivery={"breaker_failures": 10},
                                providers={"smtp": {"host": "127.0.0.1", "port": port,
                                                    "from_address": "s@example.com"}})
    for to in ("gone@example.com", "later@example.com", "ok@example.com"):
        await queue(channel="email", to_address=to, marketing=False)
    await pipelines(settings).run_once()
    gone, later, ok = await messages()
    assert gone.status == "failed" and "No such user" in gone.error
    assert (later.status, later.attempts) == ("queued", 1) and "Greylisted" in later.error
    assert ok.status == "sent" and len(inbox.received) == 1


async def test_smtp_unreachable_server_is_retried(settings_factory, queue, messages,
                                                  pipelines):
    settings = settings_factory(
        channels={"email": "smtp"},
        providers={"smtp": {"host": "127.0.0.1", "port": 1, "from_address": "s@example.com",
                            "timeout": 2}})
    await queue(channel="email", to_address="x@example.com", marketing=False)
    await pipelines(settings).run_once()
    [m] = await messages()
    assert (m.status, m.attempts) == ("queued", 1)


SSL_OK = {"status": "SUCCESS", "status_code": 200, "error_message": "",
          "smsinfo": [{"sms_status": "SUCCESS", "status_message": "Success",
                       "msisdn": "8801711000001", "sms_type": "EN", "sms_body": "Hi",
                       "csms_id": "x", "reference_id": "5f3c0a1b2c"}]}


def ssl_settings(settings_factory, fake, **extra):
    return settings_factory(
        channels={"sms": extra.pop("chain", "sslwireless")},
        providers={"sslwireless": {"api_token": "tok", "sender_id": "STORMCOM",
                                   "base_url": fake.url}, **extra})


async def test_sslwireless_sends_json_with_csms_id_and_store_sender_id(
        settings_factory, fake_provider, queue, messages, pipelines, sessionmaker, clock):
    from stormd.schema.shop.stores import Store

    ssl = await fake_provider()
    ssl.reply(200, SSL_OK)
    async with sessionmaker() as session, session.begin():
        session.add(Store(id="store_1", sender_id="RAHIMSHOP", created_at=clock.now()))
    await queue(channel="sms", to_address="+8801711000001", body="আপনার কার্ট অপেক্ষা করছে")
    await pipelines(ssl_settings(settings_factory, ssl)).run_once()
    sent = ssl.json()
    assert ssl.requests[0][0] == "/api/v3/send-sms"
    assert sent["api_token"] == "tok" and sent["msisdn"] == "8801711000001"
    assert sent["sid"] == "RAHIMSHOP"  # the store's own sender id wins
    assert sent["sms"] == "আপনার কার্ট অপেক্ষা করছে" and len(sent["csms_id"]) == 20
    [m] = await messages()
    assert (m.status, m.external_id, m.segments) == ("sent", "5f3c0a1b2c", 1)
    assert m.cost == Decimal("0.35")


async def test_sslwireless_failures(settings_factory, fake_provider, queue, messages,
                                    pipelines):
    ssl = await fake_provider()
    ssl.reply_when("8801711000001", 200, {"status": "FAILED", "status_code": 4001,
                                          "error_message": "Unauthorized api token"})
    ssl.reply_when("8801711000002", 200, {"status": "FAILED", "status_code": 4022,
                                          "error_message": "Invalid MSISDN"})
    await queue(channel="sms", to_address="+8801711000001")
    await queue(channel="sms", to_address="+8801711000002")
    await pipelines(ssl_settings(settings_factory, ssl)).run_once()
    account, number = await messages()
    # the account's problem is retried (and counts towards failover); the number's is final
    assert account.status == "queued" and "Unauthorized api token" in account.error
    assert number.status == "failed" and "Invalid MSISDN" in number.error


async def test_banglalink_form_post_and_text_answer(settings_factory, fake_provider, queue,
                                                     messages, pipelines):
    bl = await fake_provider()
    bl.reply(200, "Success Count : 1 and Fail Count : 0")
    settings = settings_factory(channels={"sms": "banglalink"}, providers={"banglalink": {
        "user_id": "shop", "password": "pw", "sender_id": "8801900000000",
        "base_url": bl.url}})
    await queue(channel="sms", to_address="01711000001", body="Hi")
    await pipelines(settings).run_once()
    assert bl.requests[0][0] == "/sendSMS/sendSMS"
    assert bl.form() == {"userID": "shop", "passwd": "pw", "sender": "8801900000000",
                         "msisdn": "8801711000001", "message": "Hi"}
    bl.reply(200, "Success Count : 0 and Fail Count : 1")
    await queue(channel="sms", to_address="01711000002", body="Hi")
    await pipelines(settings).run_once()
    first, second = await messages()
    assert first.status == "sent" and first.external_id.startswith("bl-")
    assert second.status == "failed" and "Fail Count : 1" in second.error


ROBI_OK = ('<?xml version="1.0" encoding="utf-8"?><ArrayOfServiceClass '
           'xmlns="http://tempuri.org/"><ServiceClass><MessageId>7781234</MessageId>'
           '<Status>0</Status><StatusText>success</StatusText><ErrorCode>0</ErrorCode>'
           '<ErrorText/><SMSCount>1</SMSCount><CurrentCredit>99</CurrentCredit>'
           '</ServiceClass></ArrayOfServiceClass>')
ROBI_BAD = ROBI_OK.replace("<MessageId>7781234</MessageId>", "<MessageId>0</MessageId>") \
    .replace("<ErrorCode>0</ErrorCode><ErrorText/>",
             "<ErrorCode>1504</ErrorCode><ErrorText>Invalid Receiver</ErrorText>")


async def test_robi_xml_answer(settings_factory, fake_provider, queue, messages, pipelines):
    robi = await fake_provider()
    robi.reply(200, ROBI_OK)
    settings = settings_factory(channels={"sms": "robi"}, providers={"robi": {
        "username": "u", "password": "p", "sender_id": "8801847000000",
        "base_url": robi.url}})
    await queue(channel="sms", to_address="+8801811000001", body="Hi")
    await pipelines(settings).run_once()
    assert robi.requests[0][0] == "/ApacheGearWS/SendTextMessage"
    assert robi.form()["To"] == "8801811000001" and robi.form()["From"] == "8801847000000"
    robi.reply(200, ROBI_BAD)
    await queue(channel="sms", to_address="+8801811000002", body="Hi")
    await pipelines(settings).run_once()
    first, second = await messages()
    assert (first.status, first.external_id) == ("sent", "7781234")
    assert second.status == "failed" and "Invalid Receiver" in second.error


async def _template(sessionmaker, clock, status):
    async with sessionmaker() as session, session.begin():
        session.add(WhatsAppTemplate(
            store_id="store_1", name="cart_reminder_1", category="MARKETING", language="bn",
            content="{{1}}, আপনার কার্ট অপেক্ষা করছে", status=status,
            created_at=clock.now(), updated_at=clock.now()))


def meta_settings(settings_factory, fake):
    return settings_factory(channels={"whatsapp": "meta"}, providers={"meta": {
        "access_token": "EAAG", "phone_number_id": "106540352242922", "base_url": fake.url}})


async def test_whatsapp_sends_an_approved_template(settings_factory, fake_provider, queue,
                                                   messages, pipelines, sessionmaker, clock):
    meta = await fake_provider()
    meta.reply(200, {"messaging_product": "whatsapp",
                     "contacts": [{"input": "8801711000001", "wa_id": "8801711000001"}],
                     "messages": [{"id": "wamid.HBgLODgwMTcxMTAwMDAwMRUCABEYEg"}]})
    await _template(sessionmaker, clock, "APPROVED")
    await queue(channel="whatsapp", template="cart_reminder_1", data={"params": ["Rahim"],
                                                                       "locale": "bn"})
    await pipelines(meta_settings(settings_factory, meta)).run_once()
    path, headers, _ = meta.requests[0]
    assert path == "/v21.0/106540352242922/messages"
    assert headers["Authorization"] == "Bearer EAAG"
    sent = meta.json()
    assert sent["type"] == "template" and sent["to"] == "8801711000001"
    assert sent["template"]["name"] == "cart_reminder_1"
    assert sent["template"]["language"] == {"code": "bn"}
    assert sent["template"]["components"][0]["parameters"] == [{"type": "text",
                                                                "text": "Rahim"}]
    [m] = await messages()
    assert (m.status, m.external_id) == ("sent", "wamid.HBgLODgwMTcxMTAwMDAwMRUCABEYEg")
    await queue(channel="whatsapp", template="cart_reminder_1", to_address="+8801711000002",
                marketing=False)  # an order update: Meta's utility price
    await pipelines(meta_settings(settings_factory, meta)).run_once()
    async with sessionmaker() as session:
        logged = (await session.scalars(select(WhatsAppMessage).order_by(
            WhatsAppMessage.id))).all()
    assert [str(m.cost) for m in await messages()] == ["8.90", "1.40"]  # per message, BDT
    assert [str(w.cost) for w in logged] == ["8.90", "1.40"]


async def test_whatsapp_template_with_an_image_header_gets_the_product_picture(
        settings_factory, fake_provider, queue, messages, pipelines, sessionmaker, clock):
    meta = await fake_provider()
    meta.reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.IMG"}]})
    async with sessionmaker() as session, session.begin():
        session.add(WhatsAppTemplate(
            store_id="store_1", name="cart_reminder_1", category="MARKETING", language="en",
            content="{{1}}, your cart is waiting: {{2}}", header_type="IMAGE",
            header_content="https://cdn.example.com/store-banner.jpg", status="APPROVED",
            created_at=clock.now(), updated_at=clock.now()))
    await queue(channel="whatsapp", template="cart_reminder_1", data={
        "params": ["Rahim", "https://shop/cart/k1"], "locale": "en",
        "header_image": "https://cdn.example.com/p1.jpg"})
    await queue(channel="whatsapp", template="cart_reminder_1", to_address="+8801711000002",
                data={"params": ["Karim", "https://shop/cart/k2"], "locale": "en"})
    await pipelines(meta_settings(settings_factory, meta)).run_once()
    headers = [next(c for c in body["template"]["components"] if c["type"] == "header")
               for body in (json.loads(raw) for _, _, raw in meta.requests)]
    assert sorted(h["parameters"][0]["image"]["link"] for h in headers) == [
        "https://cdn.example.com/p1.jpg",             # the cart's own product
        "https://cdn.example.com/store-banner.jpg"]   # no picture known: the template's
    assert {m.status for m in await messages()} == {"sent"}


async def test_whatsapp_refuses_a_template_not_approved(settings_factory, fake_provider,
                                                        queue, messages, pipelines,
                                                        sessionmaker, clock):
    meta = await fake_provider()
    await _template(sessionmaker, clock, "PENDING")
    await queue(channel="whatsapp", template="cart_reminder_1")
    await pipelines(meta_settings(settings_factory, meta)).run_once()
    [m] = await messages()
    assert m.status == "failed" and "PENDING, not APPROVED" in m.error
    assert meta.requests == []  # Meta was never called


async def test_whatsapp_graph_errors(settings_factory, fake_provider, queue, messages,
                                     pipelines, sessionmaker, clock):
    meta = await fake_provider()
    for phone, code in (("8801711000001", 131026), ("8801711000002", 130429)):
        meta.reply_when(phone, 400, {"error": {"message": f"(#{code}) problem",
                                               "type": "OAuthException", "code": code,
                                               "fbtrace_id": "Az8"}})
    await _template(sessionmaker, clock, "APPROVED")
    await queue(channel="whatsapp", template="cart_reminder_1", to_address="+8801711000001")
    await queue(channel="whatsapp", template="cart_reminder_1", to_address="+8801711000002")
    await pipelines(meta_settings(settings_factory, meta)).run_once()
    undeliverable, throttled = await messages()
    assert undeliverable.status == "failed" and "131026" in undeliverable.error
    assert throttled.status == "queued" and "130429" in throttled.error


FCM_ANSWERS = [  # token, status, body, outcome
    ("tok-ok", 200, {"name": "projects/stormcom/messages/0:1500415314455276%31bd1c96"},
     "sent"),
    ("tok-gone", 404, {"error": {"code": 404, "message": "Requested entity was not found.",
                                 "status": "NOT_FOUND", "details": [{
                                     "@type": "type.googleapis.com/google.firebase.fcm.v1"
                                              ".FcmError",
                                     "errorCode": "UNREGISTERED"}]}}, "failed"),
    ("tok-later", 503, {"error": {"code": 503, "message": "unavailable",
                                  "status": "UNAVAILABLE"}}, "queued"),
]


async def test_fcm_push(settings_factory, fake_provider, queue, messages, pipelines):
    fcm = await fake_provider()
    for token, status, body, _ in FCM_ANSWERS:
        fcm.reply_when(f'"{token}"', status, body)
    settings = settings_factory(
        channels={"push": "fcm"}, delivery={"breaker_failures": 10},
        providers={"fcm": {"project_id": "stormcom", "access_token": "ya29.x",
                           "base_url": fcm.url}})
    for token, *_ in FCM_ANSWERS:
        await queue(channel="push", to_address=token, subject="Cart", body="Still there?",
                    marketing=False)
    await pipelines(settings).run_once()
    assert {r[0] for r in fcm.requests} == {"/v1/projects/stormcom/messages:send"}
    assert sorted(fcm.json(i)["message"]["token"] for i in range(3)) == sorted(
        t for t, *_ in FCM_ANSWERS)
    assert [m.status for m in await messages()] == [o for *_, o in FCM_ANSWERS]
