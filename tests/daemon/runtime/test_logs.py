"""Structured logs: one JSON object a line with the extra fields, or plain text."""

from __future__ import annotations

import json
import logging

from stormd.daemon.runtime.logs import JsonFormatter


def test_json_logs_are_one_object_a_line_with_extra_fields():
    record = logging.makeLogRecord({"name": "stormd.daemon.runtime.intake", "levelname": "WARNING",
                                    "msg": "dead-lettered %s", "args": ("e1",),
                                    "subject": "stormcom.events.s1.cart.updated"})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "dead-lettered e1"
    assert data["level"] == "WARNING"
    assert data["subject"] == "stormcom.events.s1.cart.updated"
    assert data["ts"].endswith("+00:00")
