"""docs/metrics.md: the exposition of a running daemon passes `promtool check metrics`.

promtool is Prometheus's own linter (Debian package `prometheus`); where it is not
installed the test says so and skips. prometheus_client's parser check in test_app.py
always runs."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from daemon_helpers import customer, eventually, publish

PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt install prometheus)")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_promtool_accepts_the_daemons_metrics(daemon_settings, start_daemon,
                                                    customer_handler, js):
    d = await start_daemon(daemon_settings())
    await publish(js, customer("p1"))
    host, port = d.http.bound["metrics"]

    async def scraped():
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://{host}:{port}/metrics")).text
        return text if 'outcome="processed"' in text else None

    text = await eventually(scraped)
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    # A deliberately bad exposition is refused, so the check above can fail.
    bad = subprocess.run([PROMTOOL, "check", "metrics"], input="stormd_x{a=1} 1\n",
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
