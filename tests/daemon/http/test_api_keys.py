"""API keys from `stormd keys` to the HTTP API: shown once and stored hashed, 401 without a
key or with a wrong or revoked one, a store key sees its store alone (another store's path
is the 404 of a store that does not exist), an operator key sees every store."""

from __future__ import annotations

import asyncio
import hashlib
import json

from api_helpers import problem_of
from click.testing import CliRunner
from sqlalchemy import select

from stormd.daemon.cli.main import main
from stormd.schema.runtime.access import ApiKey


async def _cli(config, *args):
    result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--config", str(config)])
    return result


async def test_keys_lifecycle_from_the_command_line(api, tmp_path):
    a = await api()
    config = tmp_path / "stormd.toml"
    config.write_text(f'[database]\nurl = "{a.daemon.settings.database.url}"\n')
    made = await _cli(config, "keys", "create", "--store", "store_1", "--name", "console",
                      "--json")
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["key"].startswith("stormd_") and key["storeId"] == "store_1"
    async with a.daemon.sessionmaker() as s:
        row = (await s.scalars(select(ApiKey))).one()
    assert row.secret_hash == hashlib.sha256(key["key"].split("_", 2)[2].encode()).hexdigest()
    assert key["key"] not in json.dumps([row.id, row.name, row.secret_hash])  # only the hash

    client = a.client(key["key"])
    assert (await client.get("/api/v1/stores/store_1/segments")).status_code == 200
    listed = await _cli(config, "keys", "list", "--json")
    [shown] = json.loads(listed.output)
    assert shown["id"] == key["id"] and "key" not in shown and shown["lastUsedAt"]

    revoked = await _cli(config, "keys", "revoke", key["id"])
    assert revoked.exit_code == 0, revoked.output
    problem_of(await client.get("/api/v1/stores/store_1/segments"), 401)
    again = await _cli(config, "keys", "revoke", key["id"])
    assert again.exit_code == 1 and "already revoked" in again.output
    both = await _cli(config, "keys", "create", "--store", "s", "--operator")
    assert both.exit_code == 2


async def test_missing_wrong_and_foreign_keys(api):
    a = await api()
    mine = await a.key("store_1")
    await a.key("store_2")
    url = "/api/v1/stores/{}/segments"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {mine[:-1]}x"}):
        reply = await a.client(**headers).get(url.format("store_1"))
        assert problem_of(reply, 401) and reply.headers["www-authenticate"].startswith("Bearer")
    client = a.client(mine)
    foreign = problem_of(await client.get(url.format("store_2")), 404)
    missing = problem_of(await client.get(url.format("store_9")), 404)
    assert foreign["detail"].replace("store_2", "X") == missing["detail"].replace("store_9", "X")
    operator = a.client(await a.key(None))
    assert (await operator.get(url.format("store_2"))).status_code == 200
    problem_of(await operator.get(url.format("store_9")), 404)
