"""`stormd import` on the command line: a rate on success, `line N: reason` and exit 1."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text

from stormd.daemon.cli.main import main


def _config(tmp_path, db) -> str:
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    return str(config)


def _orders(db) -> int:
    with create_engine(f"sqlite:///{db}").connect() as conn:
        return conn.scalar(select(func.count()).select_from(text("orders")))


ROW = {"orderId": "o1", "customerId": "c1", "status": "PAID", "total": "500",
       "occurredAt": "2026-10-01T10:00:00+06:00",
       "items": [{"productId": "p1", "quantity": 1, "unitPrice": "500"}]}


def test_import_creates_the_database_and_prints_the_rate(tmp_path):
    db = tmp_path / "fresh" / "stormd.db"
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    args = ["import", "orders", str(path), "--store", "store_1", "--config", _config(tmp_path, db)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "imported 1 orders" in result.output and "orders/s;" in result.output
    # the order, its item, its status history entry and its buyer
    assert ("4 rows written to customers, orders, order_items, order_status_history"
            in result.output and result.output.rstrip().endswith(" rows/s)"))
    assert CliRunner().invoke(main, args).exit_code == 0
    assert _orders(db) == 1


def test_bad_row_exits_1_naming_the_line(tmp_path):
    db = tmp_path / "stormd.db"
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({**ROW, "status": "LOST"}) + "\n")
    result = CliRunner().invoke(main, ["import", "orders", str(path), "--store", "s1",
                                       "--config", _config(tmp_path, db)])
    assert result.exit_code == 1
    assert "line 2: status" in result.output and "nothing was imported" in result.output
    assert _orders(db) == 0


def test_unknown_kind_and_file_type_are_refused(tmp_path):
    path = tmp_path / "orders.txt"
    path.write_text("x")
    assert CliRunner().invoke(main, ["import", "carts", str(path)]).exit_code == 2
    result = CliRunner().invoke(main, ["import", "orders", str(path)])
    assert result.exit_code == 2 and "use a .csv or .jsonl file" in result.output
