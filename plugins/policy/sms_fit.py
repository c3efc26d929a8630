"""Keeping an SMS within the segments its template allows (Bengali is UCS-2: 70 a part).

A message queued with `data.sms_max_segments` (a template or step that asks for "one
SMS") is shortened at send time by `sms_encoding.trim_to_fit`: only the variable head (a
product name, a greeting) is cut, at a clean grapheme boundary, and the fixed tail stays
whole. The tail is `data.sms_tail` when given (the body must end with it), else the body's
trailing link. If the tail alone is too long, the body goes out whole and is billed as such.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from stormd.plugins import sms_segments, trim_to_fit

log = logging.getLogger("stormd.delivery")

TRAILING_LINK = re.compile(r"\s*https?://\S+\s*$")


def fit_sms(body: str, data: Mapping[str, Any] | None, *, quiet: bool = False) -> str:
    """`body` trimmed to `data["sms_max_segments"]` segments, or unchanged (`quiet`: no
    warning when it cannot be, for pricing at queue time; the send logs it)."""
    limit = (data or {}).get("sms_max_segments")
    if not isinstance(limit, int) or limit < 1 or sms_segments(body) <= limit:
        return body
    tail = (data or {}).get("sms_tail")
    if not (isinstance(tail, str) and tail and body.endswith(tail)):
        link = TRAILING_LINK.search(body)
        tail = link.group(0) if link else ""
    try:
        return trim_to_fit(body[:len(body) - len(tail)], tail, max_segments=limit)
    except ValueError as exc:
        if not quiet:
            log.warning("delivery: SMS not trimmed to %d segment(s): %s", limit, exc)
        return body
