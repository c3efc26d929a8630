"""Runs the shell blocks of docs/operations.md's install section as root inside a private
mount namespace (`unshare --mount`), started by test_operations_doc.py:

    unshare --mount --propagation private python doc_runner.py WORKDIR

/etc, /opt and /var are overlays on a tmpfs there, so the steps really create the venv,
the user and the files, and the machine is left as it was. What needs a running systemd is
replaced by stand-ins on PATH (WORKDIR/bin): `systemctl` and `journalctl` record their
arguments, `systemd-run` runs its command as the given user with the given environment
(its meaning for the options the doc uses), `apt-get` records, `curl` records, `sudo` runs
its command. Writes WORKDIR/results.json."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""

SUDO = """#!/bin/sh
exec "$@"
"""

SYSTEMD_RUN = '''#!{python}
"""systemd-run's options as docs/operations.md uses them, without systemd."""
import grp, os, pwd, sys
args, env, env_files, user, group = sys.argv[1:], {{}}, [], None, None
with open("{log}", "a") as log:
    log.write("systemd-run " + " ".join(args) + "\\n")
while args and args[0].startswith("-"):
    opt = args.pop(0)
    name, _, value = opt.partition("=")
    if name in ("-p", "-E", "--uid", "--gid") and not value:
        value = args.pop(0)
    if name in ("--property", "-p"):
        key, _, path = value.partition("=")
        assert key == "EnvironmentFile", value
        env_files.append(path)
    elif name in ("--setenv", "-E"):
        k, _, v = value.partition("=")
        env[k] = v
    elif name == "--uid":
        user = value
    elif name == "--gid":
        group = value
    elif name not in ("--quiet", "--wait", "--pipe", "--collect"):
        sys.exit("systemd-run stand-in: unknown option " + opt)
for path in env_files:  # EnvironmentFile= wins over Environment=, as in a unit
    optional = path.startswith("-")
    path = path.lstrip("-")
    if optional and not os.path.exists(path):
        continue
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip().strip('"')
env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
account = pwd.getpwnam(user)
os.setgroups([])
os.setgid(account.pw_gid if group is None else grp.getgrnam(group).gr_gid)
os.setuid(account.pw_uid)
os.chdir("/")
os.execve(args[0], args, env)
'''


def overlay(work: Path, directory: str) -> None:
    upper, lower_work = work / "ov" / directory / "up", work / "ov" / directory / "work"
    upper.mkdir(parents=True)
    lower_work.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/{directory},upperdir={upper},workdir={lower_work}",
                    f"/{directory}"], check=True)


def stand_ins(work: Path) -> Path:
    bin_dir = work / "bin"
    bin_dir.mkdir()
    log = work / "calls.log"
    scripts = {name: RECORDER.format(log=log)
               for name in ("systemctl", "journalctl", "apt-get", "curl")}
    scripts["sudo"] = SUDO
    scripts["systemd-run"] = SYSTEMD_RUN.format(python=sys.executable, log=log)
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def main(work: Path) -> None:
    results: dict = {}
    ov = work / "ov"
    ov.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(ov)], check=True)
        for directory in ("etc", "opt", "var"):
            overlay(work, directory)
    except (subprocess.CalledProcessError, OSError) as exc:
        results["skip"] = f"cannot mount overlays here: {exc}"
        (work / "results.json").write_text(json.dumps(results))
        return
    bin_dir = stand_ins(work)
    env = {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    blocks = json.loads((work / "blocks.json").read_text())
    results["blocks"] = []
    for heading, block in blocks:
        run = subprocess.run(["bash", "-e", "-c", block], cwd=work / "src", env=env,
                             capture_output=True, text=True, timeout=900)
        results["blocks"].append({"heading": heading, "returncode": run.returncode,
                                  "stdout": run.stdout[-4000:], "stderr": run.stderr[-4000:]})

    def mode(path: str) -> dict | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return {"mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid}

    results["files"] = {p: mode(p) for p in (
        "/etc/stormd", "/etc/stormd/stormd.toml", "/etc/stormd/stormd.env",
        "/etc/systemd/system/stormd.service", "/opt/stormd/bin/stormd",
        "/opt/stormd/bin/nats-server")}
    try:
        account = pwd.getpwnam("stormd")
        results["user"] = {"uid": account.pw_uid, "shell": account.pw_shell,
                           "home": account.pw_dir}
    except KeyError:
        results["user"] = None
    python = Path("/opt/stormd/bin/python3")
    results["venv_python"] = str(python.resolve()) if python.exists() else None
    analyze = shutil.which("systemd-analyze")
    if analyze:
        verify = subprocess.run([analyze, "verify", "/etc/systemd/system/stormd.service"],
                                capture_output=True, text=True, timeout=60)
        results["verify"] = {"returncode": verify.returncode,
                             "output": verify.stdout + verify.stderr}
    log = work / "calls.log"
    results["calls"] = log.read_text().splitlines() if log.exists() else []
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
