"""KPI arithmetic per store, the `stormd kpis` command, and the Prometheus gauges."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from cart_shop import HOUR, Shop
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from stormd.config.clock import SettableClock
from stormd.daemon.cli.main import main as cli
from stormd.handlers.reporting.figures import show_kpi
from stormd.handlers.reporting.kpis import compute_kpis, publish_gauges
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.metrics import exposition


async def _four_carts_one_recovered(sessionmaker, clock, settings) -> None:
    shop = Shop(sessionmaker, clock, settings)
    for n in range(4):
        await shop.customer(f"c{n}")
        await shop.cart(f"k{n}", customer=f"c{n}", price="1000")
    await shop.advance(HOUR)  # four abandoned, four WhatsApp reminders
    shop.clock.advance(timedelta(hours=5))
    await shop.order("o1", customer="c1", cart_id="k1", total="950")
    async with sessionmaker() as s:
        await s.execute(update(Message).values(cost=Decimal("0.50"), status="sent"))
        await enqueue_message(s, MessageRequest(
            store_id="store_1", customer_id="c0", channel="email", to_address="c0@example.com",
            body="Eid sale", idempotency_key="campaign:eid:c0", campaign_id="eid",
            cost=Decimal("1.00")), clock.now())
        at = clock.now()
        s.add_all([
            EmailEvent(store_id="store_1", message_id=m, type=t, occurred_at=at)
            for m, t in (("m1", "SENT"), ("m2", "SENT"), ("m1", "OPEN"), ("m1", "OPEN"),
                         ("m1", "CLICK"))
        ])
        await s.commit()


async def test_kpi_arithmetic(sessionmaker, clock, settings_factory):
    await _four_carts_one_recovered(sessionmaker, clock, settings_factory())
    async with sessionmaker() as s:
        [row] = await compute_kpis(s)
    assert row["store"] == "store_1"
    assert (row["abandoned_carts"], row["recovered_carts"]) == (4, 1)
    assert row["cart_recovery_rate"] == 0.25
    assert row["recovered_revenue"] == Decimal("950.00")
    assert row["cart_recovery_cost"] == Decimal("2.00")
    assert row["messaging_cost"] == Decimal("3.00")
    assert (row["emails_sent"], row["email_open_rate"], row["email_click_rate"]) == (2, 0.5, 0.5)
    assert row["sms_delivery_rate"] is None  # nothing sent by SMS: no rate, not 0 %
    assert (row["automation_executions"], row["automation_success_rate"]) == (4, 0.25)

    publish_gauges([row])
    body, _ = exposition()
    samples = {(s.labels.get("store"), s.labels.get("kpi")): s.value
               for family in text_string_to_metric_families(body.decode())
               if family.name == "stormd_kpi" for s in family.samples}
    assert samples[("store_1", "cart_recovery_rate")] == 0.25
    assert samples[("store_1", "recovered_revenue")] == 950.0


def test_stormd_kpis_command(db_url, tmp_path, settings_factory):
    clock = SettableClock()

    async def prepare():
        engine = make_engine(db_url)
        try:
            await _four_carts_one_recovered(make_sessionmaker(engine), clock, settings_factory())
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["kpis", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["cart_recovery_rate"] == 0.25 and row["recovered_revenue"] == "950.00"
    result = runner.invoke(cli, ["kpis", "--config", str(config), "--store", "store_1"])
    assert result.exit_code == 0
    assert "cart recovery rate" in result.output and "25.0 %" in result.output
    assert "৳950.00" in result.output
    result = runner.invoke(cli, ["kpis", "--config", str(config), "--store", "nowhere", "--json"])
    assert json.loads(result.output)[0]["abandoned_carts"] == 0


@pytest.mark.parametrize("name, value, shown", [
    ("cart_recovery_rate", 0.237, "23.7 %"),
    ("segment_conversion_uplift", 0.015, "+1.5 pts"),
    ("segment_conversion_uplift", -0.02, "-2.0 pts"),
    ("recovered_revenue", Decimal("153981"), "৳153,981.00"),
    ("promotion_attribution", Decimal("4349"), "৳4,349.00"),
    ("campaign_roi", 157.5725, "157.57:1"),
    ("campaign_roi", 0.5, "0.50:1"),  # a loss reads as one, not as 50 %
    ("abandoned_carts", 76, "76"),
    ("whatsapp_read_rate", None, "-"),
])
def test_kpis_read_as_people_read_them(name, value, shown):
    assert show_kpi(name, value) == shown
