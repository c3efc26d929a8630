"""The scoring commands. `stormd rfm run [--store S] [--as-of T]`: one snapshot and
segment refresh now; prints the counts per segment and the run time. `stormd clv fit
--store S [--as-of T] [--unit days|weeks]`: the store's predicted-value models, fitted
and printed."""

from __future__ import annotations

import sys
from datetime import date

import click

from stormd.daemon.cli.common import echo_json, echo_table, run_command, store_options
from stormd.daemon.cli.store_scope import job_context, parse_instant, run_on_store


@click.group("rfm")
def command() -> None:
    """RFM scoring and the segment refresh that follows it."""


@command.command("run")
@store_options
@click.option("--as-of", "as_of", default=None,
              help="Score as of this instant (ISO 8601 with zone; default now).")
def run(config_path: str | None, store_id: str | None, as_of: str | None, as_json: bool) -> None:
    """Score every store (or one) and refresh its segments."""
    from stormd.handlers.scoring.nightly import run_all_stores

    async def score(settings):
        when = parse_instant(as_of)
        async with job_context(settings) as job:
            return await run_all_stores(job, when, store_id)

    reports = run_command(config_path, score)
    if as_json:
        echo_json([r.to_json() for r in reports])
    else:
        for r in reports:
            click.echo(f"store {r.store_id}: run {r.run_id} {r.status} as of "
                       f"{r.as_of.isoformat(timespec='seconds')}: {r.population} customers "
                       f"scored, {r.rows} snapshot rows in {r.seconds:.2f}s")
            echo_table([{"segment": slug, "members": c.members, "entered": len(c.entered),
                         "backfill": len(c.backfill), "exited": len(c.exited),
                         "drift": "ALERT" if slug in r.drifted else ""}
                        for slug, c in r.segments.items()],
                       ["segment", "members", "entered", "backfill", "exited", "drift"])
            if r.predictions:
                click.echo(_prediction_line(r.predictions))
            for slug, reason in r.failed.items():
                click.echo(f"segment {slug}: FAILED: {reason}")
        if not reports:
            click.echo("no stores to score")
    if any(r.status != "OK" for r in reports):
        sys.exit(1)


def _prediction_line(p) -> str:
    """The predictions step of a run, in one line."""
    if p.status != "OK":
        return f"predictions: {p.status} ({p.reason})"
    value = ", ".join(f"{d} d {v:,}" if v is not None else f"{d} d -"
                      for d, v in p.predicted.items())
    learned = ("" if p.products_learned is None
               else f"; learned neighbours for {p.products_learned} products")
    return (f"predictions: OK for {p.customers:,} customers ({p.repeat_buyers:,} repeat "
            f"buyers), predicted revenue {value}{learned} in {p.seconds:.2f}s")


@click.group("clv")
def clv_command() -> None:
    """Predicted customer value: BG/NBD and Gamma-Gamma fitted on a store's orders."""


@clv_command.command("fit")
@store_options
@click.option("--as-of", "as_of", default=None,
              help="Fit on completed orders up to this instant (ISO 8601 with zone; a bare "
                   "date means the end of that day in the store's time zone; default now).")
@click.option("--unit", type=click.Choice(["days", "weeks"]), default="days",
              show_default=True, help="The time unit of t_x, T and the parameter alpha.")
def clv_fit(config_path: str | None, store_id: str | None, as_of: str | None, unit: str,
            as_json: bool) -> None:
    """Fit BG/NBD and Gamma-Gamma on the store's completed orders up to T and print the
    parameters, log-likelihoods, convergence and the independence check.

    One transaction per customer per calendar day (store time zone); x = repeat purchase
    days, t_x = last - first purchase day, T = as-of day - first purchase day; Gamma-Gamma
    on each repeat buyer's mean repeat-day spend (the first day left out). A store with
    too few repeat buyers or too short a history gets "not enough history" (exit 1).
    """
    from stormd.handlers.predictions.store_fit import fit_store

    day = _bare_date(as_of)
    when = None if day else parse_instant(as_of)

    async def fit(job, store):
        from zoneinfo import ZoneInfo

        from stormd.handlers.predictions.store_fit import end_of_day, store_timezone

        async with job.sessionmaker() as session:
            instant = when or job.clock.now()
            if day:
                zone = await store_timezone(session, job.settings, store)
                instant = end_of_day(day, ZoneInfo(zone))
            return await fit_store(session, job.settings, store, instant, unit)

    result = run_on_store(config_path, store_id, fit)
    data = result.to_json()
    if as_json:
        echo_json(data)
    elif result.reason:
        click.echo(f"stormd: store {result.store_id} as of {data['asOfDay']}: {result.reason}",
                   err=True)
    else:
        _show_fit(data)
    if result.reason:
        sys.exit(1)


def _bare_date(value: str | None) -> date | None:
    if value is None or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _show_fit(data: dict) -> None:
    bg, gg = data["bgnbd"], data["gammaGamma"]

    def said(c: dict) -> str:
        state = "converged" if c["converged"] else f"NOT converged ({c['message']})"
        return f"{state}, {c['iterations']} iterations"

    click.echo(f"store {data['store']} as of {data['asOfDay']} ({data['timezone']}), unit "
               f"{data['unit']}: {data['customers']:,} customers, {data['repeatBuyers']:,} "
               f"repeat buyers, {data['historyDays']:,} days of orders")
    click.echo(f"BG/NBD       r {bg['r']:.4f}  alpha {bg['alpha']:.4f}  a {bg['a']:.4f}  "
               f"b {bg['b']:.4f}  log-likelihood {bg['logLikelihood']:,.2f}  "
               f"({said(bg['convergence'])})")
    if gg is None:
        click.echo("Gamma-Gamma  not fitted (fewer than two repeat buyers with a positive spend)")
    else:
        ind = gg["independence"]
        click.echo(f"Gamma-Gamma  p {gg['p']:.4f}  q {gg['q']:.4f}  gamma {gg['gamma']:.4f} on "
                   f"{gg['customers']:,} repeat buyers  log-likelihood "
                   f"{gg['logLikelihood']:,.2f}  ({said(gg['convergence'])})")
        click.echo(f"             mean spend per purchase {gg['meanSpend']:,.2f}; frequency-"
                   f"spend correlation {ind['correlation']:+.3f} (independence "
                   f"{'holds' if ind['holds'] else 'BROKEN'}: |r| <= {ind['limit']})")
    click.echo("warnings: " + ("; ".join(data["warnings"]) or "none"))
