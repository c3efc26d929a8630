from sqlalchemy import select

from stormd.schema.marketing.messages import EmailEvent, SmsLog
from stormd.schema.runtime.inbox import OutboundEvent


async def test_outbox_records_queued_messages_as_sent(settings_factory, queue, messages,
                                                      pipelines, sessionmaker):
    pipeline = pipelines(settings_factory())
    await queue(channel="sms", body="Hello", customer_id="c1", campaign_id="camp1")
    await queue(channel="email", to_address="a@example.com", body="Hi", subject="S",
                customer_id="c2")
    assert await pipeline.run_once() == 2
    rows = await messages()
    assert [(m.status, m.provider, m.attempts) for m in rows] == [
        ("sent", "outbox", 1), ("sent", "outbox", 1)]
    assert all(m.external_id and m.sent_at for m in rows)
    async with sessionmaker() as session:
        sms = (await session.scalars(select(SmsLog))).all()
        email = (await session.scalars(select(EmailEvent))).all()
        events = (await session.scalars(select(OutboundEvent))).all()
    assert [(s.segments, s.encoding, s.status) for s in sms] == [(1, "GSM-7", "SENT")]
    assert [(e.type, e.message_id) for e in email] == [("SENT", str(rows[1].id))]
    statuses = sorted((e.payload["data"]["messageId"], e.payload["data"]["status"])
                      for e in events)
    assert statuses == [(str(rows[0].id), "sent"), (str(rows[1].id), "sent")]
    assert events[0].subject.startswith("stormcom.out.store_1.message.status")
    assert await pipeline.run_once() == 0  # nothing left: sent once


async def test_running_pipeline_delivers_and_drains_on_stop(settings_factory, queue,
                                                            messages, pipelines):
    pipeline = pipelines(settings_factory(delivery={"poll_interval": "20ms"}))
    await pipeline.start()
    for _ in range(30):
        await queue(channel="push", to_address="tok")
    pipeline.wake()
    import asyncio
    for _ in range(200):
        if all(m.status == "sent" for m in await messages()):
            break
        await asyncio.sleep(0.02)
    await pipeline.stop()
    assert [m.status for m in await messages()] == ["sent"] * 30


async def test_outbox_records_what_each_message_would_have_cost(settings_factory, queue,
                                                                 messages, pipelines):
    """The outbox charges nothing itself: each message is recorded at the list price of
    `campaigns.message_cost` (SMS per segment), so a dry run's costs and ROI are real."""
    pipeline = pipelines(settings_factory(campaigns={"message_cost": {
        "sms": "0.35", "whatsapp": "0.80", "email": "0.05", "push": "0"}}))
    await queue(channel="sms", body="ঈদ মোবারক! " * 10, customer_id="c1")  # UCS-2, 2 parts
    await queue(channel="whatsapp", body="Hi", customer_id="c2")
    await queue(channel="email", to_address="a@example.com", body="Hi", subject="S",
                customer_id="c3")
    await queue(channel="push", to_address="tok", body="Hi", customer_id="c4")
    assert await pipeline.run_once() == 4
    assert [(m.channel, str(m.cost)) for m in await messages()] == [
        ("sms", "0.70"), ("whatsapp", "0.80"), ("email", "0.05"), ("push", "0.00")]
