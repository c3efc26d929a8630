"""`stormd segments list | show SLUG | members SLUG | create --file F | update --file F
| delete SLUG | preview --criteria JSON`, each with `--store S` and `--json`: the segment
service (handlers/scoring/service.py), as the HTTP API calls it. A created or updated
segment has its members at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from stormd.daemon.cli.common import echo_json, echo_table, store_options
from stormd.daemon.cli.store_scope import every_page, run_service


@click.group("segments")
def command() -> None:
    """Segment definitions, members and dry runs."""


def _shown(segment: Any, store: str | None = None) -> dict[str, Any]:
    data = segment.model_dump(mode="json", by_alias=True)
    return {**({"store": store} if store else {}), **data}


def _json_file(path: Path) -> Any:
    """A JSON file's content; a file that is not JSON ends with its reason and exit 1."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        click.echo(f"stormd: {path}: not a JSON segment definition: {exc}", err=True)
        sys.exit(1)


def _parsed(data: Any, path: Path, model: Any) -> Any:
    """`data` validated as `model`; invalid data ends with the first reason and exit 1."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "definition"
        click.echo(f"stormd: {path}: {where}: {first['msg']}", err=True)
        sys.exit(1)


def _read(path: Path, model: Any) -> Any:
    """A JSON file validated as `model`; a bad file ends with its reason and exit 1."""
    return _parsed(_json_file(path), path, model)


@command.command("list")
@store_options
def list_(config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """The store's segments with their member counts."""
    from stormd.handlers.scoring.service import list_segments

    rows = run_service(config_path, store_id, lambda call, store: every_page(
        lambda page: list_segments(call, store, page), "id"))
    data = [_shown(s) for s in rows]
    if as_json:
        echo_json(data)
    else:
        echo_table([{**r, "criteria": json.dumps(r["criteria"])} for r in data],
                   ["slug", "name", "builtin", "members", "status", "refreshedAt", "criteria"])
        for r in data:
            if r.get("status") == "FAILED":
                click.echo(f"{r['slug']}: FAILED: {r.get('error')}")


@command.command("show")
@click.argument("slug")
@store_options
def show(slug: str, config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """One segment's definition and size."""
    from stormd.handlers.scoring.service import get_segment

    async def work(call, store):
        return _shown(await get_segment(call, store, slug), store)

    data = run_service(config_path, store_id, work)
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
    from stormd.handlers.scoring.service import segment_members

    rows = run_service(config_path, store_id, lambda call, store: every_page(
        lambda page: segment_members(call, store, slug, page), "customerId"))
    if as_json:
        echo_json([{"customerId": m.customer_id} for m in rows])
    else:
        for m in rows:
            click.echo(m.customer_id)


@command.command("create")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help='JSON file {"slug", "name", "criteria"}.')
@click.option("--template", default=None,
              help="Create one of the ready templates (churn-risk, new-customers, "
                   "high-discount-sensitivity, cross-sell-opportunity).")
@store_options
def create(file: Path | None, template: str | None, config_path: str | None,
           store_id: str | None, as_json: bool) -> None:
    """Save a merchant-defined segment (validated, within the store's quota); its members
    are found at once."""
    from stormd.handlers.scoring.service import (
        SegmentDefinition,
        create_segment,
        template_definition,
    )

    if (file is None) == (template is None):
        raise click.UsageError("give exactly one of --file or --template")
    definition = _read(file, SegmentDefinition) if file is not None else None

    async def work(call, store):
        made = definition or template_definition(template)
        return _shown(await create_segment(call, store, made), store)

    created = run_service(config_path, store_id, work)
    if as_json:
        echo_json(created)
    else:
        click.echo(f"created segment {created['slug']} in store {created['store']} "
                   f"with {created['members']} members")


@command.command("update")
@click.argument("slug", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help='JSON file {"slug", "name"?, "criteria"?}.')
@store_options
def update(slug: str | None, file: Path, config_path: str | None, store_id: str | None,
           as_json: bool) -> None:
    """Rename a segment or change its criteria (the slug in the file, or given first); its
    members move at once."""
    from stormd.handlers.scoring.service import SegmentChanges, update_segment

    data = _json_file(file)
    named = data.pop("slug", None) if isinstance(data, dict) else None
    if slug and named and named != slug:
        raise click.UsageError(f"the file names segment {named!r}, not {slug!r}")
    slug = slug or named
    if not slug:
        raise click.UsageError("give the segment's slug in the file or as an argument")
    changes = _parsed(data, file, SegmentChanges)

    async def work(call, store):
        return _shown(await update_segment(call, store, slug, changes), store)

    updated = run_service(config_path, store_id, work)
    if as_json:
        echo_json(updated)
    else:
        click.echo(f"updated segment {slug} in store {updated['store']}: "
                   f"{updated['members']} members")


@command.command("delete")
@click.argument("slug")
@store_options
def delete(slug: str, config_path: str | None, store_id: str | None, as_json: bool) -> None:
    """Delete one of the store's own segments and its memberships."""
    from stormd.handlers.scoring.service import delete_segment

    async def work(call, store):
        await delete_segment(call, store, slug)
        return store

    store = run_service(config_path, store_id, work)
    if as_json:
        echo_json({"store": store, "slug": slug, "deleted": True})
    else:
        click.echo(f"deleted segment {slug} of store {store}")


@command.command("preview")
@click.option("--criteria", required=True, help="Criteria JSON (docs/scoring.md).")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 100),
              help="How many matching customer ids to show.")
@store_options
def preview(criteria: str, sample: int, config_path: str | None, store_id: str | None,
            as_json: bool) -> None:
    """Count who matches the criteria now, without saving anything."""
    from stormd.handlers.scoring.service import PreviewRequest, preview_segment

    try:
        parsed = json.loads(criteria)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--criteria") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("criteria are a JSON object", param_hint="--criteria")

    async def work(call, store):
        result = await preview_segment(call, store, PreviewRequest(criteria=parsed,
                                                                   sample=sample))
        return {"store": store, "count": result.count,
                "sample": [{"customerId": m.customer_id} for m in result.sample]}

    result = run_service(config_path, store_id, work)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{result['count']} customers match in store {result['store']}")
        for row in result["sample"]:
            click.echo(f"  {row['customerId']}")
