"""`stormd config check`: one line naming the bad key and exit 2; lookup order; env
overrides; secrets masked (docs/configuration.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from stormd.config.durations import parse_duration
from stormd.daemon.cli.main import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No stormd variables or ./stormd.toml from the developer's shell leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("STORMD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def check(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["config", "check", *args], env=env)


def effective(*args: str, env: dict | None = None) -> dict:
    result = check("--json", *args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("toml, line", [
    ('[carts]\nabandon_afterr = "1h"\n', "carts.abandon_afterr: unknown key"),
    ('[cartz]\nabandon_after = "1h"\n', "cartz: unknown key"),
    ('[carts]\nabandon_after = "1 hour"\n', 'carts.abandon_after: "1 hour" is not a duration'),
    ('[carts]\nmin_value = "lots"\n', "carts.min_value: "),
    ('[rfm]\nwindow_days = "half a year"\n', "rfm.window_days: "),
    ('[rfm]\nschedule = "every night"\n', 'rfm.schedule: "every night" is not a cron schedule'),
    ('[daemon]\ntimezone = "Mars/Olympus"\n', 'daemon.timezone: "Mars/Olympus" is not a time zone'),
    ('[carts]\nsteps = [{ after = "0s", channel = "fax", template = "t" }]\n',
     "carts.steps[0].channel: "),
    ('[carts]\nsteps = [{ after = "soon", channel = "sms", template = "t" }]\n',
     'carts.steps[0].after: "soon" is not a duration'),
    ('[rfm.weights]\nq = 1\n', "rfm.weights.q: unknown key"),
    ("[carts\n", "not valid TOML"),
])
def test_bad_configuration_is_one_line_naming_the_key_and_exit_2(tmp_path, toml, line):
    result = check("--config", write(tmp_path / "bad.toml", toml))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert line in lines[0]


def test_bad_value_from_the_environment_names_the_key(tmp_path):
    result = check(env={"STORMD_CARTS__ABANDON_AFTER": "1 hour"})
    assert result.exit_code == 2
    assert 'carts.abandon_after: "1 hour" is not a duration' in result.output


def test_missing_config_file_is_named(tmp_path):
    result = check("--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "nope.toml does not exist" in result.output
    result = check(env={"STORMD_CONFIG": str(tmp_path / "gone.toml")})
    assert result.exit_code == 2 and "STORMD_CONFIG" in result.output


def test_lookup_order_option_then_env_then_local_file_then_defaults(tmp_path):
    assert effective()["nats"]["subject_prefix"] == "stormcom"  # defaults
    write(tmp_path / "stormd.toml", '[nats]\nsubject_prefix = "local"\n')
    assert effective()["nats"]["subject_prefix"] == "local"
    env_file = write(tmp_path / "env.toml", '[nats]\nsubject_prefix = "from_env"\n')
    assert effective(env={"STORMD_CONFIG": env_file})["nats"]["subject_prefix"] == "from_env"
    option = write(tmp_path / "option.toml", '[nats]\nsubject_prefix = "option"\n')
    got = effective("--config", option, env={"STORMD_CONFIG": env_file})
    assert got["nats"]["subject_prefix"] == "option"


def test_environment_overrides_any_key_with_typed_values(tmp_path):
    config = write(tmp_path / "stormd.toml", '[carts]\nmin_value = 300\n')
    got = effective("--config", config, env={
        "STORMD_NATS__URL": "nats://h1:4222,nats://h2:4222",
        "STORMD_CARTS__MIN_VALUE": "700",
        "STORMD_RFM__WEIGHTS__R": "5",
        "STORMD_CHANNELS__SMS": '["outbox"]',
        "STORMD_LIMITS__OFFER_COOLDOWN": "7d",
    })
    assert got["nats"]["url"] == "nats://h1:4222,nats://h2:4222"
    assert got["carts"]["min_value"] == "700"
    assert got["rfm"]["weights"]["r"] == 5
    assert got["channels"]["sms"] == ["outbox"]
    assert got["limits"]["offer_cooldown"] == "7d"


def test_defaults_match_the_contract():
    got = effective()
    assert got["daemon"]["data_dir"] == ".stormd" and got["daemon"]["timezone"] == "Asia/Dhaka"
    assert got["nats"]["url"] == "embedded"
    assert got["database"]["url"] == "sqlite+aiosqlite:///.stormd/stormd.db"
    assert got["metrics"]["listen"] == "127.0.0.1:9464"
    assert got["http"]["listen"] == "127.0.0.1:8080"
    assert got["carts"]["abandon_after"] == "1h" and got["carts"]["attribution_window"] == "7d"
    steps = got["carts"]["steps"]
    assert [parse_duration(s["after"]) for s in steps] == [
        timedelta(0), timedelta(hours=24), timedelta(days=3)]
    assert [(s["channel"], s["template"]) for s in steps] == [
        ("whatsapp", "cart_reminder_1"), ("email", "cart_reminder_2"), ("sms", "cart_reminder_3")]
    assert got["rfm"]["schedule"] == "0 2 * * *" and got["rfm"]["window_days"] == 180
    assert got["rfm"]["weights"] == {"r": 4, "f": 3, "m": 3}
    assert got["limits"]["max_messages_per_customer_per_day"] == 2
    assert parse_duration(got["limits"]["same_trigger_cooldown"]) == timedelta(hours=24)
    assert got["limits"]["offer_cooldown"] == "14d"
    assert got["channels"] == {"email": "outbox", "sms": "outbox", "whatsapp": "outbox",
                               "push": "outbox"}


def test_shipped_stormd_toml_is_valid_and_the_text_output_is_toml(tmp_path):
    from pathlib import Path

    import stormd.config

    shipped = Path(stormd.config.__file__).resolve().parents[1] / "stormd.toml"
    result = check("--config", str(shipped))
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("# configuration OK")


def test_secrets_given_as_env_references_are_masked(tmp_path):
    config = write(tmp_path / "stormd.toml", (
        '[database]\nurl = "postgresql+asyncpg://stormd:pg-pass-123@db/stormd"\n'
        '[providers.sslwireless]\napi_token = "env:SSL_TOKEN"\n'
        'sender_id = "env:SSL_SENDER"\nbase_url = "https://sms.example.com"\n'
    ))
    env = {"SSL_TOKEN": "tok-very-secret", "SSL_SENDER": "sender-from-env"}
    for args in ((), ("--json",)):
        result = check("--config", config, *args, env=env)
        assert result.exit_code == 0, result.output
        for secret in ("tok-very-secret", "sender-from-env", "pg-pass-123"):
            assert secret not in result.output
        assert "https://sms.example.com" in result.output and "********" in result.output


def test_missing_secret_variable_names_the_key(tmp_path):
    config = write(tmp_path / "stormd.toml",
                   '[providers.sslwireless]\napi_token = "env:SSL_TOKEN_UNSET"\n')
    result = check("--config", config)
    assert result.exit_code == 2
    assert "providers.sslwireless.api_token: environment variable SSL_TOKEN_UNSET is not set" \
        in result.output


def test_unknown_key_from_the_environment_is_refused():
    result = check(env={"STORMD_CARTS__ABANDON_AFTR": "2h"})
    assert result.exit_code == 2 and "carts.abandon_aftr: unknown key" in result.output


def test_console_script_exits_2_with_one_line_on_stderr(tmp_path):
    import subprocess

    config = write(tmp_path / "bad.toml", '[carts]\nabandon_after = "1 hour"\n')
    proc = subprocess.run(["stormd", "config", "check", "--config", config],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        'stormd: config error: carts.abandon_after: "1 hour" is not a duration']
