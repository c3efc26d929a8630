"""The checked-in AsyncAPI document is what the code generates (regenerate with
`python -m stormd.daemon.bus.asyncapi --out docs/asyncapi.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from stormd.daemon.bus.asyncapi import document, render
from stormd.schema.wire.events import EVENT_TYPES

DOC = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def test_the_checked_in_asyncapi_document_matches_the_code():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.json is stale: run python -m stormd.daemon.bus.asyncapi --out docs/asyncapi.json")


def test_every_event_type_and_event_out_has_a_channel_with_its_subject():
    channels = document()["channels"]
    for type_ in EVENT_TYPES:
        assert channels[f"events:{type_}"]["address"] == f"stormcom.events.{{store_id}}.{type_}"
    assert channels["out:customer.segmented"]["address"] == "stormcom.out.{store_id}.customer.segmented"
    assert "Stormd-Error" in json.dumps(channels["dlq"])
