"""`{"churn.probability": {"gte": 0.7}}` end to end on the command line, on both
databases: the nightly run predicts, `segments create` gives the segment its members at
once, a campaign to it reaches exactly them, and the next run refreshes it after the
predictions (nobody flaps out and back in)."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner
from clv_shop import T, clv_store
from sqlalchemy import select

from stormd.daemon.cli.main import main
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.predictions import CustomerPrediction

STORE = "shop"


def _cli(config: str, *args: str):
    result = CliRunner().invoke(main, [*args, "--config", config])
    assert result.exit_code == 0, result.output
    return result


async def _query(url: str, query) -> list:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            if query is None:
                await clv_store(session, STORE)
                await session.commit()
                return []
            return list(await session.scalars(query))
    finally:
        await engine.dispose()


def test_a_churn_probability_segment_from_creation_to_a_campaign(tmp_path, db_url):
    asyncio.run(_query(db_url, None))
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    config = str(config)
    [run] = json.loads(_cli(config, "rfm", "run", "--store", STORE, "--as-of", T.isoformat(),
                            "--json").stdout)
    assert run["predictions"]["status"] == "OK"
    likely = set(asyncio.run(_query(db_url, select(CustomerPrediction.customer_id).where(
        CustomerPrediction.store_id == STORE, CustomerPrediction.churn_probability >= 0.7))))
    assert 50 < len(likely) < run["population"]

    definition = tmp_path / "churn.json"
    definition.write_text(json.dumps({"slug": "likely-to-churn", "name": "Likely to churn",
                                      "criteria": {"churn.probability": {"gte": 0.7}}}))
    created = json.loads(_cli(config, "segments", "create", "--file", str(definition),
                              "--store", STORE, "--json").stdout)
    assert created["members"] == len(likely)  # at once, not at the next run
    members = json.loads(_cli(config, "segments", "members", "likely-to-churn", "--store",
                              STORE, "--json").stdout)
    assert {m["customerId"] for m in members} == likely

    campaign = tmp_path / "campaign.json"
    campaign.write_text(json.dumps({"name": "We miss you", "channels": ["email"],
                                    "segments": ["likely-to-churn"], "template": "win_back",
                                    "discountPercent": 10}))
    cid = json.loads(_cli(config, "campaigns", "create", "--file", str(campaign), "--store",
                          STORE, "--json").stdout)["campaign"]["id"]
    _cli(config, "campaigns", "schedule", cid, "--store", STORE, "--force")
    sent = json.loads(_cli(config, "campaigns", "send", cid, "--store", STORE, "--json").stdout)
    assert sent["campaign"]["status"] == "SENT" and sent["result"]["queued"] == len(likely)
    reached = asyncio.run(_query(db_url, select(Message.customer_id).where(
        Message.store_id == STORE, Message.campaign_id == cid)))
    assert sorted(reached) == sorted(likely)

    kpis = _cli(config, "kpis", "--store", STORE).stdout
    assert "predicted 365d revenue     ৳" in kpis and "predictions                fitted as of" in kpis

    [again] = json.loads(_cli(config, "rfm", "run", "--store", STORE, "--as-of",
                              T.isoformat(), "--json").stdout)
    assert again["segments"]["likely-to-churn"] == {"members": len(likely), "entered": 0,
                                                    "exited": 0, "backfill": 0,
                                                    "backfillReason": None}
