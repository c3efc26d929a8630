"""`stormd rfm run` and `stormd segments …` on the command line, on both databases:
history loaded with `stormd import`, then scored, listed, previewed and extended."""

from __future__ import annotations

import json

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
