"""docs/operations.md, "Install as a systemd service": the steps an operator types, run as
written as far as a machine without a running systemd allows (doc_runner.py: root, a private
mount namespace with /etc, /opt and /var overlaid, systemctl and journalctl recorded); the
unit they install passes `systemd-analyze verify` with its real ExecStart, and the files
and paths they name are the repository's and the unit's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_tools import DEPLOY, REPO

DOC = REPO / "docs" / "operations.md"
SECTION = "## Install as a systemd service"
UNIT = DEPLOY / "stormd.service"


def install_section() -> str:
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end < 0 else text[start:end]


def blocks() -> list[tuple[str, str]]:
    """(heading above it, text) of each ```sh block of the install section, in order."""
    found, heading = [], SECTION
    for part in re.split(r"(```sh\n.*?```)", install_section(), flags=re.S):
        if part.startswith("```sh\n"):
            found.append((heading, part[len("```sh\n"):-3]))
        else:
            headings = re.findall(r"^#{2,4} (.+)$", part, flags=re.M)
            heading = headings[-1] if headings else heading
    return found


def test_headings():
    text = DOC.read_text()
    assert text.startswith("# Operating stormd\n")
    assert text.count(f"\n{SECTION}\n") == 1
    assert len(blocks()) >= 5


def test_files_the_steps_copy_are_in_the_repository():
    named = set()
    for _, block in blocks():
        named |= set(re.findall(r"(?<![\w/.-])((?:deploy|docs|tests)/[\w./-]+|stormd\.toml)",
                                block))
    assert {"deploy/stormd.service", "deploy/stormd.env.example", "stormd.toml"} <= named
    missing = {name for name in named if not (REPO / name).exists()}
    assert missing == set()


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{key}=")]


def test_the_doc_and_the_unit_name_the_same_paths():
    steps = "\n".join(block for _, block in blocks())
    program = unit_values("ExecStart")[0].split()[0]
    assert program == "/opt/stormd/bin/stormd" and program in steps
    assert "--config /etc/stormd/stormd.toml" in unit_values("ExecStart")[0]
    assert "/etc/stormd/stormd.toml" in steps
    env_file = unit_values("EnvironmentFile")[0].lstrip("-")
    assert env_file == "/etc/stormd/stormd.env" and env_file in steps
    assert "/etc/systemd/system/stormd.service" in steps
    # The administration commands get the service's environment.
    for assignment in unit_values("Environment"):
        assert f"--setenv={assignment}" in steps, assignment
    assert f"--property=EnvironmentFile=-{env_file}" in steps
    user = unit_values("User")[0]
    assert f"--uid={user}" in steps and re.search(rf"useradd .*\b{user}\b", steps, re.S)


def can_run_steps() -> str | None:
    """Why the steps cannot run here, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (a private mount namespace)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    venv = subprocess.run(["/usr/bin/python3", "-c", "import ensurepip, venv"],
                          capture_output=True)
    if venv.returncode != 0:
        return "the system Python at /usr/bin/python3 cannot make a venv (python3-venv)"
    return None


def copy_checkout(dest: Path) -> None:
    """The work tree as a checkout has it (tracked and new files, nothing ignored): `pip
    install .` builds in the source folder, which must not be the repository itself."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    reason = can_run_steps()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("install")
    copy_checkout(work / "src")
    (work / "blocks.json").write_text(json.dumps(blocks()))
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                          str(Path(__file__).with_name("doc_runner.py")), str(work)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((work / "results.json").read_text())
    if "skip" in results:
        pytest.skip(results["skip"])
    return results


def test_every_step_succeeds(installed):
    """Every block exits 0, but those that look at the running service (step 5), which
    nothing runs here."""
    for block in installed["blocks"]:
        if block["heading"].startswith("5."):
            continue
        assert block["returncode"] == 0, json.dumps(block, indent=1)


def test_the_steps_install_the_code_user_config_and_unit(installed):
    files = installed["files"]
    assert files["/opt/stormd/bin/stormd"] is not None
    assert files["/opt/stormd/bin/nats-server"] is not None  # for nats.url = "embedded"
    # The service cannot see /root or /home (ProtectHome=yes): the venv's Python is not there.
    assert not installed["venv_python"].startswith(("/root/", "/home/"))
    assert installed["user"]["uid"] < 1000 and installed["user"]["shell"].endswith("nologin")
    assert files["/etc/stormd/stormd.toml"]["mode"] == "0o644"
    secrets = files["/etc/stormd/stormd.env"]
    assert secrets["mode"] == "0o600" and secrets["uid"] == 0
    assert files["/etc/systemd/system/stormd.service"]["mode"] == "0o644"


def test_systemd_is_told_to_load_and_start_it(installed):
    calls = installed["calls"]
    reload = calls.index("systemctl daemon-reload")
    assert calls.index("systemctl enable --now stormd") > reload


def test_the_installed_unit_verifies(installed):
    if "verify" not in installed:
        pytest.skip("systemd-analyze not installed")
    verify = installed["verify"]
    assert verify["returncode"] == 0 and verify["output"] == "", verify["output"]


def test_administration_commands_run_as_the_service_user(installed):
    """`stormdctl config check` reads /etc/stormd/stormd.toml with the unit's environment as
    the user stormd, and the daemon accepts what the steps installed."""
    admin = next(b for b in installed["blocks"] if b["heading"] == "Administration commands")
    assert admin["returncode"] == 0, admin["stderr"]
    assert "# configuration OK" in admin["stdout"]
    assert 'data_dir = "/var/lib/stormd"' in admin["stdout"]
