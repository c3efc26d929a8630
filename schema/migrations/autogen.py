"""Write a new migration from the difference between the models and the latest revision.

    python -m stormd.schema.migrations.autogen "add carts.channel"

Migrates a throw-away SQLite database to the current heads, lets Alembic compare it with the
models, and writes the revision into schema/migrations/versions. If two revisions were
added side by side (two heads), a merge revision is written first.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command

from stormd.schema.db.engine import make_engine
from stormd.schema.migrate import head_revisions, schema_drift, upgrade_database
from stormd.schema.migrations import alembic_config


async def _in_connection(url: str, action) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: action(alembic_config(url, c)))
    finally:
        await engine.dispose()


async def autogenerate(message: str, workdir: Path) -> str | None:
    """The path of the revision written, or None when the models match the migrations."""
    url = f"sqlite+aiosqlite:///{workdir / 'autogen.db'}"
    if len(head_revisions()) > 1:
        await _in_connection(url, lambda cfg: command.merge(cfg, "heads", message="merge heads"))
    await upgrade_database(url)
    if not await schema_drift(url):
        return None
    written: list[str] = []

    def revise(cfg) -> None:
        script = command.revision(cfg, message=message, autogenerate=True)
        written.append(script.path)

    await _in_connection(url, revise)
    return written[0]


def main(argv: list[str]) -> int:
    message = " ".join(argv).strip()
    if not message:
        print('usage: python -m stormd.schema.migrations.autogen "what changed"', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = asyncio.run(autogenerate(message, Path(tmp)))
    if path is None:
        print("the models match the migrations: no revision written")
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
