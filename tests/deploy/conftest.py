"""Fixtures for the deployment files' tests: the system tools they run. promtool comes from
tests/system-deps.sh (so under CI its absence fails the run); systemd-analyze comes with
systemd, and the tests that need it skip on a machine without."""

from __future__ import annotations

import os
import shutil

import pytest
from deploy_tools import find_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    path = find_tool("promtool")
    if path is None:
        message = "promtool not found: run `sh tests/system-deps.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed (a machine without systemd)")
    return path
