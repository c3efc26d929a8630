"""`stormd db upgrade` creates the configured database and is safe to repeat."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from stormd.daemon.cli.main import main
from stormd.schema.migrate import head_revisions


def test_db_upgrade_creates_then_leaves_an_up_to_date_database(tmp_path):
    db = tmp_path / "sub" / "stormd.db"
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n')
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert head_revisions()[0] in first.output
    again = runner.invoke(main, ["db", "upgrade", "--config", str(config)])
    assert again.exit_code == 0 and again.output == first.output
    tables = set(inspect(create_engine(f"sqlite:///{db}")).get_table_names())
    assert {"customers", "orders", "messages", "timers", "alembic_version"} <= tables


def test_db_upgrade_with_a_bad_config_key_exits_2(tmp_path):
    config = tmp_path / "stormd.toml"
    config.write_text('[database]\nurll = "x"\n')
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 2
    assert "database.urll" in result.output


def test_db_upgrade_on_an_unreachable_database_exits_1_naming_it(tmp_path):
    config = tmp_path / "stormd.toml"
    config.write_text('[database]\nurl = "postgresql+asyncpg://stormd:hunter2@127.0.0.1:1/none"\n')
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 1
    assert "db upgrade failed on postgresql+asyncpg://stormd:********@127.0.0.1:1/none" \
        in result.output
    assert "hunter2" not in result.output
