"""`stormd segments list | show SLUG | members SLUG | create --file F | update --file F |
delete SLUG | preview --criteria JSON`, each with `--store S` and `--json`. A created or
updated segment has its members at once."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from stormd.daemon.cli.common import echo_json, echo_table, store_options
from stormd.daemon.cli.store_scope import run_on_store


@click.group("segments")
def command() -> None:
    """Segment definitions, members and dry runs."""


def _segment_json(segment: Any) -> dict[str, Any]:
    return {"slug": segment.slug, "name": segment.name, "builtin": segment.builtin,
            "members": segment.member_count, "criteria": segment.criteria,
            "refreshedAt": segment.refreshed_at, "status": segment.status,
            "error": segment.error}


def _run(config_path: str | None, store_id: str | None,
         action: Callable[[Any, str], Awaitable[Any]]) -> Any:
    """Open the database, resolve the store, run `action(session, store)`; a bad
    definition or criteria ends with its message and exit status 1."""
    from stormd.handlers.scoring.criteria import CriteriaError
    from stormd.handlers.scoring.segments import SegmentError

    async def work(job, store):
        async with job.sessionmaker() as session:
            result = await action(session, store, job)
            await session.commit()
            return result

    return run_on_store(config_path, store_id, work, (SegmentError, CriteriaError))


@command.command("list")
@store_options
def list_(config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """The store's segments with their member counts."""
    from stormd.handlers.scoring.segments import ensure_builtin_segments, list_segments

    async def action(session, store, job):
        await ensure_builtin_segments(session, store, job.clock.now())
        return [_segment_json(s) for s in await list_segments(session, store)]

    rows = _run(config_path, store_id, action)
    if as_json:
        echo_json(rows)
    else:
        echo_table([{**r, "criteria": json.dumps(r["criteria"])} for r in rows],
                   ["slug", "name", "builtin", "members", "status", "refreshedAt", "criteria"])
        for r in rows:
            if r["status"] == "FAILED":
                click.echo(f"{r['slug']}: FAILED: {r['error']}")


@command.command("show")
@click.argument("slug")
@store_options
def show(slug: str, config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """One segment's definition and size."""
    from stormd.handlers.scoring.segments import get_segment

    async def action(session, store, job):
        return {"store": store, **_segment_json(await get_segment(session, store, slug))}

    data = _run(config_path, store_id, action)
    if as_json:
        echo_json(data)
    else:
        for key, value in data.items():
            shown = json.dumps(value) if key == "criteria" else value
            click.echo(f"{key}: {'-' if shown is None else shown}")


@command.command("members")
@click.argument("slug")
@store_options
def members(slug: str, config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """The customers in a segment (`--json`: objects with customerId)."""
    from stormd.handlers.scoring.segments import get_segment, member_ids

    async def action(session, store, job):
        segment = await get_segment(session, store, slug)
        return await member_ids(session, store, segment.id)

    ids = _run(config_path, store_id, action)
    if as_json:
        echo_json([{"customerId": c} for c in ids])
    else:
        for customer_id in ids:
            click.echo(customer_id)


@command.command("create")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help='JSON file {"slug", "name", "criteria"}.')
@click.option("--template", default=None,
              help="Create one of the ready templates (churn-risk, new-customers, "
                   "high-discount-sensitivity, cross-sell-opportunity).")
@store_options
def create(file: Path | None, template: str | None, config_path: str | None,
           store_id: str | None, as_json: bool) -> None:
    """Save a merchant-defined segment (validated, within the store's quota)."""
    from stormd.handlers.scoring.segments import save_segment, template_definition

    if (file is None) == (template is None):
        raise click.UsageError("give exactly one of --file or --template")
    if file is not None:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            click.echo(f"stormd: {file}: not a JSON segment definition: {exc}", err=True)
            sys.exit(1)
    else:
        data = None

    async def action(session, store, job):
        definition = data if data is not None else template_definition(template)
        segment, _ = await save_segment(job.handler_context(session, store), definition)
        return {"store": store, **_segment_json(segment)}

    created = _run(config_path, store_id, action)
    if as_json:
        echo_json(created)
    else:
        click.echo(f"created segment {created['slug']} in store {created['store']} with "
                   f"{created['members']} members")


def _file(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        click.echo(f"stormd: {file}: not a JSON segment definition: {exc}", err=True)
        sys.exit(1)


@command.command("update")
@click.argument("slug", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help='JSON file {"slug", "name"?, "criteria"?}.')
@store_options
def update(slug: str | None, file: Path, config_path: str | None, store_id: str | None,
           as_json: bool) -> None:
    """Rename a segment or change its criteria (the slug in the file, or given first); its
    members move at once."""
    from stormd.handlers.scoring.segments import update_segment

    data = _file(file)
    slug = slug or (data.get("slug") if isinstance(data, dict) else None)
    if not slug:
        raise click.UsageError("give the segment's slug in the file or as an argument")

    async def action(session, store, job):
        segment, change = await update_segment(job.handler_context(session, store), slug, data)
        return {"store": store, **_segment_json(segment),
                "entered": len(change.entered) if change else 0,
                "exited": len(change.exited) if change else 0}

    updated = _run(config_path, store_id, action)
    if as_json:
        echo_json(updated)
    else:
        click.echo(f"updated segment {slug} in store {updated['store']}: {updated['members']} "
                   f"members ({updated['entered']} entered, {updated['exited']} exited)")


@command.command("delete")
@click.argument("slug")
@store_options
def delete(slug: str, config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """Delete one of the store's own segments and its memberships (refused while a
    campaign or a segment-entry automation uses it)."""
    from stormd.handlers.campaigns.campaigns import segment_users
    from stormd.handlers.scoring.segments import delete_segment

    async def action(session, store, job):
        users = await segment_users(session, store, slug)
        members = await delete_segment(job.handler_context(session, store), slug, users)
        return {"store": store, "slug": slug, "deleted": True, "members": members}

    deleted = _run(config_path, store_id, action)
    if as_json:
        echo_json(deleted)
    else:
        click.echo(f"deleted segment {slug} of store {deleted['store']} "
                   f"({deleted['members']} members)")


@command.command("preview")
@click.option("--criteria", required=True, help="Criteria JSON (docs/scoring.md).")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 1000),
              help="How many matching customer ids to show.")
@store_options
def preview(criteria: str, sample: int, config_path: str | None, store_id: str | None,
            as_json: bool) -> None:
    """Count who matches the criteria now, without saving anything."""
    from stormd.handlers.scoring.segments import preview as preview_segment

    try:
        parsed = json.loads(criteria)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--criteria") from None

    async def action(session, store, job):
        count, ids = await preview_segment(session, store, parsed, job.clock.now(), sample)
        return {"store": store, "count": count, "sample": [{"customerId": c} for c in ids]}

    result = _run(config_path, store_id, action)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['count']} customers match in store {result['store']}")
        for row in result["sample"]:
            click.echo(f"  {row['customerId']}")
