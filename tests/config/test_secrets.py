"""Secrets are masked wherever stormd prints or logs them: URLs with a password, a token
or a `?password=`, lists of NATS servers, `env:` values in configuration errors, and the
NATS URL in the daemon's own log lines (at start and while NATS is unreachable)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from click.testing import CliRunner

from stormd.config.secrets import MASK, mask_text, mask_url
from stormd.daemon.bus.broker import connect
from stormd.daemon.bus.nats_server import free_port, start_nats_server, wait_until_listening
from stormd.daemon.cli.main import main


@pytest.mark.parametrize("url, shown", [
    ("nats://u:pw@a:1,nats://u:pw@b:2", f"nats://u:{MASK}@a:1,nats://u:{MASK}@b:2"),
    ("nats://a:1,nats://b:2", "nats://a:1,nats://b:2"),  # two servers, nothing to hide
    ("nats://s3cr3t@h:4222", f"nats://{MASK}@h:4222"),  # a token
    ("tls://user:pw@h:4222", f"tls://user:{MASK}@h:4222"),
    ("postgresql+asyncpg://stormd:pw@db/stormd", f"postgresql+asyncpg://stormd:{MASK}@db/stormd"),
    ("postgresql+asyncpg://stormd@db/stormd?password=pw&sslmode=require",
     f"postgresql+asyncpg://stormd@db/stormd?password={MASK}&sslmode=require"),
    ("https://sms.example.com/send?api_key=k&to=1", f"https://sms.example.com/send?api_key={MASK}&to=1"),
    ("sqlite+aiosqlite:///.stormd/stormd.db", "sqlite+aiosqlite:///.stormd/stormd.db"),
    ("embedded", "embedded"),
])
def test_urls_are_masked(url, shown):
    assert mask_url(url) == shown


def test_urls_in_free_text_are_masked():
    text = "connect to nats://u:hunter2@h:1 failed (tls://tok@h2:2)"
    assert mask_text(text) == f"connect to nats://u:{MASK}@h:1 failed (tls://{MASK}@h2:2)"


def _check(tmp_path, toml: str, env: dict | None = None):
    path = tmp_path / "stormd.toml"
    path.write_text(toml)
    return CliRunner().invoke(main, ["config", "check", "--config", str(path)], env=env)


def test_config_check_masks_a_token_url_and_keeps_two_servers_whole(tmp_path):
    result = _check(tmp_path, '[nats]\nurl = "nats://t0ken-value@a:4222,nats://b:4222"\n')
    assert result.exit_code == 0, result.output
    assert "t0ken-value" not in result.output
    assert f'url = "nats://{MASK}@a:4222,nats://b:4222"' in result.output


def test_config_check_masks_a_database_password_given_as_a_query_parameter(tmp_path):
    result = _check(tmp_path, '[database]\nurl = "postgresql+asyncpg://u@db/s?password=pg-pw-9"\n')
    assert result.exit_code == 0 and "pg-pw-9" not in result.output
    assert f"?password={MASK}" in result.output


@pytest.mark.parametrize("toml, key", [
    ('[nats]\nmax_deliver = "env:BAD_VALUE"\n', "nats.max_deliver"),
    ('[daemon]\ntimezone = "env:BAD_VALUE"\n', "daemon.timezone"),
    ('[providers.sslwireless]\napi_token = "t"\nsid = "s"\nburst = "env:BAD_VALUE"\n',
     "providers.sslwireless"),
])
def test_a_bad_env_value_is_named_by_its_key_never_echoed(tmp_path, toml, key):
    result = _check(tmp_path, toml, env={"BAD_VALUE": "leaky-s3cr3t"})
    assert result.exit_code == 2
    assert key in result.output and "leaky-s3cr3t" not in result.output
    assert len(result.output.strip().splitlines()) == 1


async def test_nats_urls_in_the_log_are_masked_while_unreachable(caplog):
    url = f"nats://stormd:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="stormd.daemon.bus.broker"):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connect([url]), 1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"nats://stormd:{MASK}@127.0.0.1" in line for line in lines), lines
    assert not any("hunter2" in line for line in lines)


async def test_nats_urls_in_the_log_are_masked_when_the_server_goes_away(caplog, tmp_path):
    port = free_port()
    proc, url = start_nats_server(tmp_path / "nats", port=port)
    wait_until_listening(url)
    secret_url = f"nats://tok-s3cr3t@127.0.0.1:{port}"
    try:
        with caplog.at_level(logging.INFO, logger="stormd.daemon.bus.broker"):
            nc = await connect([secret_url])
            proc.terminate()
            proc.wait(10)
            for _ in range(60):  # the reconnect attempts report errors, logged every 10 s
                if any("not reachable" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            await nc.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"nats://{MASK}@127.0.0.1:{port}" in line and "not reachable" in line
               for line in lines), lines
    assert not any("tok-s3cr3t" in line for line in lines)


async def test_the_daemon_start_line_masks_the_nats_url(caplog, settings_factory, sqlite_url,
                                                       nats_server):
    from stormd.daemon.runtime.app import Daemon
    from stormd.handlers.kernel.registry import HandlerRegistry

    secret = nats_server.replace("nats://", "nats://stormd:start-pw@")
    settings = settings_factory(nats={"url": secret}, database={"url": sqlite_url},
                                metrics={"listen": "127.0.0.1:0"}, http={"listen": "127.0.0.1:0"})
    d = Daemon(settings, registry=HandlerRegistry())
    with caplog.at_level(logging.INFO, logger="stormd.daemon.runtime.app"):
        await d.start()
        await d.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert any("stormd running: NATS nats://stormd:********@127.0.0.1" in line
               for line in lines), lines
    assert not any("start-pw" in line for line in lines)
