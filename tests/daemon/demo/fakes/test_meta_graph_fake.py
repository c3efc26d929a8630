"""The local WhatsApp Cloud API answers and calls back as Meta documents.

Sources: message templates
https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates ;
error codes https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
and https://developers.facebook.com/docs/graph-api/guides/error-handling (132001 body as real
accounts receive it: github.com/tawn33y/whatsapp-cloud-api issue 57); the
message_template_status_update webhook
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/message_template_status_update
(payloads as in github.com/david-lev/pywa/blob/main/tests/data/updates/template_status_update.json);
X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(app secret, raw body).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from aiohttp import web

from stormd.daemon.demo.fakes.meta_graph import FakeMetaGraph, sign, verify

BODY = "Hi {{1}}, your cart at {{2}} is waiting. Use code SAVE10."
CART_TEMPLATE = {
    "name": "cart_reminder_1",
    "language": "en_US",
    "category": "MARKETING",
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}},
        {"type": "BODY", "text": BODY, "example": {"body_text": [["Rahim", "Dhaka Bazar"]]}},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
    ],
}


def send_body(*, params=("Rahim", "Dhaka Bazar"), header=True, name="cart_reminder_1"):
    components = []
    if header:
        components.append({"type": "header", "parameters": [
            {"type": "image", "image": {"link": "https://shop.example/cart.jpg"}}]})
    components.append({"type": "body",
                       "parameters": [{"type": "text", "text": p} for p in params]})
    return {"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "+8801711000000", "type": "template",
            "template": {"name": name, "language": {"code": "en_US"}, "components": components}}


def meta_signature(secret: str, raw: bytes) -> str:
    """Computed here, independently of the fake's helper."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_signature_helper_matches_the_published_vector():
    vector = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert sign("secret", b"test") == vector
    assert verify("secret", b"test", vector)
    assert not verify("secret", b"test ", vector)
    assert not verify("other", b"test", vector)
    assert not verify("secret", b"test", None)


async def test_template_is_submitted_approved_by_webhook_and_then_used(merchant, http):
    async with FakeMetaGraph(callback_url=None) as meta:
        assert await meta.subscribe(f"{merchant.base_url}/whatsapp", "verify-me") is False
        merchant.reply = lambda request, body: web.Response(text=request.query["hub.challenge"])
        assert await meta.subscribe(f"{merchant.base_url}/whatsapp", "verify-me") is True
        assert merchant.received[-1].query["hub.verify_token"] == "verify-me"
        merchant.reply = lambda request, body: web.Response(text="EVENT_RECEIVED")
        auth = {"Authorization": f"Bearer {meta.access_token}"}
        templates = f"{meta.base_url}/v21.0/{meta.waba_id}/message_templates"
        messages = f"{meta.base_url}/v21.0/{meta.phone_number_id}/messages"

        async with http.post(templates, json=CART_TEMPLATE, headers=auth) as r:
            assert r.status == 200
            created = await r.json()
        assert created["status"] == "PENDING" and created["category"] == "MARKETING"

        async with http.get(templates, headers=auth) as r:
            listed = await r.json()
        assert [(t["name"], t["status"]) for t in listed["data"]] == [
            ("cart_reminder_1", "PENDING")]

        async with http.post(messages, json=send_body(), headers=auth) as r:
            assert r.status == 404
            error = (await r.json())["error"]
        assert error["code"] == 132001 and error["type"] == "OAuthException"
        assert error["message"] == "(#132001) Template name does not exist in the translation"
        assert error["error_data"]["details"] == (
            "template name (cart_reminder_1) does not exist in en_US")
        assert error["fbtrace_id"]

        before = len(merchant.received)
        delivery = await meta.approve(created["id"])
        assert delivery is not None and delivery.status == 200
        hook = merchant.received[before]
        assert hook.method == "POST" and hook.path == "/whatsapp"
        assert hook.headers["X-Hub-Signature-256"] == meta_signature(meta.app_secret, hook.body)
        payload = json.loads(hook.body)
        assert payload["object"] == "whatsapp_business_account"
        change = payload["entry"][0]["changes"][0]
        assert payload["entry"][0]["id"] == meta.waba_id
        assert change["field"] == "message_template_status_update"
        assert change["value"] == {
            "event": "APPROVED", "message_template_id": int(created["id"]),
            "message_template_name": "cart_reminder_1", "message_template_language": "en_US",
            "reason": "NONE", "message_template_category": "MARKETING"}

        async with http.get(templates, params={"status": "APPROVED"}, headers=auth) as r:
            assert [t["id"] for t in (await r.json())["data"]] == [created["id"]]

        async with http.post(messages, json=send_body(), headers=auth) as r:
            assert r.status == 200
            sent = await r.json()
        assert sent["messaging_product"] == "whatsapp"
        assert sent["contacts"] == [{"input": "+8801711000000", "wa_id": "8801711000000"}]
        assert sent["messages"][0]["id"].startswith("wamid.")
        assert meta.messages[-1].text == (
            "Hi Rahim, your cart at Dhaka Bazar is waiting. Use code SAVE10.")

        before = len(merchant.received)
        await meta.report_status(sent["messages"][0]["id"], "delivered")
        hook = merchant.received[before]
        assert hook.headers["X-Hub-Signature-256"] == meta_signature(meta.app_secret, hook.body)
        status = json.loads(hook.body)["entry"][0]["changes"][0]
        assert status["field"] == "messages"
        assert status["value"]["statuses"][0]["status"] == "delivered"
        assert status["value"]["statuses"][0]["id"] == sent["messages"][0]["id"]


async def test_wrong_parameters_are_refused_with_132000_and_132012(http):
    async with FakeMetaGraph() as meta:
        auth = {"Authorization": f"Bearer {meta.access_token}"}
        templates = f"{meta.base_url}/v21.0/{meta.waba_id}/message_templates"
        messages = f"{meta.base_url}/v21.0/{meta.phone_number_id}/messages"
        async with http.post(templates, json=CART_TEMPLATE, headers=auth) as r:
            await meta.approve((await r.json())["id"])

        async with http.post(messages, json=send_body(params=("Rahim",)), headers=auth) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["code"] == 132000
        assert error["message"] == (
            "(#132000) Number of parameters does not match the expected number of params")
        assert "localizable_params (1)" in error["error_data"]["details"]

        async with http.post(messages, json=send_body(header=False), headers=auth) as r:
            assert (await r.json())["error"]["code"] == 132000

        wrong_header = send_body()
        wrong_header["template"]["components"][0]["parameters"] = [{"type": "text", "text": "x"}]
        async with http.post(messages, json=wrong_header, headers=auth) as r:
            error = (await r.json())["error"]
        assert error["code"] == 132012
        assert error["message"].startswith("(#132012) Parameter format does not match")

        no_language = send_body()
        del no_language["template"]["language"]
        async with http.post(messages, json=no_language, headers=auth) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["code"] == 100
        assert error["message"] == "(#100) The parameter template['language']['code'] is required."
        assert meta.messages == []


async def test_rejected_template_is_reported_and_cannot_be_sent(merchant, http):
    async with FakeMetaGraph(callback_url=f"{merchant.base_url}/hook") as meta:
        auth = {"Authorization": f"Bearer {meta.access_token}"}
        templates = f"{meta.base_url}/v19.0/{meta.waba_id}/message_templates"
        async with http.post(templates, json=CART_TEMPLATE, headers=auth) as r:
            template_id = (await r.json())["id"]
        await meta.reject(template_id, "INVALID_FORMAT")
        hook = merchant.received[-1]
        assert hook.headers["X-Hub-Signature-256"] == meta_signature(meta.app_secret, hook.body)
        value = json.loads(hook.body)["entry"][0]["changes"][0]["value"]
        assert (value["event"], value["reason"]) == ("REJECTED", "INVALID_FORMAT")

        async with http.get(templates, params={"fields": "name,status,rejected_reason"},
                            headers=auth) as r:
            row = (await r.json())["data"][0]
        assert row == {"id": template_id, "name": "cart_reminder_1", "status": "REJECTED",
                       "rejected_reason": "INVALID_FORMAT"}

        messages = f"{meta.base_url}/v19.0/{meta.phone_number_id}/messages"
        async with http.post(messages, json=send_body(), headers=auth) as r:
            assert (await r.json())["error"]["code"] == 132001


async def test_tokens_and_unknown_accounts_are_refused_like_the_graph_api(http):
    async with FakeMetaGraph() as meta:
        templates = f"{meta.base_url}/v21.0/{meta.waba_id}/message_templates"
        async with http.get(templates, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
            error = (await r.json())["error"]
        assert (error["code"], error["type"]) == (190, "OAuthException")

        async with http.get(templates) as r:
            assert (await r.json())["error"]["code"] == 104

        async with http.get(templates, params={"access_token": meta.access_token}) as r:
            assert r.status == 200

        other = f"{meta.base_url}/v21.0/999/message_templates"
        async with http.post(other, json=CART_TEMPLATE,
                             headers={"Authorization": f"Bearer {meta.access_token}"}) as r:
            error = (await r.json())["error"]
        assert (error["code"], error["error_subcode"]) == (100, 33)
        assert error["type"] == "GraphMethodException"


async def test_template_submissions_meta_would_refuse(http):
    async with FakeMetaGraph() as meta:
        auth = {"Authorization": f"Bearer {meta.access_token}"}
        templates = f"{meta.base_url}/v21.0/{meta.waba_id}/message_templates"

        async def submit(template):
            async with http.post(templates, json=template, headers=auth) as r:
                return r.status, (await r.json())

        nameless = {k: v for k, v in CART_TEMPLATE.items() if k != "name"}
        status, body = await submit(nameless)
        assert status == 400
        assert body["error"]["message"] == "(#100) The parameter name is required."

        no_example = json.loads(json.dumps(CART_TEMPLATE))
        del no_example["components"][1]["example"]
        status, body = await submit(no_example)
        assert (status, body["error"]["code"], body["error"]["message"]) == (
            400, 100, "Invalid parameter")
        assert "example.body_text" in body["error"]["error_user_msg"]

        gap = json.loads(json.dumps(CART_TEMPLATE))
        gap["components"][1]["text"] = "Hi {{1}}, see {{3}} today."
        status, body = await submit(gap)
        assert body["error"]["error_user_title"] == "Variable parameters are not sequential"

        no_media_sample = json.loads(json.dumps(CART_TEMPLATE))
        del no_media_sample["components"][0]["example"]
        status, body = await submit(no_media_sample)
        assert body["error"]["error_user_title"] == "Media sample is missing"

        bad_name = dict(CART_TEMPLATE, name="Cart Reminder")
        status, body = await submit(bad_name)
        assert body["error"]["error_user_title"] == "Invalid template name"

        assert (await submit(CART_TEMPLATE))[0] == 200
        status, body = await submit(CART_TEMPLATE)
        assert (status, body["error"]["error_subcode"]) == (400, 2388024)
        assert len(meta.templates) == 1


async def test_template_list_pages_with_cursors(http):
    async with FakeMetaGraph() as meta:
        auth = {"Authorization": f"Bearer {meta.access_token}"}
        templates = f"{meta.base_url}/v21.0/{meta.waba_id}/message_templates"
        for n in range(3):
            body = dict(CART_TEMPLATE, name=f"cart_reminder_{n}")
            async with http.post(templates, json=body, headers=auth) as r:
                assert r.status == 200
        async with http.get(templates, params={"limit": "2"}, headers=auth) as r:
            first = await r.json()
        assert [t["name"] for t in first["data"]] == ["cart_reminder_0", "cart_reminder_1"]
        assert set(first["paging"]["cursors"]) == {"before", "after"}
        async with http.get(first["paging"]["next"], headers=auth) as r:
            second = await r.json()
        assert [t["name"] for t in second["data"]] == ["cart_reminder_2"]
        assert "next" not in second["paging"]
        async with http.get(templates, params={"limit": "2", "after":
                                               second["paging"]["cursors"]["after"]},
                            headers=auth) as r:
            assert (await r.json())["data"] == []
