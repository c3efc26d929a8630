"""Choosing the channel for a customer reachable on several, and sharing the queue between
processes."""

from __future__ import annotations

import asyncio
import json

import pytest

from stormd.plugins.delivery.pipeline import DeliveryPipeline
from stormd.plugins.policy.eligibility import Reach
from stormd.plugins.policy.routing import choose_channel
from stormd.schema.db.engine import make_engine, make_sessionmaker

EVERYTHING = {"email": True, "sms": True, "whatsapp": True, "push": True}


def reach(**overrides) -> Reach:
    fields = {"customer_id": "c1", "email": "a@example.com", "phone": "+8801711000001",
              "push_tokens": ("tok",), "consent": dict(EVERYTHING)}
    fields.update(overrides)
    return Reach(**fields)


def test_free_channel_first_then_whatsapp_then_sms():
    assert choose_channel(reach()) == "push"
    assert choose_channel(reach(push_tokens=())) == "whatsapp"
    assert choose_channel(reach(push_tokens=(), consent={**EVERYTHING, "whatsapp": False})) \
        == "sms"


def test_long_content_goes_by_email_and_only_consented_channels_count():
    assert choose_channel(reach(), content_length=900) == "email"
    no_email = reach(consent={**EVERYTHING, "email": False})
    assert choose_channel(no_email, content_length=900) == "push"
    assert choose_channel(reach(dnd=True, push_tokens=()), ["sms", "email"]) == "email"
    assert choose_channel(reach(consent={}), ["sms"]) is None


def test_unknown_channel_is_refused_by_name():
    with pytest.raises(ValueError, match="pigeonpost"):
        choose_channel(reach(), ["pigeonpost"])


async def test_two_processes_sharing_the_queue_send_each_message_once(
        db_url, settings_factory, fake_provider, queue, messages, clock):
    gateway = await fake_provider()
    gateway.reply(200, {"status": "SUCCESS", "smsinfo": [{"reference_id": "r"}]})
    gateway.delay = 0.01
    settings = settings_factory(
        channels={"sms": "sslwireless"}, delivery={"batch_size": 7},
        providers={"sslwireless": {"api_token": "t", "base_url": gateway.url}})
    keys = [await queue(channel="sms") for _ in range(40)]
    engines = [make_engine(db_url), make_engine(db_url)]
    pipelines = [DeliveryPipeline(settings, make_sessionmaker(e), clock) for e in engines]
    try:
        while True:
            sent = await asyncio.gather(*(p.run_once() for p in pipelines))
            if not any(sent):
                break
    finally:
        for p in pipelines:
            await p.stop()
        for e in engines:
            await e.dispose()
    refs = sorted(json.loads(body)["csms_id"] for _, _, body in gateway.requests)
    assert len(refs) == len(set(refs)) == len(keys)
    assert {m.status for m in await messages()} == {"sent"}
