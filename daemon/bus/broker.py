"""The NATS side of the daemon: connecting (forever, with backoff), the JetStream streams
and the durable pull consumer.

We use nats-py's pull consumer directly rather than a FastStream subscriber: the runtime
must hold each message until its batch commits (ack after commit, possibly seconds later
when an actor backs off), read `num_delivered` to dead-letter poison messages, and stop
fetching on drain — all of which the raw `fetch`/`ack` calls give without fighting an ack
policy (FastStream's NATS default, REJECT_ON_ERROR, discards failed messages). FastStream still
describes the contract for the AsyncAPI document (daemon/bus/asyncapi.py).
"""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from stormd.config.secrets import mask_text, mask_url
from stormd.config.settings import Settings
from stormd.schema.metrics import NATS_CONNECTED

log = logging.getLogger(__name__)


def server_urls(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


async def connect(urls: list[str], name: str = "stormd") -> Client:
    """Connect, retrying the first connection with backoff; afterwards nats-py reconnects
    forever (max_reconnect_attempts=-1) and we log each disconnect and reconnect. Every
    line names the servers with their credentials masked (config/secrets.py)."""
    shown = mask_url(",".join(urls))

    async def disconnected() -> None:
        NATS_CONNECTED.set(0)
        if not nc.is_closed:
            log.warning("NATS disconnected; reconnecting")

    async def reconnected() -> None:
        NATS_CONNECTED.set(1)
        where = nc.connected_url.hostname if nc.connected_url else None
        port = nc.connected_url.port if nc.connected_url else None
        log.info("NATS reconnected to %s:%s", where or "?", port or "?")

    last_warned = [0.0]

    async def error(exc: Exception) -> None:
        # While (re)connecting nats-py reports each failed attempt: say so every 10 s.
        now = asyncio.get_running_loop().time()
        if now - last_warned[0] >= 10:
            last_warned[0] = now
            log.warning("NATS at %s not reachable (%s: %s); retrying", shown,
                        type(exc).__name__, mask_text(str(exc)))
        else:
            log.debug("NATS error: %s", mask_text(str(exc)))

    backoff = 0.2
    while True:
        nc = Client()
        try:
            await nc.connect(
                servers=urls, name=name, max_reconnect_attempts=-1, reconnect_time_wait=1,
                connect_timeout=2, allow_reconnect=True, disconnected_cb=disconnected,
                reconnected_cb=reconnected, error_cb=error, pending_size=64 * 1024 * 1024,
            )
            NATS_CONNECTED.set(1)
            return nc
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            log.warning("cannot reach NATS at %s (%s); retrying in %.1fs",
                        shown, mask_text(str(exc)), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created JetStream stream %s over %s", config.name, config.subjects)
        return
    await js.update_stream(config)


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create or update (idempotently) the events stream and the out/dead-letter streams."""
    n = settings.nats
    prefix = n.subject_prefix
    common = dict(
        storage=StorageType.FILE, max_age=n.stream_max_age.total_seconds(),
        duplicate_window=n.duplicate_window.total_seconds(),
    )
    await _ensure_stream(js, StreamConfig(
        name=n.stream, subjects=[f"{prefix}.events.>"], max_bytes=n.stream_max_bytes, **common,
    ))
    await _ensure_stream(js, StreamConfig(name=n.dlq_stream, subjects=[f"{prefix}.dlq.>"], **common))
    await _ensure_stream(js, StreamConfig(name=n.out_stream, subjects=[f"{prefix}.out.>"], **common))


def consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable pull consumer every stormd process shares. JetStream redelivers without
    limit (max_deliver=-1): stormd itself dead-letters a message after `nats.max_deliver`
    failed attempts, counting deliveries from the message metadata, so a poison message
    ends up in the DLQ with its error instead of silently stuck."""
    n = settings.nats
    return ConsumerConfig(
        durable_name=n.consumer, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
        ack_wait=n.ack_wait.total_seconds(), max_deliver=-1,
        filter_subject=f"{n.subject_prefix}.events.>",
        max_ack_pending=max(4 * n.batch_size * settings.daemon.workers, 1000),
    )


async def pull_subscription(js: JetStreamContext, settings: Settings):
    n = settings.nats
    await js.add_consumer(n.stream, consumer_config(settings))
    return await js.pull_subscribe_bind(durable=n.consumer, stream=n.stream)
