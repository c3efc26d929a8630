"""Plugin discovery through the `stormd.channels` entry points, broken plugins reported by
name, a misspelled hook refusing start-up, the loaded plugins and their versions in the
start-up log, the README's example plugin run end to end, and secrets kept out of output."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from stormd.config.errors import ConfigError
from stormd.daemon import __version__ as STORMD_VERSION
from stormd.daemon.cli.main import main
from stormd.daemon.http.app import build_app
from stormd.daemon.http.server import AppServer
from stormd.plugins.delivery.manager import ChannelPlugins, load_plugins

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"


def install_distribution(project: Path, site: Path) -> None:
    """Install a plugin project the way pip lays it out: its package plus a `.dist-info`
    with METADATA and the entry points declared in its pyproject.toml."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    for package in project.iterdir():
        if (package / "__init__.py").exists():
            shutil.copytree(package, site / package.name)
    dist_name = meta["name"].replace("-", "_")
    info = site / f"{dist_name}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, entries in meta.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def install_plugins(site: Path, monkeypatch, *projects: str) -> None:
    site.mkdir(exist_ok=True)
    for project in projects:
        install_distribution(HERE / project, site)
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """The example and the broken plugin installed into a site directory on sys.path."""
    site = tmp_path / "site-packages"
    install_plugins(site, monkeypatch, "example_plugin", "broken_plugin")
    yield site
    for name in ("stormd_pigeon", "stormd_broken"):
        sys.modules.pop(name, None)


@pytest.fixture
def installed_typo(tmp_path, monkeypatch):
    """The example plugin and one whose send hook is misspelled (`stormd_sned`)."""
    site = tmp_path / "site-packages"
    install_plugins(site, monkeypatch, "example_plugin", "typo_plugin")
    yield site
    for name in ("stormd_pigeon", "stormd_kite"):
        sys.modules.pop(name, None)


def test_plugins_are_discovered_through_entry_points_and_broken_ones_reported(
        installed_plugins, caplog):
    with caplog.at_level(logging.ERROR, logger="stormd.plugins"):
        plugins = ChannelPlugins()
    assert plugins.providers["pigeon"].info.channels == ("sms",)
    assert {"outbox", "resend", "smtp", "sslwireless", "banglalink", "robi", "meta",
            "fcm"} <= set(plugins.providers)
    assert "libpigeon.so" in plugins.broken["broken"]
    assert "channel plugin broken is broken" in caplog.text


def test_a_channel_naming_a_broken_plugin_still_starts_with_the_others(
        installed_plugins, settings_factory):
    settings = settings_factory(channels={"sms": ["broken", "outbox"]})
    plugins = load_plugins(settings)
    assert [p.name for p in plugins.for_channel(settings, "sms")] == ["outbox"]


def test_unknown_provider_and_bad_provider_config_name_the_key(settings_factory):
    with pytest.raises(ConfigError) as err:
        load_plugins(settings_factory(channels={"sms": ["sslwireless", "nosuch"]},
                                      providers={"sslwireless": {"api_token": "t"}}))
    assert str(err.value).startswith("channels.sms")
    with pytest.raises(ConfigError) as err:
        load_plugins(settings_factory(channels={"email": "resend"},
                                      providers={"resend": {"api_key": "k"}}))
    assert "providers.resend.from_address" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_plugins(settings_factory(channels={"email": "resend"}, providers={"resend": {
            "api_key": "k", "from_address": "a@b.c", "colour": "red"}}))
    assert "providers.resend.colour" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_plugins(settings_factory(channels={"email": "sslwireless"}))
    assert "does not deliver email" in str(err.value)


TYPO_LINE = ("stormd: config error: channel plugin kite (stormd-kite 0.3.0): stormd_sned is "
             "not a stormd hook (did you mean stormd_send?); it would never be called")


def test_a_misspelled_hook_stops_stormd_run_naming_the_plugin_and_the_hook(
        installed_typo, tmp_path):
    config = tmp_path / "stormd.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
                      '[channels]\nsms = "pigeon"\n[providers.pigeon]\napi_key = "k"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(installed_typo), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # A real process: if the plugin were accepted, `stormd run` would start the daemon.
    result = subprocess.run(
        [sys.executable, "-c", "from stormd.daemon.cli.main import main; main()",
         "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [TYPO_LINE]
    assert not (tmp_path / "data").exists()  # refused before anything was started


def test_the_plugin_manager_refuses_a_misspelled_hook_whatever_it_is_asked(installed_typo):
    with pytest.raises(ConfigError) as err:
        ChannelPlugins()
    assert f"stormd: config error: {err.value}" == TYPO_LINE
    assert ChannelPlugins(load_entry_points=False).providers  # built-ins alone are fine


async def test_the_start_up_log_lists_the_loaded_plugins_with_their_versions(
        installed_plugins, settings_factory, pipelines, caplog):
    settings = settings_factory(channels={"sms": "pigeon"},
                                providers={"pigeon": {"api_key": "pk_live"}})
    pipeline = pipelines(settings)
    with caplog.at_level(logging.INFO, logger="stormd"):
        await pipeline.start()
    [record] = [r for r in caplog.records if "channel plugins loaded" in r.getMessage()]
    line = record.getMessage()
    assert record.levelno == logging.INFO
    for builtin in ("outbox", "resend", "smtp", "sslwireless", "banglalink", "robi", "meta",
                    "fcm"):
        assert f"{builtin} {STORMD_VERSION}," in line
    assert line.endswith("pigeon 1.2.0 (stormd-pigeon)")  # its distribution's version
    assert "broken" not in line  # refused plugins are reported on their own, as errors


def test_readme_shows_the_example_plugin_that_the_tests_run():
    readme = README.read_text()
    source = (HERE / "example_plugin" / "stormd_pigeon" / "__init__.py").read_text()
    pyproject = (HERE / "example_plugin" / "pyproject.toml").read_text()
    assert source.strip() in readme
    assert '[project.entry-points."stormd.channels"]\npigeon = "stormd_pigeon"' in readme
    assert 'pigeon = "stormd_pigeon"' in pyproject


async def _ready() -> dict:
    return {"ok": True}


async def test_example_plugin_delivers_and_reads_its_webhooks(
        installed_plugins, settings_factory, fake_provider, queue, messages, pipelines,
        sessionmaker):
    pigeon = await fake_provider()
    pigeon.reply(200, {"id": "pg-1"})
    settings = settings_factory(channels={"sms": "pigeon"}, providers={"pigeon": {
        "api_key": "pk_live", "base_url": pigeon.url}})
    pipeline = pipelines(settings)
    key = await queue(channel="sms", body="Hi")
    await pipeline.run_once()
    assert pigeon.json() == {"to": "+8801711000001", "text": "Hi", "ref": key}
    [m] = await messages()
    assert (m.status, m.provider, m.external_id, str(m.cost)) == ("sent", "pigeon", "pg-1",
                                                                  "0.25")
    server = AppServer(build_app(None, pipeline, _ready), "127.0.0.1:0", "http")
    await server.start()  # the daemon's own HTTP app, as `stormd run` serves it
    host, port = server.address
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            body = json.dumps({"event_id": "e1", "id": "pg-1", "status": "delivered"}).encode()
            sig = hmac.new(b"pk_live", body, hashlib.sha256).hexdigest()
            bad = await client.post("/webhooks/pigeon", content=body,
                                    headers={"X-Pigeon-Signature": "0" * 64})
            assert bad.status_code == 401
            ok = await client.post("/webhooks/pigeon", content=body,
                                   headers={"X-Pigeon-Signature": sig})
            assert ok.status_code == 200
    finally:
        await server.stop()
    [m] = await messages()
    assert m.status == "delivered"


async def test_provider_secrets_never_reach_logs_or_config_check(
        settings_factory, fake_provider, queue, pipelines, caplog, tmp_path, monkeypatch):
    secret = "re_live_5up3rs3cr3t"
    resend = await fake_provider()
    resend.reply(401, {"statusCode": 401, "name": "missing_api_key",
                       "message": "Missing API key in the authorization header"})
    monkeypatch.setenv("RESEND_KEY", secret)
    settings = settings_factory(channels={"email": "resend"}, providers={"resend": {
        "api_key": "env:RESEND_KEY", "from_address": "s@example.com",
        "base_url": resend.url}})
    pipeline = pipelines(settings)
    assert pipeline.settings.providers["resend"]["api_key"] == secret
    await queue(channel="email", to_address="x@example.com", marketing=False)
    with caplog.at_level(logging.DEBUG):
        await pipeline.run_once()
        logging.getLogger("stormd.test").info("config %r", pipeline.plugins.providers[
            "resend"].config)
    assert resend.requests[0][1]["Authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text

    config = tmp_path / "stormd.toml"
    config.write_text('[channels]\nemail = "resend"\n[providers.resend]\n'
                      'api_key = "env:RESEND_KEY"\nfrom_address = "s@example.com"\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert secret not in result.output and "********" in result.output


def test_config_check_refuses_a_bad_provider_section_naming_the_key(tmp_path):
    config = tmp_path / "stormd.toml"
    config.write_text('[channels]\nsms = ["sslwireless", "banglalink"]\n'
                      '[providers.sslwireless]\napi_token = "t"\nrate_per_segment = "cheap"\n'
                      '[providers.banglalink]\nuser_id = "u"\npassword = "p"\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 2
    assert "providers.sslwireless.rate_per_segment" in result.output
