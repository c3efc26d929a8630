"""The AsyncAPI document of stormd's NATS contract (docs/events.md), generated from the
code: FastStream subscribers and publishers typed with the very pydantic models intake
validates with (schema/wire/events.py), so the document cannot drift from the parser.

    python -m stormd.daemon.bus.asyncapi [--out docs/asyncapi.json]

The runtime itself consumes with nats-py (daemon/bus/broker.py explains why); this broker is
never connected — it exists to describe the subjects.
"""

import argparse
import json
import sys
from datetime import datetime
from typing import Any, Literal

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel

from stormd.config.channels import Channel
from stormd.daemon import __version__
from stormd.schema.wire.events import PAYLOADS, Payload

PREFIX = "stormcom"


class _Envelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str = Field(description="Unique per event within its store; the same id twice in one "
                                "store has the effect of once. Publishers also set the "
                                "Nats-Msg-Id header to <storeId>:<id>.")
    store_id: str = Field(description="Must equal the <storeId> of the subject.")
    occurred_at: datetime = Field(description="When it happened at the storefront (with zone).")


def _camel_name(type_: str) -> str:
    return "".join(part.capitalize() for part in type_.replace("_", ".").split("."))


def envelope_model(type_: str, payload: type[BaseModel]) -> type[BaseModel]:
    return create_model(f"{_camel_name(type_)}Event", __base__=_Envelope,
                        type=(Literal[type_], ...), data=(payload, ...))


class CustomerSegmented(Payload):
    customer_id: str
    segment: str = Field(description="Segment slug")
    change: Literal["entered", "exited"]


class MessageStatus(Payload):
    message_id: str
    customer_id: str
    channel: Channel
    provider: str
    status: str
    campaign_id: str | None = None
    trigger: str | None = None


OUT = {"customer.segmented": CustomerSegmented, "message.status": MessageStatus}


def build(prefix: str = PREFIX) -> AsyncAPI:
    broker = NatsBroker("nats://localhost:4222", description=(
        "Storefronts publish events on JetStream; stormd consumes them with a durable pull "
        "consumer, publishes events out, dead letters and answers request/reply."))

    for type_, payload in PAYLOADS.items():
        model = envelope_model(type_, payload)

        async def consume(event: Any) -> None:
            """Documentation only."""

        consume.__annotations__ = {"event": model, "return": None}

        consume.__name__ = f"on_{type_.replace('.', '_')}"
        broker.subscriber(
            f"{prefix}.events.{{store_id}}.{type_}", title=f"events:{type_}",
            description=f"`{type_}` from a storefront. Invalid events go to "
                        f"`{prefix}.dlq.<storeId or _>.<type or _>` with the header "
                        "`Stormd-Error`.",
        )(consume)

    for type_, payload in OUT.items():
        model = envelope_model(type_, payload)

        async def emit() -> None:
            """Documentation only."""

        emit.__name__ = f"emit_{type_.replace('.', '_')}"
        broker.publisher(
            f"{prefix}.out.{{store_id}}.{type_}", title=f"out:{type_}", schema=model,
            description=f"`{type_}` published by stormd after commit, Nats-Msg-Id = "
                        "<storeId>:<id>.",
        )(emit)

    broker.publisher(
        f"{prefix}.dlq.{{store_id}}.{{type}}", title="dlq", schema=bytes,
        description="The original bytes of a rejected or repeatedly failing event, with the "
                    "headers `Stormd-Error` (why) and `Stormd-Subject` (where it came from).",
    )
    return AsyncAPI(broker, title="stormd", version=__version__, description=(
        "The NATS contract of stormd, the StormCom marketing-automation daemon. Request/reply "
        f"handlers answer on `{prefix}.api.<name>` with JSON (`{{\"error\": ...}}` on failure)."))


# pydantic releases differ on whether a Decimal-as-string schema carries this pattern; it
# says nothing the "number or string" type doesn't, so the document leaves it out and stays
# the same whichever pydantic is installed.
_DECIMAL_PATTERN_START = "^(?!^[-+.]*$)"


def _stable(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _stable(v) for k, v in node.items()
                if not (k == "pattern" and str(v).startswith(_DECIMAL_PATTERN_START))}
    if isinstance(node, list):
        return [_stable(v) for v in node]
    return node


def document() -> dict[str, Any]:
    return _stable(build().to_specification().to_jsonable())


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write stormd's AsyncAPI document.")
    parser.add_argument("--out", default="-", help="file (default: stdout)")
    args = parser.parse_args()
    text = render()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
