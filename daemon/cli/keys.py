"""`stormd keys create --store S [--name N]` · `keys create --operator` · `keys list` ·
`keys revoke ID`: the HTTP API's keys (docs/http-api.md). A key is printed once, when
created; only its hash is kept."""

from __future__ import annotations

import click

from stormd.daemon.cli.common import config_option, echo_json, echo_table, json_option
from stormd.daemon.cli.store_scope import run_service


@click.group("keys")
def command() -> None:
    """API keys for the HTTP API: create, list, revoke."""


@command.command("create")
@click.option("--store", "store_id", default=None, help="The store the key acts on.")
@click.option("--operator", is_flag=True, help="A key acting on every store.")
@click.option("--name", default=None, help="What the key is for (e.g. console, storefront).")
@config_option
@json_option
def create(store_id: str | None, operator: bool, name: str | None, config_path: str | None,
           as_json: bool) -> None:
    """Make a key and print it once (only its hash is kept)."""
    from stormd.handlers.access.keys import create_key

    if operator == (store_id is not None):
        raise click.UsageError("give exactly one of --store S or --operator")
    made = run_service(config_path, store_id,
                       lambda call, store: create_key(call, store, name), any_store=True)
    if as_json:
        echo_json(made.model_dump(mode="json", by_alias=True))
        return
    scope = f"store {made.store_id}" if made.store_id else "every store (operator)"
    click.echo(f"key {made.id} ({made.name}) for {scope}:\n\n  {made.key}\n\n"
               "Keep it now: it is not shown again. Use it as `Authorization: Bearer <key>`.")


@command.command("list")
@config_option
@json_option
def list_(config_path: str | None, as_json: bool) -> None:
    """Every key: id, store (none: operator), name, created, revoked, last used."""
    from stormd.handlers.access.keys import list_keys

    rows = run_service(config_path, None, lambda call, _: list_keys(call), any_store=True)
    data = [k.model_dump(mode="json", by_alias=True) for k in rows]
    if as_json:
        echo_json(data)
    else:
        echo_table([{**d, "storeId": d["storeId"] or "(operator)"} for d in data],
                   ["id", "storeId", "name", "createdAt", "revokedAt", "lastUsedAt"])


@command.command("revoke")
@click.argument("key_id")
@config_option
@json_option
def revoke(key_id: str, config_path: str | None, as_json: bool) -> None:
    """Revoke a key: its next request gets 401."""
    from stormd.handlers.access.keys import revoke_key

    info = run_service(config_path, None, lambda call, _: revoke_key(call, key_id),
                       any_store=True)
    if as_json:
        echo_json(info.model_dump(mode="json", by_alias=True))
    else:
        click.echo(f"revoked key {info.id} ({info.name})")
