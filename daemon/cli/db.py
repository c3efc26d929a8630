"""`stormd db upgrade`: apply the shipped schema migrations."""

from __future__ import annotations

import sys

import click

from stormd.config.secrets import mask_text, mask_url
from stormd.daemon.cli.common import config_option, run_async, settings_or_exit


@click.group("db")
def command() -> None:
    """The database schema."""


@command.command("upgrade")
@config_option
@click.option("--revision", default="heads", show_default=True,
              help="Alembic revision to upgrade to.")
def upgrade(config_path: str | None, revision: str) -> None:
    """Create the database or bring it to the latest schema (safe to repeat)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from stormd.schema.migrate import upgrade_database

    settings = settings_or_exit(config_path)
    url = settings.database.url
    try:
        at = run_async(upgrade_database(url, revision))
    except (CommandError, SQLAlchemyError, OSError) as exc:
        click.echo(f"stormd: db upgrade failed on {mask_url(url)}: {mask_text(str(exc))}",
                   err=True)
        sys.exit(1)
    click.echo(f"{mask_url(url)}: at revision {', '.join(at) or '(empty)'}")
