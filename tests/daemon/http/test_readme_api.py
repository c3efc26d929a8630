"""The README's API example, run as written against `stormd run` started as a user would
start it (only the addresses moved to free ports): on a fresh data directory it prints the
store's segments."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

README = Path(__file__).resolve().parents[3] / "README.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example -->\n```sh\n(.*?)```", text, re.S)
    assert block, "README lost its API example"
    return block.group(1)


def test_the_readme_curl_example_lists_the_store_segments(tmp_path):
    http, metrics, nats = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "STORMD_HTTP__LISTEN": f"127.0.0.1:{http}",
           "STORMD_METRICS__LISTEN": f"127.0.0.1:{metrics}",
           "STORMD_NATS__EMBEDDED_PORT": str(nats)}
    env.pop("STORMD_CONFIG", None)  # the built-in defaults, as on a fresh clone
    bin_dir = tmp_path / "bin"  # `stormd` as the installed script runs it
    bin_dir.mkdir()
    (bin_dir / "stormd").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'from stormd.daemon.cli.main import main; "
        f"main()' \"$@\"\n")
    (bin_dir / "stormd").chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    daemon = subprocess.Popen(["stormd", "run"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert daemon.poll() is None, daemon.stdout.read().decode()
            assert time.monotonic() < deadline, "stormd run did not become ready"
            time.sleep(0.2)
        script = _example().replace("127.0.0.1:8080", f"127.0.0.1:{http}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert done.returncode == 0, done.stderr
    segments = json.loads(done.stdout)
    assert [s["slug"] for s in segments["items"]] == ["vip", "loyal", "at-risk", "hibernating"]
