"""`stormd messages`: the delivery log, filtered, as a table or JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from click.testing import CliRunner

from stormd.daemon.cli.main import main
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.migrate import create_schema

NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def _config(tmp_path) -> tuple[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stormd.db'}"
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    return url, str(config)


async def _queue(url: str) -> None:
    await create_schema(url)
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as s:
        for i, (customer, channel) in enumerate([("c1", "sms"), ("c1", "email"), ("c2", "sms")]):
            await enqueue_message(s, MessageRequest(
                store_id="store_1" if customer == "c1" else "store_2", customer_id=customer,
                channel=channel, to_address="+8801711000001", body=f"Salam {customer} #{i}",
                idempotency_key=f"k{i}", template="cart_reminder_3", trigger="cart_recovery",
                campaign_id="camp1", cost=Decimal("0.35")), NOW + timedelta(minutes=i))
        await s.commit()
    await engine.dispose()


def test_empty_log_on_a_fresh_database(tmp_path):
    _, config = _config(tmp_path)
    result = CliRunner().invoke(main, ["messages", "--config", config])
    assert result.exit_code == 0 and "(none)" in result.output
    result = CliRunner().invoke(main, ["messages", "--json", "--config", config])
    assert json.loads(result.output) == []


def test_log_filters_by_customer_channel_and_store(tmp_path):
    url, config = _config(tmp_path)
    asyncio.run(_queue(url))

    def run(*args: str) -> list[dict]:
        cli = ["messages", "--json", "--config", config, *args]
        return json.loads(CliRunner().invoke(main, cli).output)

    everything = run()
    assert [m["body"] for m in everything] == ["Salam c2 #2", "Salam c1 #1", "Salam c1 #0"]
    first = everything[-1]
    assert {k: first[k] for k in ("storeId", "customerId", "channel", "template", "trigger",
                                  "campaignId", "status", "cost")} == {
        "storeId": "store_1", "customerId": "c1", "channel": "sms",
        "template": "cart_reminder_3", "trigger": "cart_recovery", "campaignId": "camp1",
        "status": "queued", "cost": "0.35"}
    assert first["createdAt"].startswith("2026-11-24T04:00:00")
    assert [m["body"] for m in run("--customer", "c1", "--channel", "sms")] == ["Salam c1 #0"]
    assert [m["customerId"] for m in run("--store", "store_2")] == ["c2"]


def test_table_shows_the_contract_columns(tmp_path):
    url, config = _config(tmp_path)
    asyncio.run(_queue(url))
    result = CliRunner().invoke(main, ["messages", "--customer", "c2", "--config", config])
    header = result.output.splitlines()[0].split()
    assert header == ["id", "store", "customer", "channel", "provider", "template", "trigger",
                      "campaign", "status", "cost", "created_at", "body"]
    assert "Salam c2 #2" in result.output
