"""The pipeline's promises: failover and back, retries with backoff, nothing lost or sent
twice across a kill, credit never below zero, consent and DND honoured at send time."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from datetime import timedelta

from sqlalchemy import select

from stormd.plugins import Health, ProviderInfo, RetryableError, hookimpl
from stormd.plugins.delivery.claims import claim_due
from stormd.plugins.delivery.manager import ChannelPlugins
from stormd.schema.marketing.messages import SmsLog, SmsProvider
from stormd.schema.runtime.inbox import OutboundEvent
from stormd.schema.shop.customers import Customer, DndNumber

SSL_OK = {"status": "SUCCESS", "status_code": 200, "error_message": "",
          "smsinfo": [{"sms_status": "SUCCESS", "reference_id": "ssl-ref"}]}
BL_OK = "Success Count : 1 and Fail Count : 0"


def gateways(settings_factory, ssl, bl, **delivery):
    return settings_factory(
        channels={"sms": ["sslwireless", "banglalink"]},
        delivery={"breaker_failures": 2, "breaker_cooldown": "60s", "retry_base": "10s",
                  **delivery},
        providers={
            "sslwireless": {"api_token": "t", "sender_id": "S", "base_url": ssl.url},
            "banglalink": {"user_id": "u", "password": "p", "base_url": bl.url},
        })


async def test_failing_gateway_fails_over_to_the_next_and_back_when_healthy(
        settings_factory, fake_provider, queue, messages, pipelines, clock):
    ssl, bl = await fake_provider(), await fake_provider()
    ssl.reply(503, "Service Unavailable")
    bl.reply(200, BL_OK)
    pipeline = pipelines(gateways(settings_factory, ssl, bl))
    for _ in range(3):
        await queue(channel="sms")
    await pipeline.run_once()
    assert len(ssl.requests) == 3 and bl.requests == []
    assert pipeline.breaker("sslwireless").state == "open"
    assert {m.status for m in await messages()} == {"queued"}  # retried later, not lost

    clock.advance(timedelta(seconds=30))  # past the backoff, within the cooldown
    await pipeline.run_once()
    assert len(ssl.requests) == 3 and len(bl.requests) == 3
    assert [m.provider for m in await messages()] == ["banglalink"] * 3
    assert {m.status for m in await messages()} == {"sent"}

    ssl.reply(200, SSL_OK)  # SSL Wireless recovers
    clock.advance(timedelta(seconds=61))
    for _ in range(2):
        await queue(channel="sms")
    await pipeline.run_once()  # one trial send goes to SSL Wireless, the other waits on it
    await queue(channel="sms")
    await pipeline.run_once()
    assert pipeline.breaker("sslwireless").state == "closed"
    providers = [m.provider for m in await messages()][3:]
    assert providers[0] == "sslwireless" and providers[-1] == "sslwireless"


async def test_retryable_errors_back_off_exponentially_then_fail_loudly(
        settings_factory, fake_provider, queue, messages, pipelines, clock, caplog):
    ssl = await fake_provider()
    ssl.reply(500, {"status": "FAILED"})
    settings = settings_factory(
        channels={"sms": "sslwireless"},
        delivery={"max_attempts": 3, "retry_base": "10s", "breaker_failures": 100},
        providers={"sslwireless": {"api_token": "t", "base_url": ssl.url}})
    pipeline = pipelines(settings)
    await queue(channel="sms")
    delays = []
    for _ in range(2):
        start = clock.now()
        await pipeline.run_once()
        [m] = await messages()
        assert m.status == "queued"
        delays.append((m.not_before - start).total_seconds())
        clock.set(m.not_before)
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20  # 10s then 20s, with jitter
    with caplog.at_level(logging.WARNING, logger="stormd.delivery"):
        await pipeline.run_once()
    [m] = await messages()
    assert (m.status, m.attempts) == ("failed", 3)
    assert "gave up after 3 attempts" in m.error
    assert "gave up after 3 attempts" in caplog.text
    assert len(ssl.requests) == 3


def test_backoff_grows_and_honours_retry_after(settings_factory, clock):
    from stormd.plugins.delivery.pipeline import DeliveryPipeline

    settings = settings_factory(delivery={"retry_base": "30s", "retry_max": "5m"})
    pipeline = DeliveryPipeline(settings, None, clock)
    for attempt, step in [(1, 30), (2, 60), (3, 120), (6, 300)]:
        delay = pipeline.backoff(attempt).total_seconds()
        assert step / 2 <= delay <= step
    assert pipeline.backoff(1, retry_after=600).total_seconds() == 600


async def test_claims_highest_priority_first_and_not_twice(sessionmaker, queue, clock):
    low = await queue(priority=0)
    high = await queue(priority=10)
    async with sessionmaker() as session, session.begin():
        [first], _ = await claim_due(session, clock.now(), timedelta(minutes=5), 1)
    async with sessionmaker() as session, session.begin():
        [second], _ = await claim_due(session, clock.now(), timedelta(minutes=5), 5)
    async with sessionmaker() as session, session.begin():
        assert await claim_due(session, clock.now(), timedelta(minutes=5), 5) == ([], {})
    assert (first.idempotency_key, second.idempotency_key) == (high, low)
    assert first.status == "sending" and first.attempts == 1


KILLED_SENDER = """
import asyncio, json, sys
from datetime import datetime, timezone
from stormd.config.loader import settings_from_dict
from stormd.config.clock import SettableClock
from stormd.plugins.delivery.pipeline import DeliveryPipeline
from stormd.schema.db.engine import make_engine, make_sessionmaker

async def main():
    settings = settings_from_dict(json.loads(sys.argv[1]))
    engine = make_engine(sys.argv[2])
    clock = SettableClock(datetime.fromisoformat(sys.argv[3]))
    await DeliveryPipeline(settings, make_sessionmaker(engine), clock).run_once()

asyncio.run(main())
"""


async def _kill_during_call(fake, config, db_url, clock) -> None:
    """Run a pipeline in a child process and SIGKILL it while `fake` holds the call."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_SENDER, json.dumps(config), db_url,
        clock.now().isoformat(), env={**os.environ})
    deadline = time.monotonic() + 30
    while not fake.requests and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert fake.requests, "the child never reached the provider"
    child.send_signal(signal.SIGKILL)
    await child.wait()
    fake.delay = 0
    fake.released.set()


async def test_send_interrupted_by_sigkill_is_resent_once_with_the_same_key(
        settings_factory, fake_provider, queue, messages, pipelines, clock, db_url, tmp_path):
    resend = await fake_provider(dedupe_header="Idempotency-Key")
    resend.reply(200, {"id": "re_1"})
    resend.delay = 30  # the provider takes the message and is slow to answer
    config = {"daemon": {"data_dir": str(tmp_path / "data")}, "channels": {"email": "resend"},
              "providers": {"resend": {"api_key": "k", "from_address": "s@example.com",
                                       "base_url": resend.url}}}
    key = await queue(channel="email", to_address="x@example.com", marketing=False)
    await _kill_during_call(resend, config, db_url, clock)
    [m] = await messages()
    assert (m.status, m.attempts) == ("sending", 1)  # recorded before the call

    settings = settings_factory(channels={"email": "resend"}, providers=config["providers"])
    pipeline = pipelines(settings)
    assert await pipeline.run_once() == 0  # the lease still holds
    clock.advance(timedelta(minutes=6))  # the lease ends
    assert await pipeline.run_once() == 1
    [m] = await messages()
    assert (m.status, m.attempts, m.external_id) == ("sent", 2, "re_1")
    assert [r[1]["Idempotency-Key"] for r in resend.requests] == [key, key]
    assert len(resend.delivered) == 1  # the provider accepted it once


async def test_send_interrupted_on_a_provider_that_cannot_dedupe_is_not_sent_twice(
        settings_factory, fake_provider, queue, messages, pipelines, clock, db_url, tmp_path):
    bl = await fake_provider()
    bl.reply(200, BL_OK)
    bl.delay = 30
    config = {"daemon": {"data_dir": str(tmp_path / "data")}, "channels": {"sms": "banglalink"},
              "providers": {"banglalink": {"user_id": "u", "password": "p",
                                           "base_url": bl.url}}}
    await queue(channel="sms")
    await _kill_during_call(bl, config, db_url, clock)
    [m] = await messages()
    assert (m.status, m.provider) == ("sending", "banglalink")  # marked before the call
    pipeline = pipelines(settings_factory(channels=config["channels"],
                                          providers=config["providers"]))
    clock.advance(timedelta(minutes=6))
    await pipeline.run_once()
    [m] = await messages()
    assert m.status == "failed" and m.error.startswith("outcome unknown")
    assert len(bl.requests) == 1  # never a second copy


async def test_sms_credit_is_spent_per_segment_and_never_below_zero(
        settings_factory, fake_provider, queue, messages, pipelines, sessionmaker, clock):
    ssl = await fake_provider()
    ssl.reply(200, SSL_OK)
    async with sessionmaker() as session, session.begin():
        session.add(SmsProvider(store_id="store_1", provider="sslwireless", credit_balance=3,
                                rate_per_sms="0.40", updated_at=clock.now()))
    settings = settings_factory(channels={"sms": "sslwireless"}, providers={
        "sslwireless": {"api_token": "t", "base_url": ssl.url}})
    await queue(channel="sms", body="ক" * 71)  # two UCS-2 segments
    await queue(channel="sms", body="ক" * 71)  # two more: only one left
    pipeline = pipelines(settings)
    await pipeline.run_once()
    first, second = await messages()
    assert (first.status, first.segments, str(first.cost)) == ("sent", 2, "0.80")
    assert second.status == "failed" and "no SMS credit" in second.error
    async with sessionmaker() as session:
        balance = await session.scalar(select(SmsProvider.credit_balance))
        logs = (await session.scalars(select(SmsLog))).all()
    assert balance == 1
    assert [(s.segments, s.encoding, str(s.cost)) for s in logs] == [(2, "UCS-2", "0.80")]
    assert len(ssl.requests) == 1


async def test_consent_and_dnd_are_checked_again_at_send_time(
        settings_factory, queue, messages, pipelines, sessionmaker, clock):
    async with sessionmaker() as session, session.begin():
        session.add(Customer(store_id="store_1", customer_id="optout", phone="+8801711000009",
                             consent_sms=False))
        session.add(DndNumber(store_id="store_1", phone="+8801711000666",
                              added_at=clock.now()))
    await queue(channel="sms", customer_id="optout", to_address="+8801711000009")
    await queue(channel="sms", customer_id="optout", to_address="+8801711000009",
                marketing=False)  # an order update still goes out
    await queue(channel="sms", to_address="+8801711000666", marketing=False)
    await pipelines(settings_factory()).run_once()
    marketing, transactional, dnd = await messages()
    assert (marketing.status, marketing.error) == ("cancelled", "customer opted out of sms")
    assert transactional.status == "sent"
    assert (dnd.status, dnd.error) == ("cancelled", "number is on the do-not-disturb list")
    async with sessionmaker() as session:
        events = (await session.scalars(select(OutboundEvent))).all()
    assert sorted(e.payload["data"]["status"] for e in events) == [
        "cancelled", "cancelled", "sent"]


async def test_rate_limit_spaces_sends(settings_factory, fake_provider, queue, pipelines):
    ssl = await fake_provider()
    ssl.reply(200, SSL_OK)
    settings = settings_factory(channels={"sms": "sslwireless"}, providers={
        "sslwireless": {"api_token": "t", "base_url": ssl.url, "rate_limit": 20}})
    for _ in range(6):
        await queue(channel="sms")
    started = time.monotonic()
    await pipelines(settings).run_once()
    assert len(ssl.requests) == 6
    assert time.monotonic() - started >= 5 / 20  # six sends, 50 ms apart at 20/s


class FlakyGateway:
    """A provider plugin given as an object: fails while `down`, says so in its health."""

    def __init__(self):
        self.down, self.sent = True, 0

    @hookimpl
    def stormd_provider(self):
        return ProviderInfo(name="flaky", channels=("sms",))

    @hookimpl
    def stormd_send(self, message):
        if self.down:
            raise RetryableError("flaky: gateway timeout")
        self.sent += 1
        return f"flaky-{self.sent}"

    @hookimpl
    def stormd_health(self):
        return Health(ok=not self.down, detail="status page says down" if self.down else "")


async def test_open_circuit_stays_open_while_the_provider_reports_unhealthy(
        settings_factory, queue, messages, pipelines, clock):
    flaky = FlakyGateway()
    settings = settings_factory(channels={"sms": ["flaky", "outbox"]},
                                delivery={"breaker_failures": 1, "breaker_cooldown": "60s"})
    plugins = ChannelPlugins(load_entry_points=False, extra=[flaky])
    plugins.configure(settings)
    pipeline = pipelines(settings, plugins=plugins)
    await queue(channel="sms")
    await pipeline.run_once()  # fails: circuit opens
    clock.advance(timedelta(seconds=61))
    await queue(channel="sms")
    await pipeline.run_once()  # cooldown over, but the health hook says down: outbox
    assert [m.provider for m in await messages()] == ["outbox", "outbox"]
    flaky.down = False
    clock.advance(timedelta(seconds=61))
    await queue(channel="sms")
    await pipeline.run_once()
    assert (await messages())[-1].provider == "flaky"
    assert pipeline.breaker("flaky").state == "closed"


class SlowGateway:
    """A provider plugin that takes a while per send and counts the sends in flight."""

    def __init__(self):
        self.in_flight = self.peak = self.sent = 0

    @hookimpl
    def stormd_provider(self):
        return ProviderInfo(name="slow", channels=("sms",))

    @hookimpl
    async def stormd_send(self, message):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.02)
        self.in_flight -= 1
        self.sent += 1
        return f"slow-{self.sent}"


async def test_a_provider_never_has_more_sends_in_flight_than_its_concurrency(
        settings_factory, queue, messages, pipelines):
    slow = SlowGateway()
    settings = settings_factory(channels={"sms": "slow"},
                                providers={"slow": {"concurrency": 3}})
    plugins = ChannelPlugins(load_entry_points=False, extra=[slow])
    plugins.configure(settings)
    for _ in range(12):
        await queue(channel="sms")
    await pipelines(settings, plugins=plugins).run_once()
    assert [m.status for m in await messages()] == ["sent"] * 12
    assert slow.peak == 3  # three at a time, never more (and the limit was used)
