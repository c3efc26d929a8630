"""systemd Type=notify: READY=1 once running, STOPPING=1 when draining, over $NOTIFY_SOCKET."""

from __future__ import annotations

import socket

import pytest

from stormd.daemon.runtime import systemd

# The runtime path under test does not depend on the database kind (the inbox and
# group commit are covered on both by the other tests): SQLite only, to keep the suite fast.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_the_daemon_tells_systemd_ready_and_stopping(
    daemon_settings, start_daemon, tmp_path, monkeypatch
):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        d = await start_daemon(daemon_settings())
        assert sock.recv(100) == b"READY=1"
        await d.stop()
        assert sock.recv(100) == b"STOPPING=1"
    finally:
        sock.close()


def test_the_watchdog_pings_at_half_its_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 2.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_interval() is None


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
