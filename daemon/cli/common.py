"""What every `stormd` sub-command shares: --config, --json, --store, and the exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

from stormd.config.errors import ConfigError
from stormd.config.loader import load_settings
from stormd.config.settings import Settings

EXIT_CONFIG = 2

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="stormd.toml to use (else $STORMD_CONFIG, else ./stormd.toml, else defaults).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
store_option = click.option("--store", "store_id", default=None, help="Only this store.")


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --store and --json: what every command reading one store's data takes."""
    return config_option(store_option(json_option(fn)))


def settings_or_exit(config_path: str | None) -> Settings:
    """The effective settings, or one line naming the bad key and exit status 2."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"stormd: config error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def providers_or_exit(settings: Settings) -> None:
    """Exit status 2 with one line when a channel plugin refuses its `[providers.<name>]`
    section or `[channels]` names a provider that does not exist."""
    from stormd.plugins.delivery.manager import load_plugins

    try:
        load_plugins(settings)
    except ConfigError as exc:
        click.echo(f"stormd: config error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def run_async(coro: Coroutine) -> Any:
    return asyncio.run(coro)


def run_command(config_path: str | None, work: Callable[[Settings], Coroutine],
                errors: tuple[type[Exception], ...] = ()) -> Any:
    """Run `work(settings)` to completion: a bad config key exits 2, an error of `errors`
    (a refusal the user can act on) ends with its message and exit status 1."""
    settings = settings_or_exit(config_path)
    try:
        return run_async(work(settings))
    except errors as exc:
        click.echo(f"stormd: {exc}", err=True)
        sys.exit(1)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, ensure_ascii=False, indent=2))


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table for people; --json is the form for programs."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
