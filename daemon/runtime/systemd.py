"""systemd `Type=notify` without a dependency: READY=1, WATCHDOG=1, STOPPING=1 as datagrams
on `$NOTIFY_SOCKET` (a leading `@` is the abstract namespace). Without the variable every
call is a no-op, so the daemon runs the same outside systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one state line to systemd; returns whether a socket was there to take it."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state, exc)
        return False


def watchdog_interval() -> float | None:
    """Half of `$WATCHDOG_USEC` in seconds, or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


async def watchdog_loop(alive) -> None:
    """Ping WATCHDOG=1 at half the interval while `alive()` says the daemon is healthy."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        await asyncio.sleep(interval)
        if alive():
            notify("WATCHDOG=1")
