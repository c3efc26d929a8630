"""`stormd campaigns …`: the same operations as the `<prefix>.api.campaigns.*` API (it calls
the very same handlers), against the configured database. `--json` prints the API reply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stormd.daemon.cli.common import echo_json, echo_table, store_options
from stormd.daemon.cli.store_scope import run_on_store

LIST_COLUMNS = ["id", "name", "status", "channels", "segments", "sendMode", "scheduledAt",
                "audienceSize", "cost"]


@click.group("campaigns")
def command() -> None:
    """Campaigns: create, schedule, preview cost and ROI, send, pause, cancel, results."""


def _call(config_path: str | None, store_id: str | None, api: str, request: dict[str, Any]
          ) -> dict[str, Any]:
    """Run the API handler `api` with the store resolved; a refusal exits 1 with its reason."""
    from stormd.handlers.campaigns.service import HANDLERS
    from stormd.handlers.outreach.costs import SendRefused
    from stormd.handlers.outreach.templates import TemplateError

    return run_on_store(config_path, store_id,
                        lambda job, store: HANDLERS[api](job, {"storeId": store, **request}),
                        (ValueError, SendRefused, TemplateError))


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint=what) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: must hold a JSON object", param_hint=what)
    return data


def _show(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(reply)
        return
    c = reply.get("campaign")
    if c:
        echo_table([c], LIST_COLUMNS)
    if "preview" in reply:
        _show_preview(reply["preview"])
    for key in ("withdrawn", "result"):
        if key in reply:
            click.echo(f"{key}: {reply[key]}")


def _show_preview(p: dict[str, Any]) -> None:
    click.echo(f"audience {p['audience']}  holdout {p['holdout']}  capped {p['capped']}  "
               f"deferred {p['deferred']}  reach {p['reach']}")
    echo_table([{"channel": ch, "messages": n, "cost": p["costByChannel"].get(ch)}
                for ch, n in sorted(p["byChannel"].items())], ["channel", "messages", "cost"])
    click.echo(f"sms segments {p['smsSegments']}  cost {p['cost']}  expected revenue "
               f"{p['expectedRevenue']} (AOV {p['averageOrderValue']} x {p['conversionRate']} "
               f"x reach)  expected ROI {p['expectedRoi']}:1 (minimum {p['minRoi']}:1)  "
               f"budget left {p['budgetLeft']}")
    for line in p["alerts"]:
        click.echo(f"alert: {line}")
    for line in p["refusals"]:
        click.echo(f"refused: {line}")


@command.command("list")
@store_options
@click.option("--status", default=None, help="Only campaigns in this status.")
def list_(config_path, store_id, as_json, status) -> None:
    """The store's campaigns, newest first."""
    reply = _call(config_path, store_id, "campaigns.list", {"status": status})
    if as_json:
        echo_json(reply["campaigns"])
    else:
        echo_table(reply["campaigns"], LIST_COLUMNS)


def _by_id(name: str, api: str, doc: str) -> None:
    """`stormd campaigns NAME CAMPAIGN_ID`: send {"id": …} to `api`, show the campaign."""

    @command.command(name, help=doc)
    @click.argument("campaign_id")
    @store_options
    def verb(campaign_id, config_path, store_id, as_json) -> None:
        _show(_call(config_path, store_id, api, {"id": campaign_id}), as_json)


for _name, _api, _doc in (
    ("show", "campaigns.get", "One campaign."),
    ("pause", "campaigns.pause", "Stop a scheduled or sending campaign (schedule it again to "
                                 "resume)."),
    ("cancel", "campaigns.cancel", "Cancel, withdrawing its messages still queued."),
    ("send", "campaigns.send", "Fan a scheduled campaign out into the delivery queue now."),
):
    _by_id(_name, _api, _doc)


@command.command("create")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="JSON: {name, channels, segments, template|content|variants, ...}")
@store_options
def create(path, config_path, store_id, as_json) -> None:
    """Create a DRAFT campaign (templates and segments are checked now)."""
    spec = _read_json(path, "--file")
    _show(_call(config_path, store_id, "campaigns.create", {"campaign": spec}), as_json)


@command.command("update")
@click.argument("campaign_id")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="JSON: the fields to change.")
@store_options
def update(campaign_id, path, config_path, store_id, as_json) -> None:
    """Change a DRAFT, SCHEDULED or PAUSED campaign."""
    changes = _read_json(path, "--file")
    _show(_call(config_path, store_id, "campaigns.update",
                {"id": campaign_id, "changes": changes}), as_json)


@command.command("schedule")
@click.argument("campaign_id")
@click.option("--mode", "send_mode", type=click.Choice(["now", "at", "best_time", "off_peak", "peak"]),
              default=None, help="When to send (default: the campaign's own send mode).")
@click.option("--at", "at", default=None, help="ISO 8601 time with a zone, for --mode at.")
@click.option("--force", is_flag=True, help="Send even below the minimum ROI or over budget.")
@store_options
def schedule(campaign_id, send_mode, at, force, config_path, store_id, as_json) -> None:
    """Check, price and schedule (refused below the store's minimum ROI or over budget)."""
    _show(_call(config_path, store_id, "campaigns.schedule",
                {"id": campaign_id, "sendMode": send_mode, "at": at, "force": force}), as_json)


@command.command("preview")
@click.argument("campaign_id")
@click.option("--customer", "customer_id", default=None, help="Render for this real customer.")
@click.option("--test-data", "test_data", default=None,
              help="JSON object of variables to render with (default: a test customer).")
@store_options
def preview(campaign_id, customer_id, test_data, config_path, store_id, as_json) -> None:
    """Cost preview (per channel, SMS segments, cost, expected revenue, ROI) and rendering."""
    request: dict[str, Any] = {"id": campaign_id, "customerId": customer_id}
    if test_data:
        try:
            request["testData"] = json.loads(test_data)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--test-data") from None
    reply = _call(config_path, store_id, "campaigns.preview", request)
    if as_json:
        echo_json(reply)
        return
    _show_preview(reply["preview"])
    for r in reply["rendered"]:
        head = f"--- {r['channel']}" + (f" ({r['locale']})" if r.get("locale") else "")
        click.echo(head)
        if r.get("subject"):
            click.echo(f"Subject: {r['subject']}")
        click.echo(r["body"])


@command.command("results")
@click.argument("campaign_id")
@store_options
def results(campaign_id, config_path, store_id, as_json) -> None:
    """Attributed orders and revenue, actual cost, ROI, A/B variants, uplift."""
    reply = _call(config_path, store_id, "campaigns.results", {"id": campaign_id})
    if as_json:
        echo_json(reply)
        return
    r = reply["results"]
    click.echo(f"orders {r['orders']}  revenue {r['revenue']}  cost {r['cost']}  "
               f"net {r['net']}  ROI {r['roi']}")
    echo_table(r["variants"], ["variant", "sent", "opened", "clicked", "converted",
                               "conversionRate"])
    if "abTest" in r:
        click.echo(f"A/B: {json.dumps(r['abTest'])}")
    if "uplift" in r:
        click.echo(f"uplift over holdout: {json.dumps(r['uplift'])}")


@command.command("automation-results")
@click.argument("trigger")
@store_options
def automation_results(trigger, config_path, store_id, as_json) -> None:
    """ROI of one automation trigger (win_back, vip, birthday, welcome, post_purchase, …)."""
    reply = _call(config_path, store_id, "automations.results", {"trigger": trigger})
    if as_json:
        echo_json(reply["results"])
    else:
        echo_table([reply["results"]], ["trigger", "orders", "revenue", "cost", "net", "roi"])


@command.command("automation-log")
@click.option("--trigger", default=None, help="Only this trigger (win_back, vip, welcome, ...).")
@click.option("--status", default=None, help="Only this status (COMPLETED, SKIPPED, ...).")
@click.option("--customer", "customer_id", default=None, help="Only this customer.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@store_options
def automation_log(trigger, status, customer_id, limit, config_path, store_id, as_json) -> None:
    """Recent automation executions, newest first, with why any was skipped."""
    rows = _call(config_path, store_id, "automations.log", {
        "trigger": trigger, "status": status, "customerId": customer_id, "limit": limit,
    })["executions"]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["createdAt", "trigger", "customerId", "subjectId", "status", "step",
                          "error"])


@command.command("templates")
@store_options
def templates(config_path, store_id, as_json) -> None:
    """The template library: system (seasonal, promotional, automation) and the store's own."""
    rows = _call(config_path, store_id, "campaigns.templates", {})["templates"]
    if as_json:
        echo_json(rows)
    else:
        echo_table([{**r, "channelMix": ", ".join(r["channelMix"])} for r in rows],
                   ["slug", "name", "category", "system", "recommendedDiscount", "channelMix",
                    "smsMaxSegments", "usageCount"])


@command.command("save-template")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="JSON: {slug, name, content: {channel: {locale: body}, "
                   "sms_max_segments?}, category?, ...}")
@store_options
def save_template(path, config_path, store_id, as_json) -> None:
    """Save one of the store's templates (checked against its trigger's variables and
    rendered with sample data under the limits of a real send first)."""
    reply = _call(config_path, store_id, "templates.save", {"template": _read_json(path, "--file")})
    if as_json:
        echo_json(reply["template"])
    else:
        t = reply["template"]
        click.echo(f"saved {t['slug']}: {', '.join(t['channelMix'])}")
