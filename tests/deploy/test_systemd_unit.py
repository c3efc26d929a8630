"""deploy/stormd.service: sandboxed to an exposure of at most 4.5 in `systemd-analyze security`
(systemd's own 0-10 rating of a unit's sandbox; Debian's prometheus unit gets 4.0), free of
errors for `systemd-analyze verify`, and started with an environment that the daemon reads
as intended.

`systemd-analyze security --offline=true` and `verify` read unit files without a running
systemd (systemd-analyze(1)); the tests skip where systemd-analyze is not installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_tools import DEPLOY, REPO

UNIT = DEPLOY / "stormd.service"


def unit_settings(text: str) -> dict[str, list[str]]:
    """Each `Key=value` of a unit file, in order, every occurrence kept."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(duration: str) -> float:
    """"30s", "2m", "45" (systemd and stormd durations alike, the forms used here)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|min)?", duration).groups()
    return float(number) * {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[unit]


def test_security_exposure_is_at_most_4_5(systemd_analyze, tmp_path):
    run = subprocess.run([systemd_analyze, "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for stormd\.service: (\d+\.\d+)", run.stdout)
    assert match, run.stdout + run.stderr
    assert float(match.group(1)) <= 4.5, run.stdout

    # The same measure rates an unsandboxed unit as exposed, so the figure above means something.
    bare = tmp_path / "stormd.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/opt/stormd/bin/stormd run\n")
    run = subprocess.run([systemd_analyze, "security", "--offline=true", str(bare)],
                         capture_output=True, text=True, timeout=60)
    assert float(re.search(r"stormd\.service: (\d+\.\d+)", run.stdout).group(1)) > 9


def verify(systemd_analyze: str, unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


def test_verify_finds_nothing_to_report(systemd_analyze, tmp_path):
    """verify insists that ExecStart's program exists: the copy points at this machine's
    stormd (or this Python), the rest of the unit is as shipped."""
    program = shutil.which("stormd") or sys.executable
    text = UNIT.read_text()
    assert "ExecStart=/opt/stormd/bin/stormd " in text
    copy = tmp_path / "stormd.service"
    copy.write_text(text.replace("ExecStart=/opt/stormd/bin/stormd ", f"ExecStart={program} "))
    run = verify(systemd_analyze, copy)
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr

    # A misspelt setting is reported, so an empty report above is a clean bill.
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes"))
    run = verify(systemd_analyze, copy)
    assert "ProtectHomes" in run.stdout + run.stderr


def test_verify_reports_the_missing_program_of_the_shipped_unit(systemd_analyze):
    """The shipped unit runs stormd from its venv at /opt/stormd (docs/operations.md), not
    from wherever pip put a console script on the build machine."""
    if os.path.exists("/opt/stormd/bin/stormd"):
        pytest.skip("stormd is installed at /opt/stormd on this machine")
    run = verify(systemd_analyze, UNIT)
    assert "/opt/stormd/bin/stormd" in run.stdout + run.stderr


def test_stop_timeout_and_watchdog_fit_the_daemon():
    """systemd must not kill a daemon that is still draining within daemon.shutdown_grace,
    and the watchdog interval must be there for the daemon to ping at half of it."""
    settings = unit_settings(UNIT.read_text())
    config = tomllib.loads((REPO / "stormd.toml").read_text())
    grace = seconds(config["daemon"]["shutdown_grace"])
    assert seconds(settings["TimeoutStopSec"][-1]) >= grace + 10
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert seconds(settings["WatchdogSec"][-1]) >= 10
    assert settings["KillMode"] == ["mixed"]  # SIGTERM to stormd alone: it stops nats-server
    assert settings["User"][-1] not in ("", "root", "0")


def unit_environment() -> dict[str, str]:
    env = {}
    for assignment in unit_settings(UNIT.read_text()).get("Environment", []):
        for word in assignment.split():
            name, _, value = word.strip('"').partition("=")
            env[name] = value
    return env


def env_file_examples() -> dict[str, str]:
    """The STORMD_* overrides deploy/stormd.env.example shows (commented out)."""
    examples = {}
    for line in (DEPLOY / "stormd.env.example").read_text().splitlines():
        match = re.fullmatch(r"#?(STORMD_[A-Z0-9_]+)=(.*)", line.strip())
        if match:
            examples[match.group(1)] = match.group(2)
    return examples


def config_check(env: dict[str, str], cwd: Path) -> dict:
    stormd = shutil.which("stormd")
    if stormd is None:
        pytest.skip("the stormd console script is not installed (pip install -e .)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STORMD_")}
    run = subprocess.run([stormd, "config", "check", "--config", str(REPO / "stormd.toml"),
                          "--json"], env={**clean, **env}, cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def test_the_units_environment_moves_state_to_var_lib(tmp_path):
    """The unit's Environment= lines are settings the daemon knows, with the effect meant:
    data under the StateDirectory, the SQLite database inside it."""
    env = unit_environment()
    assert set(env) == {"STORMD_DAEMON__DATA_DIR", "STORMD_DATABASE__URL"}
    effective = config_check(env, tmp_path)
    assert effective["daemon"]["data_dir"] == "/var/lib/stormd"
    assert effective["database"]["url"] == "sqlite+aiosqlite:////var/lib/stormd/stormd.db"
    assert unit_settings(UNIT.read_text())["StateDirectory"] == ["stormd"]


def test_env_file_example_overrides_are_settings_the_daemon_takes(tmp_path):
    """Each STORMD_* line of the example, uncommented, is accepted and wins over the unit's
    value (EnvironmentFile= is read after Environment=)."""
    examples = env_file_examples()
    assert "STORMD_DATABASE__URL" in examples and "STORMD_NATS__URL" in examples
    effective = config_check({**unit_environment(), **examples}, tmp_path)
    assert effective["database"]["url"].startswith("postgresql+asyncpg://stormd:")
    assert effective["nats"]["url"] == examples["STORMD_NATS__URL"]
    assert "CHANGE_ME" not in json.dumps(effective)  # the password is masked when printed


def test_env_file_example_is_comments_and_assignments_only():
    """systemd's EnvironmentFile= syntax: comments and VAR=value lines; the example sets
    nothing until the operator uncomments it."""
    for line in (DEPLOY / "stormd.env.example").read_text().splitlines():
        assert line == "" or line.startswith("#"), line
    unit = unit_settings(UNIT.read_text())
    assert unit["EnvironmentFile"] == ["-/etc/stormd/stormd.env"]
