"""Alembic migrations shipped inside the package, configured in code (no alembic.ini).

`alembic_config(url)` is what `stormd db upgrade`, `create_schema` and the autogen command
share. To add a revision after changing models, run (from the repository root):

    python -m stormd.schema.migrations.autogen "what changed"

It writes a new file into schema/migrations/versions; review it and commit it with the
model change.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str, connection=None) -> Config:
    """An Alembic Config for `url`; with `connection` (a sync Connection) env.py uses it
    instead of opening its own, so callers can run migrations inside their own engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.set_main_option(
        "file_template", "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s"
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg
