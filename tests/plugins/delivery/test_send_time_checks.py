"""Send-time checks on queued messages: quiet hours and Friday prayer in the store's time
zone hold marketing (not sent, not dropped, counted as `held`, not as a failed attempt's
`retry`), transactional messages go out."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY
from sqlalchemy import select

from stormd.schema.marketing.messages import Message, SmsLog
from stormd.schema.shop.stores import Store


def counted(status: str, channel: str = "sms") -> float:
    """stormd_messages_total for messages no provider was tried for (held ones)."""
    return REGISTRY.get_sample_value("stormd_messages_total", {
        "channel": channel, "provider": "none", "status": status}) or 0.0


async def test_marketing_due_in_quiet_hours_is_held_to_seven_and_then_sent(
        settings_factory, queue, messages, pipelines, sessionmaker, clock):
    clock.set(datetime(2026, 11, 23, 20, 30, tzinfo=UTC))  # 02:30 in Dhaka
    await queue(channel="sms", body="Sale tonight", marketing=True)
    await queue(channel="sms", body="Your order shipped", marketing=False)
    pipeline = pipelines(settings_factory())
    held, retried = counted("held"), counted("retry")
    await pipeline.run_once()
    assert (counted("held") - held, counted("retry") - retried) == (1, 0)
    marketing, transactional = await messages()
    assert transactional.status == "sent"
    assert marketing.status == "queued" and marketing.attempts == 0
    assert marketing.not_before.replace(tzinfo=UTC) == datetime(2026, 11, 24, 1, 0,
                                                                 tzinfo=UTC)  # 07:00 +06
    assert await pipeline.run_once() == 0  # still held: nothing due

    clock.set(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))
    assert await pipeline.run_once() == 1
    marketing, _ = await messages()
    assert (marketing.status, marketing.error, marketing.attempts) == ("sent", None, 1)
    async with sessionmaker() as session:
        assert len((await session.scalars(select(SmsLog))).all()) == 2


async def test_friday_prayer_is_read_in_each_stores_time_zone(
        settings_factory, queue, messages, pipelines, sessionmaker, clock):
    clock.set(datetime(2026, 11, 27, 7, 30, tzinfo=UTC))  # Friday 13:30 Dhaka, 07:30 London
    async with sessionmaker() as session, session.begin():
        session.add(Store(id="store_1", timezone="Asia/Dhaka", created_at=clock.now()))
        session.add(Store(id="store_uk", timezone="Europe/London", created_at=clock.now()))
    await queue(store_id="store_1", channel="email", to_address="a@example.com")
    await queue(store_id="store_uk", channel="email", to_address="b@example.com")
    await queue(store_id="store_1", channel="whatsapp", template="order_update",
                to_address="+8801711000001", marketing=False)
    held = counted("held", "email")
    await pipelines(settings_factory()).run_once()
    assert counted("held", "email") - held == 1
    dhaka, london, update = await messages()
    assert (dhaka.status, dhaka.not_before.replace(tzinfo=UTC)) == (
        "queued", datetime(2026, 11, 27, 8, 0, tzinfo=UTC))  # 14:00 in Dhaka
    assert london.status == "sent" and update.status == "sent"
    async with sessionmaker() as session:
        held = await session.scalar(select(Message).where(Message.status == "queued"))
    assert held.id == dhaka.id  # held, never dropped
