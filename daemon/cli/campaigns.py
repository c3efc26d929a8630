"""`stormd campaigns …`: the campaign, template and automation services (the very functions
the HTTP API calls), against the configured database. `--json` prints what the API
answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stormd.daemon.cli.common import echo_json, echo_table, store_options
from stormd.daemon.cli.store_scope import every_page, run_service

LIST_COLUMNS = ["id", "name", "status", "channels", "segments", "sendMode", "scheduledAt",
                "audienceSize", "cost"]


@click.group("campaigns")
def command() -> None:
    """Campaigns: create, schedule, preview cost and ROI, send, pause, cancel, results."""


def _call(config_path: str | None, store_id: str | None, work) -> Any:
    """Run `work(call, store)` with the store resolved; a refusal exits 1 with its reason.
    Models come back as the API's JSON."""
    from stormd.handlers.campaigns.campaigns import CampaignError
    from stormd.handlers.outreach.costs import SendRefused
    from stormd.handlers.outreach.templates import TemplateError

    async def go(call, store):
        result = await work(call, store)
        if isinstance(result, list):
            return [r.model_dump(mode="json", by_alias=True) for r in result]
        if hasattr(result, "model_dump"):
            return result.model_dump(mode="json", by_alias=True)
        return result

    return run_service(config_path, store_id, go,
                       errors=(CampaignError, SendRefused, TemplateError, ValueError))


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
    c = reply.get("campaign", reply if "status" in reply else None)
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
    from stormd.handlers.campaigns.service import list_campaigns

    rows = _call(config_path, store_id, lambda call, store: every_page(
        lambda page: list_campaigns(call, store, page, status), "-createdAt"))
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, LIST_COLUMNS)


def _by_id(name: str, action: str, doc: str) -> None:
    """`stormd campaigns NAME CAMPAIGN_ID`: the service's `action`, then the campaign."""

    @command.command(name, help=doc)
    @click.argument("campaign_id")
    @store_options
    def verb(campaign_id, config_path, store_id, as_json) -> None:
        from stormd.handlers.campaigns import service

        reply = _call(config_path, store_id, lambda call, store: getattr(service, action)(
            call, store, campaign_id))
        _show(reply if "campaign" in reply else {"campaign": reply}, as_json)


for _name, _action, _doc in (
    ("show", "get_campaign", "One campaign."),
    ("pause", "pause_campaign", "Stop a scheduled or sending campaign (schedule it again to "
                                "resume)."),
    ("cancel", "cancel_campaign", "Cancel, withdrawing its messages still queued."),
    ("send", "send_campaign", "Fan a scheduled campaign out into the delivery queue now."),
):
    _by_id(_name, _action, _doc)


@command.command("create")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="JSON: {name, channels, segments, template|content|variants, ...}")
@store_options
def create(path, config_path, store_id, as_json) -> None:
    """Create a DRAFT campaign (templates and segments are checked now)."""
    from stormd.handlers.campaigns.service import create_campaign, parse_spec

    spec = _read_json(path, "--file")
    reply = _call(config_path, store_id, lambda call, store: create_campaign(
        call, store, parse_spec(spec)))
    _show({"campaign": reply}, as_json)


@command.command("update")
@click.argument("campaign_id")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False),
              help="JSON: the fields to change.")
@store_options
def update(campaign_id, path, config_path, store_id, as_json) -> None:
    """Change a DRAFT, SCHEDULED or PAUSED campaign."""
    from stormd.handlers.campaigns.service import CampaignChanges, parse_spec, update_campaign

    changes = _read_json(path, "--file")
    reply = _call(config_path, store_id, lambda call, store: update_campaign(
        call, store, campaign_id, parse_spec(changes, CampaignChanges)))
    _show({"campaign": reply}, as_json)


@command.command("schedule")
@click.argument("campaign_id")
@click.option("--mode", "send_mode", type=click.Choice(["now", "at", "best_time", "off_peak", "peak"]),
              default=None, help="When to send (default: the campaign's own send mode).")
@click.option("--at", "at", default=None, help="ISO 8601 time with a zone, for --mode at.")
@click.option("--force", is_flag=True, help="Send even below the minimum ROI or over budget.")
@store_options
def schedule(campaign_id, send_mode, at, force, config_path, store_id, as_json) -> None:
    """Check, price and schedule (refused below the store's minimum ROI or over budget)."""
    from stormd.handlers.campaigns.service import ScheduleRequest, parse_spec, schedule_campaign

    request = {"sendMode": send_mode, "at": at, "force": force}
    reply = _call(config_path, store_id, lambda call, store: schedule_campaign(
        call, store, campaign_id, parse_spec(request, ScheduleRequest)))
    _show(reply, as_json)


@command.command("preview")
@click.argument("campaign_id")
@click.option("--customer", "customer_id", default=None, help="Render for this real customer.")
@click.option("--test-data", "test_data", default=None,
              help="JSON object of variables to render with (default: a test customer).")
@store_options
def preview(campaign_id, customer_id, test_data, config_path, store_id, as_json) -> None:
    """Cost preview (per channel, SMS segments, cost, expected revenue, ROI) and rendering."""
    from stormd.handlers.campaigns.service import PreviewRequest, parse_spec, preview_campaign

    request: dict[str, Any] = {"customerId": customer_id}
    if test_data:
        try:
            request["testData"] = json.loads(test_data)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--test-data") from None
    reply = _call(config_path, store_id, lambda call, store: preview_campaign(
        call, store, campaign_id, parse_spec(request, PreviewRequest)))
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
    from stormd.handlers.campaigns.service import campaign_results

    reply = _call(config_path, store_id, lambda call, store: campaign_results(
        call, store, campaign_id))
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
    from stormd.handlers.automations.service import automation_results as results_of

    reply = _call(config_path, store_id, lambda call, store: results_of(call, store, trigger))
    if as_json:
        echo_json(reply)
    else:
        echo_table([reply], ["trigger", "orders", "revenue", "cost", "net", "roi"])


@command.command("automation-log")
@click.option("--trigger", default=None, help="Only this trigger (win_back, vip, welcome, ...).")
@click.option("--status", default=None, help="Only this status (COMPLETED, SKIPPED, ...).")
@click.option("--customer", "customer_id", default=None, help="Only this customer.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="At most this many.")
@store_options
def automation_log(trigger, status, customer_id, limit, config_path, store_id, as_json) -> None:
    """Recent automation executions, newest first, with why any was skipped."""
    from stormd.handlers.automations.service import execution_log

    async def work(call, store):
        rows = await every_page(lambda page: execution_log(
            call, store, page, trigger=trigger, status=status, customer_id=customer_id),
            "-createdAt") if limit > 200 else (await execution_log(
                call, store, _page(limit, "-createdAt"), trigger=trigger, status=status,
                customer_id=customer_id)).items
        return rows[:limit]

    rows = _call(config_path, store_id, work)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["createdAt", "trigger", "customerId", "subjectId", "status", "step",
                          "error"])


def _page(limit: int, sort: str):
    from stormd.handlers.kernel.paging import PageRequest

    return PageRequest(limit=limit, sort=sort)


@command.command("templates")
@store_options
def templates(config_path, store_id, as_json) -> None:
    """The template library: system (seasonal, promotional, automation) and the store's own."""
    from stormd.handlers.outreach.service import list_templates

    rows = _call(config_path, store_id, lambda call, store: every_page(
        lambda page: list_templates(call, store, page), "slug"))
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
    from stormd.handlers.campaigns.service import parse_spec
    from stormd.handlers.outreach.service import TemplateDefinition
    from stormd.handlers.outreach.service import save_template as save

    data = _read_json(path, "--file")
    slug = str(data.pop("slug", ""))
    if isinstance(data.get("category"), str):
        data["category"] = data["category"].upper()

    async def work(call, store):
        saved, _ = await save(call, store, slug, parse_spec(data, TemplateDefinition))
        return saved

    t = _call(config_path, store_id, work)
    if as_json:
        echo_json(t)
    else:
        click.echo(f"saved {t['slug']}: {', '.join(t['channelMix'])}")
