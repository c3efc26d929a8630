"""Provider webhooks on `http.listen` (`/webhooks/<provider>`). Filled in by the channels
issue; the daemon's HTTP server mounts `routes(...)`."""

from __future__ import annotations

from typing import Any


def routes(pipeline: Any) -> list:
    """aiohttp route definitions for every provider webhook."""
    return []
