"""`stormd rfm run` and `stormd segments …` on the command line, on both databases:
history loaded with `stormd import`, then scored, listed, previewed and extended."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from stormd.daemon.cli.main import main

AS_OF = "2026-11-24T04:00:00+00:00"
ORDERS = [  # a: vip (40), b: at-risk (20), c: hibernating (10) as of AS_OF
    ("o1", "a", "500", "2026-11-23T04:00:00+00:00", "PAID"),
    ("o2", "a", "500", "2026-11-19T04:00:00+00:00", "PAID"),
    ("o3", "b", "300", "2026-11-04T04:00:00+00:00", "DELIVERED"),
    ("o4", "c", "700", "2026-05-08T04:00:00+00:00", "PAID"),
    ("o5", "d", "900", "2026-11-20T04:00:00+00:00", "CANCELLED"),
]


def _cli(config, *args):
    result = CliRunner().invoke(main, [*args, "--config", config])
    return result


def _store(tmp_path, db_url) -> str:
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps({
        "orderId": o, "customerId": c, "total": t, "occurredAt": at, "status": s,
        "items": [{"productId": "p1", "category": "Shoes", "quantity": 1, "unitPrice": t}],
    }) + "\n" for o, c, t, at, s in ORDERS))
    imported = CliRunner().invoke(main, ["import", "orders", str(path), "--store", "s1",
                                         "--config", str(config)])
    assert imported.exit_code == 0, imported.output
    return str(config)


def test_rfm_run_prints_counts_per_segment_and_members_list_them(tmp_path, db_url):
    config = _store(tmp_path, db_url)
    result = _cli(config, "rfm", "run", "--as-of", AS_OF, "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)
    assert (report["store"], report["status"], report["population"]) == ("s1", "OK", 3)
    assert {s: v["members"] for s, v in report["segments"].items()} == {
        "vip": 1, "loyal": 0, "at-risk": 1, "hibernating": 1}
    assert report["seconds"] >= 0

    text = _cli(config, "rfm", "run", "--store", "s1", "--as-of", AS_OF)
    assert text.exit_code == 0 and "run" in text.output and "vip" in text.output

    members = _cli(config, "segments", "members", "vip", "--json")
    assert json.loads(members.output) == [{"customerId": "a"}]
    listed = json.loads(_cli(config, "segments", "list", "--store", "s1", "--json").output)
    assert [(s["slug"], s["members"], s["builtin"]) for s in listed] == [
        ("vip", 1, True), ("loyal", 0, True), ("at-risk", 1, True), ("hibernating", 1, True)]
    shown = json.loads(_cli(config, "segments", "show", "at-risk", "--json").output)
    assert shown["criteria"] == {"rfm.composite": {"between": [18, 27]}}
    naive = _cli(config, "rfm", "run", "--as-of", "2026-11-24T04:00")
    assert naive.exit_code == 2 and "needs a time zone" in naive.output


def test_segments_create_and_preview_validate_their_input(tmp_path, db_url):
    config = _store(tmp_path, db_url)
    assert _cli(config, "rfm", "run", "--as-of", AS_OF).exit_code == 0
    preview = _cli(config, "segments", "preview", "--criteria",
                   '{"orders.total": {"gte": 700}}', "--json")
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.output)["count"] == 2
    bad = _cli(config, "segments", "preview", "--criteria", '{"orders.totl": 1}')
    assert bad.exit_code == 1 and "unknown field 'orders.totl'" in bad.output

    definition = tmp_path / "shoes.json"
    definition.write_text(json.dumps({"slug": "shoe-buyers", "name": "Shoe buyers",
                                      "criteria": {"categories.purchased": ["Shoes"]}}))
    created = _cli(config, "segments", "create", "--file", str(definition), "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["slug"] == "shoe-buyers"
    again = _cli(config, "segments", "create", "--file", str(definition))
    assert again.exit_code == 1 and "already has a segment 'shoe-buyers'" in again.output
    assert _cli(config, "segments", "create", "--template", "churn-risk").exit_code == 0
    assert _cli(config, "rfm", "run", "--as-of", AS_OF).exit_code == 0
    members = json.loads(_cli(config, "segments", "members", "shoe-buyers", "--json").output)
    assert members == [{"customerId": "a"}, {"customerId": "b"}, {"customerId": "c"}]
    missing = _cli(config, "segments", "show", "nope")
    assert missing.exit_code == 1 and "no segment 'nope'" in missing.output


# --- segment reactions wherever a refresh runs (the command line included) --------------

def _write_orders(path, rows) -> None:
    path.write_text("".join(json.dumps({
        "orderId": o, "customerId": c, "total": t, "occurredAt": at, "status": "PAID",
        "items": [{"productId": "p1", "category": "Shoes", "quantity": 1, "unitPrice": t}],
    }) + "\n" for o, c, t, at in rows))


def _db(db_url, work):
    """Run `work(session)` on the test's database (what a STATE handler would write)."""
    import asyncio

    from stormd.schema.db.engine import make_engine, make_sessionmaker

    async def go():
        engine = make_engine(db_url)
        try:
            async with make_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _vip_log(db_url) -> tuple[dict[str, tuple[str, str | None]], dict[str, int]]:
    """(customer -> (status, error) of VIP executions, customer -> VIP messages queued)."""
    from sqlalchemy import func, select

    from stormd.schema.marketing.automations import AutomationExecution as X
    from stormd.schema.marketing.messages import Message
    from stormd.schema.shop.promotions import DiscountCode

    async def read(session):
        runs = {c: (s, e) for c, s, e in await session.execute(
            select(X.customer_id, X.status, X.error).where(X.trigger == "vip"))}
        sent = dict((await session.execute(
            select(Message.customer_id, func.count()).where(Message.trigger == "vip")
            .group_by(Message.customer_id))).all())
        codes = dict((await session.execute(
            select(DiscountCode.customer_id, func.count()).where(DiscountCode.trigger == "vip")
            .group_by(DiscountCode.customer_id))).all())
        assert codes == sent  # one code a reward
        return runs, sent

    return _db(db_url, read)


def test_rfm_run_on_the_command_line_rewards_vip_entrants_once_but_not_a_backfill(
        tmp_path, db_url):
    """Thresholds mode: two orders of 5,000 within a fortnight make a VIP (R 5, F 3, M 4:
    composite 41). `v`'s history is there at the first fill; `w` orders afterwards (written
    as the order handler writes it); `x`'s history is imported afterwards."""
    from shop_history import customer, order

    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[rfm]\nmode = "thresholds"\n')
    first = tmp_path / "first.jsonl"
    _write_orders(first, [("v1", "v", "5000", "2026-11-20T04:00:00+00:00"),
                          ("v2", "v", "5000", "2026-11-22T04:00:00+00:00"),
                          ("u1", "u", "300", "2026-11-22T04:00:00+00:00")])
    assert _cli(str(config), "import", "orders", str(first), "--store", "s1").exit_code == 0

    run = json.loads(_cli(str(config), "rfm", "run", "--as-of", AS_OF, "--json").output)
    assert run[0]["segments"]["vip"] == {"members": 1, "entered": 1, "exited": 0,
                                         "backfill": 1, "backfillReason": "first fill"}
    assert _vip_log(db_url) == ({"v": ("SKIPPED", "segment backfill")}, {})

    async def w_orders(session):
        await customer(session, "w", store="s1", email="w@mail.bd", phone="+8801711000000")
        for n, day in ((1, 25), (2, 26)):
            await order(session, f"w{n}", "w", "5000", datetime(2026, 11, day, 4, tzinfo=UTC),
                        store="s1")

    _db(db_url, w_orders)
    later = tmp_path / "later.jsonl"
    _write_orders(later, [("x1", "x", "5000", "2026-11-25T04:00:00+00:00"),
                          ("x2", "x", "5000", "2026-11-26T04:00:00+00:00")])
    assert _cli(str(config), "import", "orders", str(later), "--store", "s1").exit_code == 0

    as_of = "2026-11-27T04:00:00+00:00"
    run = json.loads(_cli(str(config), "rfm", "run", "--as-of", as_of, "--json").output)
    assert run[0]["segments"]["vip"] == {"members": 3, "entered": 2, "exited": 0,
                                         "backfill": 1, "backfillReason": "imported history"}
    runs, sent = _vip_log(db_url)
    assert runs == {"v": ("SKIPPED", "segment backfill"), "w": ("COMPLETED", None),
                    "x": ("SKIPPED", "segment backfill")}
    assert sent == {"w": 1}
    # The same run again: nobody enters, nothing more is sent.
    assert _cli(str(config), "rfm", "run", "--as-of", as_of).exit_code == 0
    assert _vip_log(db_url) == (runs, sent)

    async def import_marks(session):
        from sqlalchemy import func, select

        from stormd.schema.shop.customers import ImportedCustomer

        return await session.scalar(select(func.count()).select_from(ImportedCustomer))

    assert _db(db_url, import_marks) == 0  # every segment refreshed since: marks dropped


def test_segments_create_update_and_delete_move_members_at_once(tmp_path, db_url):
    config = _store(tmp_path, db_url)
    people = tmp_path / "customers.jsonl"
    people.write_text("".join(json.dumps({"customerId": c, "email": f"{c}@mail.bd"}) + "\n"
                              for c in "abc"))
    assert _cli(config, "import", "customers", str(people), "--store", "s1").exit_code == 0
    assert _cli(config, "rfm", "run", "--as-of", AS_OF).exit_code == 0
    definition = tmp_path / "big.json"
    definition.write_text(json.dumps({"slug": "big-spenders", "name": "Big spenders",
                                      "criteria": {"orders.total": {"gte": 700}}}))
    created = json.loads(_cli(config, "segments", "create", "--file", str(definition),
                              "--json").output)
    assert created["members"] == 2  # a and c: members now, not at the next nightly run
    members = json.loads(_cli(config, "segments", "members", "big-spenders", "--json").output)
    assert members == [{"customerId": "a"}, {"customerId": "c"}]

    # A campaign launched right after reaches them.
    campaign = tmp_path / "campaign.json"
    campaign.write_text(json.dumps({"name": "Thanks", "channels": ["email"],
                                    "segments": ["big-spenders"], "template": "vip_reward",
                                    "discountPercent": 5}))
    made = json.loads(_cli(config, "campaigns", "create", "--file", str(campaign),
                           "--json").output)
    preview = json.loads(_cli(config, "campaigns", "preview", made["campaign"]["id"],
                              "--json").output)
    assert preview["preview"]["audience"] == 2

    definition.write_text(json.dumps({"slug": "big-spenders", "name": "Bigger spenders",
                                      "criteria": {"orders.total": {"gte": 900}}}))
    updated = json.loads(_cli(config, "segments", "update", "--file", str(definition),
                              "--json").output)
    assert (updated["name"], updated["members"]) == ("Bigger spenders", 1)  # one moved out
    refused = _cli(config, "segments", "delete", "big-spenders")
    assert refused.exit_code == 1 and made["campaign"]["id"] in refused.output
    assert _cli(config, "campaigns", "cancel", made["campaign"]["id"]).exit_code == 0
    deleted = json.loads(_cli(config, "segments", "delete", "big-spenders", "--json").output)
    assert deleted == {"store": "s1", "slug": "big-spenders", "deleted": True}
    assert _cli(config, "segments", "show", "big-spenders").exit_code == 1
    builtin = _cli(config, "segments", "delete", "vip")
    assert builtin.exit_code == 1 and "built in" in builtin.output
