"""An SMS whose template allows one segment is trimmed at send time: the gateway gets a
one-part UCS-2 message with its link whole, and the SMS log bills one segment."""

from __future__ import annotations

from sqlalchemy import select

from stormd.plugins import sms_info
from stormd.schema.marketing.messages import SmsLog

SSL_OK = {"status": "SUCCESS", "status_code": 200, "error_message": "",
          "smsinfo": [{"sms_status": "SUCCESS", "reference_id": "ssl-ref"}]}
LINK = " https://s.stormcom.app/c/AB12"
REMINDER = ("স্যামসাং গ্যালাক্সি এ৫৫ ফাইভজি স্মার্টফোন ও চার্জার সহ পুরো সেট এখনো আপনার "
            "কার্টে অপেক্ষা করছে" + LINK)


async def test_a_bengali_reminder_allowed_one_segment_goes_out_in_one(
        settings_factory, fake_provider, queue, pipelines, sessionmaker):
    ssl = await fake_provider()
    ssl.reply(200, SSL_OK)
    settings = settings_factory(channels={"sms": "sslwireless"}, providers={
        "sslwireless": {"api_token": "t", "base_url": ssl.url, "rate_per_segment": "0.40"}})
    assert sms_info(REMINDER).segments == 2
    await queue(channel="sms", to_address="+8801711000001", body=REMINDER,
                data={"sms_max_segments": 1}, marketing=False)
    await queue(channel="sms", to_address="+8801711000002", body=REMINDER,
                marketing=False)  # no flag: sent whole, billed as two
    await pipelines(settings).run_once()
    sent = {ssl.json(i)["msisdn"]: ssl.json(i)["sms"] for i in range(len(ssl.requests))}
    trimmed = sent["8801711000001"]
    assert (sms_info(trimmed).encoding, sms_info(trimmed).segments) == ("UCS-2", 1)
    assert trimmed.endswith("…" + LINK) and REMINDER.startswith(trimmed[:20])
    assert sent["8801711000002"] == REMINDER
    async with sessionmaker() as session:
        logs = {s.phone_number: s for s in (await session.scalars(select(SmsLog))).all()}
    assert (logs["+8801711000001"].segments, str(logs["+8801711000001"].cost)) == (1, "0.40")
    assert logs["+8801711000001"].message == trimmed
    assert (logs["+8801711000002"].segments, str(logs["+8801711000002"].cost)) == (2, "0.80")
