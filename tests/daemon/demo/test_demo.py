"""`stormd demo`: a small store's day through the embedded daemon, and the report."""

from __future__ import annotations

import re
from datetime import timedelta

from stormd.daemon.demo.day import run_demo


async def test_the_demo_plays_a_day_and_reports_what_the_automations_did():
    lines: list[str] = []
    await run_demo(customers=40, seed=3, say=lines.append, tick=timedelta(minutes=30),
                   follow_step=timedelta(hours=6))
    text = "\n".join(lines)
    published, processed, rejected = map(int, re.search(
        r"published (\d+), processed (\d+), duplicates \d+, rejected to the DLQ (\d+)", text
    ).groups())
    assert published > 50 and processed == published
    assert rejected == 2  # the two broken events the demo storefront sends
    p50, p99 = map(float, re.search(  # bucket bounds: finite unless nothing was handled
        r"receipt to committed: p50 <= ([\d.]+) ms, p99 <= ([\d.]+) ms", text).groups())
    assert 0 < p50 <= p99 <= 10_000
    for section in ("Abandoned carts", "RFM and segments", "Campaign", "Automations",
                    "Messages", "KPIs", "Predicted value"):
        assert f"\n{section}" in text
    assert re.search(r"abandoned [1-9]\d*", text), text
    assert "abandoned_cart" in text  # reminders were queued and sent through the outbox
    assert "unavailable" not in text  # every report section could be computed
    assert re.search(r"RFM runs [1-9]", text), text  # the nightly cron fired
    assert re.search(r"customer\.segmented published: entered [1-9]", text), text
    assert re.search(r"Campaign\n.*\n.*\n  sent [1-9]", text), text  # the API-driven campaign
    assert "status SENT" in text
    # The stand-in operators' receipts went through /webhooks/outbox into the KPIs.
    assert re.search(r"receipts posted to /webhooks/outbox .*whatsapp read [1-9]", text), text
    assert re.search(r"whatsapp_read_rate +[1-9][\d.]* %", text), text
    assert re.search(r"message\.status [1-9]", text), text
    # The first nightly fill of `vip` rewards nobody; cash-on-delivery orders get their upsell.
    first_fill = re.search(r"VIP: the first fill found (\d+) VIPs .* rewarded\s+none", text)
    assert first_fill and int(first_fill.group(1)) > 0, text
    assert re.search(r"post-purchase: [1-9]\d* cash-on-delivery orders", text), text
    # 40 shoppers are too few to predict from: the reason, not numbers.
    assert re.search(r"Predicted value.*\n  not enough history: \d+ repeat buyers", text), text


async def test_the_demo_report_data_is_what_json_prints():
    data = await run_demo(customers=30, seed=5, say=lambda _: None, tick=timedelta(hours=1),
                          follow_step=timedelta(hours=8))
    assert data["store"] == "dhaka_bazar" and data["customers"] == 30
    assert data["kpis"]["abandoned_carts"] >= 1
    assert data["campaign"]["status"] == "SENT"
    rules = data["automationRules"]
    assert rules["vip"]["backfillSkipped"] > 0 and rules["postPurchase"]["cashOnDelivery"] > 0
    reached = {row["status"] for row in data["messages"] if row["messages"]}
    assert {"sent", "read"} <= reached  # e-mails sent; WhatsApp read, by the receipts
