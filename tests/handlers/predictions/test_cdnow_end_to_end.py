"""The whole path on the CDNOW sample: its orders imported with `stormd import orders`,
then `stormd clv fit --as-of 1997-09-30 --unit weeks` prints the published parameters, on
SQLite and PostgreSQL.

The sample becomes one order per line: order id `cdnow-<line>`, the customer's master id
(`00004`, kept as text with its zeros), status DELIVERED, total = the line's dollars
(eight lines are 0.00, which the importer takes: money may be zero), and `occurredAt` at
noon of the line's date in the store's time zone (Asia/Dhaka, +06:00), so no day boundary
moves any order to another date. Published figures (Fader, Hardie & Lee 2005, and the
Gamma-Gamma note on the same data): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
LL = -9,582.4; p = 6.25, q = 3.74, gamma = 15.44 on 946 repeat buyers.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from stormd.config.loader import settings_from_dict
from stormd.daemon.cli.main import main
from stormd.handlers.predictions import clv
from stormd.handlers.predictions.store_fit import end_of_day, read_history
from stormd.schema.db.engine import make_engine, make_sessionmaker

STORE = "cdnow"


@pytest.fixture
def imported(cdnow_sample, tmp_path, db_url):
    """A database holding the CDNOW orders, loaded by `stormd import orders`; its config."""
    rows = []
    for n, line in enumerate(cdnow_sample.read_text().splitlines(), 1):
        master, _, ymd, _, dollars = line.split()
        rows.append({"orderId": f"cdnow-{n}", "customerId": master, "status": "DELIVERED",
                     "total": dollars, "items": [],
                     "occurredAt": f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}T12:00:00+06:00"})
    orders = tmp_path / "cdnow.jsonl"
    orders.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    done = CliRunner().invoke(main, ["import", "orders", str(orders), "--store", STORE,
                                     "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "imported 6919 orders" in done.output
    return str(config)


def _fit(config: str, *args: str):
    return CliRunner().invoke(main, ["clv", "fit", "--store", STORE, *args,
                                                     "--config", config])


def test_clv_fit_on_the_imported_sample_prints_the_papers_parameters(imported):
    result = _fit(imported, "--as-of", "1997-09-30", "--unit", "weeks", "--json")
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert (fit["customers"], fit["repeatBuyers"], fit["asOfDay"]) == (2357, 946, "1997-09-30")
    bg, gg = fit["bgnbd"], fit["gammaGamma"]
    assert (round(bg["r"], 3), round(bg["alpha"], 3), round(bg["a"], 3), round(bg["b"], 3)) == \
        (0.243, 4.414, 0.793, 2.426)
    assert round(bg["logLikelihood"], 1) == -9582.4
    assert (round(gg["p"], 2), round(gg["q"], 2), round(gg["gamma"], 2), gg["customers"]) == \
        (6.25, 3.74, 15.44, 946)
    # Beyond the published figures: what the optimiser said, and the independence check.
    assert bg["convergence"]["converged"] and gg["convergence"]["converged"]
    assert gg["independence"] == {"correlation": pytest.approx(0.114, abs=5e-4),
                                  "limit": 0.3, "holds": True}
    assert fit["warnings"] == []

    text = _fit(imported, "--as-of", "1997-09-30", "--unit", "weeks")
    assert text.exit_code == 0
    assert "2,357 customers, 946 repeat buyers, 272 days of orders" in text.output
    assert "r 0.2426  alpha 4.4136  a 0.7929  b 2.4259  log-likelihood -9,582.43" in text.output
    assert "p 6.2496  q 3.7442  gamma 15.4435 on 946 repeat buyers" in text.output
    assert "independence holds" in text.output


def test_the_database_summary_is_the_files_own(imported, cdnow, cdnow_sample, db_url):
    """Every customer's x, t_x, T and mean repeat spend read back through the database
    (local days in SQL) equal the summary of the file itself: no order changed its date."""
    _, day, dollars = cdnow
    ids = np.array([line.split()[0] for line in cdnow_sample.read_text().splitlines()])
    cut = int(np.datetime64("1997-09-30").astype(np.int64))
    expected = clv.summarise(ids, day, dollars, as_of_day=cut, unit_days=7)

    async def read():
        engine = make_engine(db_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await read_history(session, settings_from_dict({}), STORE,
                                          end_of_day(date(1997, 9, 30), ZoneInfo("Asia/Dhaka")),
                                          "weeks")
        finally:
            await engine.dispose()

    history = asyncio.run(read())
    order = np.argsort(np.array(history.customer_ids))
    s = history.summary
    assert history.as_of_day == cut and len(history) == expected.customers
    for got, want in [(s.x, expected.x), (s.t_x, expected.t_x), (s.T, expected.T)]:
        assert np.array_equal(got[order], want)
    assert np.allclose(s.mean_repeat_spend[order], expected.mean_repeat_spend, equal_nan=True)


def test_a_young_store_gets_not_enough_history_not_numbers(imported):
    result = _fit(imported, "--as-of", "1997-02-15", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["error"] == ("not enough history: 166 repeat buyers (at least 200 needed) and "
                             "45 days of orders (at least 90 needed)")
    assert data["notEnoughHistory"] is True and "bgnbd" not in data
    text = _fit(imported, "--as-of", "1997-02-15")
    assert text.exit_code == 1 and text.stdout == ""
    assert "store cdnow as of 1997-02-15: not enough history: 166 repeat buyers" in text.stderr
