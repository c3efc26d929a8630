"""Intake against a real nats-server: events land, rejects are dead-lettered with a reason
without blocking the next event, duplicates are absorbed, failing handlers are retried and
then dead-lettered."""

from __future__ import annotations

import json

import pytest
from daemon_helpers import customer, envelope, eventually, processed, publish
from sqlalchemy import select

from stormd.schema.shop.customers import Customer

# The runtime path under test does not depend on the database kind (the inbox and
# group commit are covered on both by the other tests): SQLite only, to keep the suite fast.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def names(sessionmaker) -> dict[str, str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Customer.customer_id, Customer.name))
        return dict(rows.all())


async def dead_letters(js, n: int, timeout: float = 10.0) -> list:
    sub = await js.pull_subscribe("stormcom.dlq.>", durable=None, stream="STORMD_DLQ")
    got = []
    while len(got) < n:
        got += await sub.fetch(n - len(got), timeout=timeout)
    return got


async def test_valid_events_land_in_the_database(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    await start_daemon(daemon_settings())
    for i in range(50):
        await publish(js, customer(f"c{i}", name=f"Customer {i}"))
    await eventually(lambda: processed(sessionmaker), timeout=15)
    await eventually(lambda: _count_is(sessionmaker, 50))
    assert (await names(sessionmaker))["c7"] == "Customer 7"


async def _count_is(sessionmaker, n):
    return len(await names(sessionmaker)) == n


BAD_INPUTS = [
    ("stormcom.events.store_1.customer.upserted", b"{not json", "not JSON"),
    ("stormcom.events.store_1.customer.upserted",
     json.dumps({k: v for k, v in customer("x").items() if k != "id"}).encode(),
     "missing required field id"),
    ("stormcom.events.store_1.customer.upserted",
     json.dumps(envelope("customer.upserted", {"customerId": 42})).encode(),
     "data.customerId"),
    ("stormcom.events.store_1.cart.exploded",
     json.dumps(envelope("cart.exploded", {"cartId": "k1"})).encode(),
     "unknown event type 'cart.exploded'"),
    ("stormcom.events.store_2.customer.upserted",
     json.dumps(customer("x", store="store_1")).encode(),
     "disagrees with subject store"),
]


@SQLITE_ONLY
async def test_each_bad_input_is_dead_lettered_with_its_reason_and_the_next_event_processed(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    await start_daemon(daemon_settings())
    for subject, body, _ in BAD_INPUTS:
        await js.publish(subject, body)
    await publish(js, customer("after-bad", name="Karim"))
    await eventually(lambda: _count_is(sessionmaker, 1))
    letters = await dead_letters(js, len(BAD_INPUTS))
    by_body = {m.data: m for m in letters}
    for subject, body, reason in BAD_INPUTS:
        letter = by_body[body]
        assert reason in letter.headers["Stormd-Error"]
        assert letter.headers["Stormd-Subject"] == subject
    assert by_body[BAD_INPUTS[0][1]].subject == "stormcom.dlq.store_1.customer.upserted"
    assert by_body[BAD_INPUTS[3][1]].subject == "stormcom.dlq.store_1.cart.exploded"


async def test_duplicate_envelope_ids_have_the_effect_of_once(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    await start_daemon(daemon_settings())
    first = customer("dup", name="Once")
    await publish(js, first)
    await publish(js, first)  # same Nats-Msg-Id: JetStream's window drops it
    await publish(js, first, msg_id="other-id")  # past the window: only the inbox knows
    await publish(js, first, msg_id=None)
    await publish(js, customer("marker"))
    await eventually(lambda: _count_is(sessionmaker, 2))
    await eventually(lambda: _processed_is(sessionmaker, 2))
    await eventually(lambda: _acked_all(js))
    assert customer_handler[first["id"]] == 1


async def _processed_is(sessionmaker, n):
    return await processed(sessionmaker) == n


async def _acked_all(js):
    info = await js.consumer_info("STORMD_EVENTS", "stormd")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_failing_handler_is_retried_then_dead_lettered_and_its_actor_goes_on(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    await start_daemon(daemon_settings(nats={"max_deliver": 3}))
    bad = customer("c1", name="boom")
    await publish(js, bad)
    await publish(js, customer("c1", name="Fixed later"))  # same actor, behind the bad one
    await publish(js, customer("c2", name="Other"))
    await eventually(lambda: _count_is(sessionmaker, 2))
    [letter] = await dead_letters(js, 1)
    # Fixed words: the exception's type, never its text (which may hold SQL or customer data).
    assert letter.headers["Stormd-Error"] == "handling failed 3 times: RuntimeError"
    assert json.loads(letter.data)["id"] == bad["id"]
    assert customer_handler[bad["id"]] == 3
    assert (await names(sessionmaker)) == {"c1": "Fixed later", "c2": "Other"}


@SQLITE_ONLY
async def test_a_transient_failure_is_retried_and_applied_once(
    daemon_settings, start_daemon, handlers, js, sessionmaker
):
    attempts = []

    @handlers.on_event("customer.upserted")
    async def flaky(ctx, event):
        attempts.append(event.id)
        if len(attempts) < 3:
            raise ConnectionError("provider hiccup")
        await ctx.emit("customer.segmented", {"customerId": event.data.customer_id,
                                        "segment": "vip", "change": "entered"})

    await start_daemon(daemon_settings(nats={"max_deliver": 5}))
    await publish(js, customer("c9"))
    await eventually(lambda: _processed_is(sessionmaker, 1))
    assert len(attempts) == 3
    out = await js.pull_subscribe("stormcom.out.>", durable=None, stream="STORMD_OUT")
    [msg] = await out.fetch(1, timeout=10)
    assert msg.subject == "stormcom.out.store_1.customer.segmented"
    body = json.loads(msg.data)
    assert body["data"]["segment"] == "vip"
    # Ids are unique within a store: JetStream de-duplicates on the store and the id.
    assert msg.headers["Nats-Msg-Id"] == f"store_1:{body['id']}"


@SQLITE_ONLY
async def test_events_of_one_key_are_applied_in_order(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    await start_daemon(daemon_settings(nats={"batch_size": 7}))
    for i in range(60):
        await publish(js, customer(f"c{i % 3}", name=f"v{i}"))
    await eventually(lambda: _processed_is(sessionmaker, 60))
    assert await names(sessionmaker) == {"c0": "v57", "c1": "v58", "c2": "v59"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_nats_server_restart_mid_stream_loses_nothing(
    settings_factory, db_url, start_daemon, customer_handler, sessionmaker, tmp_path
):
    import nats as natspy

    from stormd.daemon.bus.nats_server import free_port, start_nats_server, wait_until_listening

    port = free_port()
    proc, url = start_nats_server(tmp_path / "own-nats", port=port)
    wait_until_listening(url)
    try:
        settings = settings_factory(nats={"url": url, "batch_size": 50},
                                    database={"url": db_url},
                                    metrics={"listen": "127.0.0.1:0"},
                                    http={"listen": "127.0.0.1:0"})
        await start_daemon(settings)
        nc = await natspy.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()
        for i in range(300):
            await publish(js, customer(f"c{i}"))
        proc.terminate()
        proc.wait(10)
        proc, _ = start_nats_server(tmp_path / "own-nats", port=port)
        wait_until_listening(url)
        for i in range(300, 400):
            for _ in range(100):
                try:
                    await publish(js, customer(f"c{i}"))
                    break
                except Exception:
                    import asyncio
                    await asyncio.sleep(0.1)
        await eventually(lambda: _count_is(sessionmaker, 400), timeout=30)
        await eventually(lambda: _processed_is(sessionmaker, 400))
        await nc.close()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_two_daemons_share_the_stream_and_apply_each_event_once(
    daemon_settings, start_daemon, handlers, js, sessionmaker
):
    applied: dict[str, list] = {}

    @handlers.on_event("customer.upserted")
    async def record(ctx, event):
        applied.setdefault(event.id, []).append(ctx.session.bind)

    settings = daemon_settings(nats={"batch_size": 20})
    await start_daemon(settings)
    await start_daemon(settings)
    for i in range(300):
        await publish(js, customer(f"c{i}"))
    await eventually(lambda: _processed_is(sessionmaker, 300))
    await eventually(lambda: _acked_all(js))
    assert len(applied) == 300
    assert all(len(calls) == 1 for calls in applied.values())
    assert len({calls[0] for calls in applied.values()}) == 2  # both took a share


@SQLITE_ONLY
async def test_events_waiting_longer_than_ack_wait_are_not_redelivered_or_dead_lettered(
    daemon_settings, start_daemon, handlers, js, sessionmaker
):
    import asyncio

    calls: dict[str, int] = {}

    @handlers.on_event("customer.upserted")
    async def slow(ctx, event):
        calls[event.id] = calls.get(event.id, 0) + 1
        await asyncio.sleep(0.3)

    # 12 events at 0.3 s each behind one another (one actor): the last waits ~3.6 s, far
    # beyond the 1 s ack wait, and max_deliver = 2 would dead-letter a redelivered one.
    await start_daemon(daemon_settings(nats={"ack_wait": "1s", "max_deliver": 2,
                                             "batch_size": 20}))
    for i in range(12):
        await publish(js, customer("same", name=f"v{i}"))
    await eventually(lambda: _processed_is(sessionmaker, 12), timeout=20)
    assert set(calls.values()) == {1}
    info = await js.consumer_info("STORMD_EVENTS", "stormd")
    assert info.delivered.consumer_seq == 12  # every delivery counted: none were repeated
    assert (await js.stream_info("STORMD_DLQ")).state.messages == 0


async def _stored(sessionmaker) -> dict[tuple[str, str], str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Customer.store_id, Customer.customer_id,
                                            Customer.name))
        return {(s, c): n for s, c, n in rows.all()}


async def test_the_same_event_id_in_two_stores_is_two_events(
    daemon_settings, start_daemon, customer_handler, js, sessionmaker
):
    """Ids are unique within a store only: both stores' `evt-7` have their effects, each
    is still de-duplicated within its store (in flight, in the inbox, in JetStream)."""
    await start_daemon(daemon_settings())
    c = customer("shopper", name="From C", store="store_c", id_="evt-7")
    d = customer("shopper", name="From D", store="store_d", id_="evt-7")
    # Published back to back they meet in one fetch: in flight they are two events.
    await publish(js, c)
    await publish(js, d)
    await eventually(lambda: _processed_is(sessionmaker, 2))
    assert await _stored(sessionmaker) == {("store_c", "shopper"): "From C",
                                           ("store_d", "shopper"): "From D"}
    # A replay of each, past JetStream's window (another Nats-Msg-Id): the inbox absorbs it.
    await publish(js, {**c, "data": {**c["data"], "name": "Replayed"}}, msg_id="replay-c")
    await publish(js, {**d, "data": {**d["data"], "name": "Replayed"}}, msg_id="replay-d")
    await publish(js, customer("marker", store="store_c"))
    await eventually(lambda: _processed_is(sessionmaker, 3))
    await eventually(lambda: _acked_all(js))
    assert (await _stored(sessionmaker))[("store_d", "shopper")] == "From D"
    assert customer_handler["evt-7"] == 2  # once for each store


async def test_a_database_error_is_dead_lettered_in_fixed_words(
    daemon_settings, start_daemon, handlers, js
):
    """The dead-letter header names what failed, never the error's text: a database error's
    text holds the SQL and the customer's values."""
    from sqlalchemy import insert

    @handlers.on_event("customer.upserted")
    async def twice(ctx, event):
        for _ in range(2):  # the second insert breaks the primary key
            await ctx.session.execute(insert(Customer).values(
                store_id=event.store_id, customer_id=event.data.customer_id,
                name=event.data.name))

    await start_daemon(daemon_settings(nats={"max_deliver": 2}))
    await publish(js, customer("c1", name="Nasrin Akter +8801712345678"))
    [letter] = await dead_letters(js, 1)
    header = letter.headers["Stormd-Error"]
    assert header == "handling failed 2 times: database error (IntegrityError)", header
