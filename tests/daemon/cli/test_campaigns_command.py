"""`stormd campaigns …`: create, preview, schedule (ROI guard), send, results, templates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from campaign_data import add_customers, add_segment, add_store, customer_row
from click.testing import CliRunner

from stormd.daemon.cli.main import main
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.migrate import create_schema


def _setup(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stormd.db'}"
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')

    async def rows():
        await create_schema(url)
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as s:
            await add_store(s)
            await add_customers(s, [customer_row(f"c{i}", locale="bn" if i % 2 else "en")
                                    for i in range(4)])
            await add_segment(s, "vip", ["c0", "c1", "c2", "c3"])
            await s.commit()
        await engine.dispose()

    asyncio.run(rows())
    return str(config)


def run(config: str, *args: str, ok: bool = True):
    result = CliRunner().invoke(main, ["campaigns", *args, "--config", config])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_campaign_from_file_to_queued_messages(tmp_path):
    config = _setup(tmp_path)
    spec = tmp_path / "eid.json"
    spec.write_text(json.dumps({"name": "Victory Day", "channels": ["sms"], "segments": ["vip"],
                                "template": "victory_day", "discountPercent": 16}))
    created = json.loads(run(config, "create", "--file", str(spec), "--json").output)
    cid = created["campaign"]["id"]
    assert created["campaign"]["status"] == "DRAFT"

    preview = json.loads(run(config, "preview", cid, "--json").output)
    assert preview["preview"]["byChannel"] == {"sms": 4}
    # Bengali is UCS-2: with the 19-character code it takes two 67-character parts
    assert preview["preview"]["smsSegments"] == 6 and preview["preview"]["cost"] == "6.00"
    bodies = {r["locale"]: r["body"] for r in preview["rendered"]}
    assert "বিজয় দিবসে 16% ছাড়" in bodies["bn"] and "Victory Day: 16% off" in bodies["en"]
    table = run(config, "preview", cid, "--customer", "c1").output
    assert "expected ROI" in table and "বিজয়" in table

    scheduled = json.loads(run(config, "schedule", cid, "--json").output)
    assert scheduled["campaign"]["status"] == "SCHEDULED"
    sent = json.loads(run(config, "send", cid, "--json").output)
    assert sent["campaign"]["status"] == "SENT" and sent["result"]["queued"] == 4
    listed = json.loads(run(config, "list", "--json").output)
    assert [c["id"] for c in listed] == [cid]
    results = json.loads(run(config, "results", cid, "--json").output)
    assert results["results"]["orders"] == 0 and results["results"]["cost"] == "6.00"


def test_refusals_exit_1_with_the_reason(tmp_path):
    config = _setup(tmp_path)
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "x", "channels": ["sms"], "segments": ["vip"],
                                "content": {"sms": {"en": "Hi {{ nickname }}"}}}))
    result = run(config, "create", "--file", str(spec), ok=False)
    assert result.exit_code == 1 and "nickname" in result.output

    (tmp_path / "poor.toml").write_text(
        Path(config).read_text() + "[campaigns]\nexpected_conversion_rate = 0.0001\n")
    spec.write_text(json.dumps({"name": "Flash", "channels": ["sms"], "segments": ["vip"],
                                "template": "friday_flash_sale", "discountPercent": 50}))
    cid = json.loads(run(config, "create", "--file", str(spec), "--json").output)["campaign"]["id"]
    poor = str(tmp_path / "poor.toml")
    refused = run(poor, "schedule", cid, ok=False)
    assert refused.exit_code == 1 and "below the store's minimum" in refused.output
    assert json.loads(run(poor, "schedule", cid, "--force", "--json").output)[
        "campaign"]["status"] == "SCHEDULED"


def test_template_library_and_a_store_template(tmp_path):
    config = _setup(tmp_path)
    rows = json.loads(run(config, "templates", "--json").output)
    by_slug = {r["slug"]: r for r in rows}
    assert by_slug["independence_day"]["recommendedDiscount"] == "26% (symbolic)"
    assert by_slug["eid_ul_fitr"]["channelMix"] == ["sms", "whatsapp", "email"]
    assert by_slug["eid_ul_fitr"]["system"] is True
    assert (by_slug["cart_reminder_3"]["smsMaxSegments"], by_slug["eid_ul_fitr"]["smsMaxSegments"]
            ) == (3, None)  # how many SMS parts a template allows (trimmed at send time)
    table = run(config, "templates").output.splitlines()
    assert "smsMaxSegments" in table[0]
    assert next(line for line in table if line.startswith("cart_reminder_3 ")).split()[-2] == "3"

    mine = tmp_path / "eid.json"
    mine.write_text(json.dumps({"slug": "eid_ul_fitr", "name": "Our Eid", "category": "seasonal",
                                "content": {"sms": {"en": "Eid offer {{ discount_code }}",
                                                    "bn": "ঈদ অফার {{ discount_code }}"}}}))
    run(config, "save-template", "--file", str(mine))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"slug": "x", "name": "x",
                                  "content": {"sms": {"en": "{% for %}"}}}))
    assert "syntax error" in run(config, "save-template", "--file", str(broken), ok=False).output

    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"name": "Eid", "channels": ["sms"], "segments": ["vip"],
                                "template": "eid_ul_fitr", "discountPercent": 30}))
    cid = json.loads(run(config, "create", "--file", str(spec), "--json").output)["campaign"]["id"]
    preview = json.loads(run(config, "preview", cid, "--json").output)
    assert all(r["body"].startswith(("Eid offer SAVE30-", "ঈদ অফার SAVE30-"))
               for r in preview["rendered"])  # the store's own wording wins
    rows = {r["slug"]: r for r in json.loads(run(config, "templates", "--json").output)}
    assert rows["eid_ul_fitr"]["name"] == "Our Eid" and rows["eid_ul_fitr"]["usageCount"] == 1
