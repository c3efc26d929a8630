"""Fixtures for the delivery tests: queuing messages the way handlers do, and pipelines."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from stormd.plugins.enqueue import MessageRequest, enqueue_message
from stormd.plugins.pipeline import DeliveryPipeline
from stormd.schema.messages import Message

_keys = itertools.count(1)


@pytest.fixture
def queue(sessionmaker, clock):
    """`await queue(channel=..., to_address=..., ...)` queues one message; returns its key."""

    async def add(**fields) -> str:
        fields.setdefault("store_id", "store_1")
        fields.setdefault("customer_id", None)
        fields.setdefault("channel", "sms")
        fields.setdefault("to_address", "+8801711000001")
        fields.setdefault("body", "Your cart is waiting")
        fields.setdefault("idempotency_key", f"test-{next(_keys)}")
        async with sessionmaker() as session, session.begin():
            await enqueue_message(session, MessageRequest(**fields), clock.now())
        return fields["idempotency_key"]

    return add


@pytest.fixture
def messages(sessionmaker):
    """`await messages()`: every Message row, by id."""

    async def read() -> list[Message]:
        async with sessionmaker() as session:
            return list((await session.scalars(select(Message).order_by(Message.id))).all())

    return read


@pytest.fixture
async def pipelines(sessionmaker, clock):
    """`pipelines(settings, **kw)` builds a DeliveryPipeline, stopped after the test."""
    made: list[DeliveryPipeline] = []

    def build(settings, **kw) -> DeliveryPipeline:
        pipeline = DeliveryPipeline(settings, sessionmaker, clock, **kw)
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        await pipeline.stop()
