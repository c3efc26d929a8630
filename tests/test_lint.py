"""Lint stays clean: `ruff check` over the repository with the rules in pyproject.toml."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_to_fix():
    ruff = pytest.importorskip("ruff.__main__")
    result = subprocess.run([ruff.find_ruff_bin(), "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
