"""One section of the demo's closing report: lines for people, data for `--json`. Each
issue's report module returns one (daemon/demo/day.py lists them in `REPORTS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Section:
    key: str  # the section's name in `--json`
    title: str
    lines: list[str]
    data: Any
