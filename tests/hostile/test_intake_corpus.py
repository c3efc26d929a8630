"""The hostile-input corpus of intake: events, webhook requests and configuration values an
attacker or a careless storefront would send, each with the one outcome it must have
(docs/events.md "Limits" and "Dead letters"; docs/configuration.md).

The events and webhooks go through a real daemon (the real handlers) and a real
nats-server, on SQLite and on PostgreSQL: every hostile event is dead-lettered with its
reason and nothing of it is stored (zero wrong accepts), no part of the daemon fails or
restarts (zero crashes), and valid events sent after the corpus are still handled (zero
silent stops). The nats-server here allows 4 MiB messages, so that stormd's own 1 MiB
limit is what refuses a larger event (the server's default refuses it before stormd).
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from daemon_helpers import eventually, publish
from hostile_outcomes import (
    CONFIG_ERROR,
    DEAD_LETTERED,
    HTTP_4XX,
    MASKED,
    PROCESSED,
    Case,
    Tally,
)
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from stormd.daemon.bus.nats_server import free_port, nats_server_binary, wait_until_listening
from stormd.daemon.cli.main import main as cli
from stormd.plugins import hub_signature
from stormd.schema.metrics import COMPONENTS
from stormd.schema.runtime.inbox import ProcessedEvent
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.orders import Order

PREFIX = "stormcom"
STORE = "store_h"
NOW = datetime.now(UTC)  # the daemon runs on the wall clock here
OUTBOX_SECRET = "whsec-corpus-outbox"
META_SECRET = "meta-corpus-app-secret"


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream whose max_payload (4 MiB) is above stormd's limit."""
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 4194304\n")
    port = free_port()
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-js",
         "-sd", str(tmp_path / "nats")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    try:
        wait_until_listening(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _at(delta: timedelta = timedelta(0)) -> str:
    return (NOW + delta).isoformat()


def env(type_: str, data: dict, id_: str, **fields) -> dict:
    return {"id": id_, "type": type_, "storeId": STORE, "occurredAt": _at(-timedelta(hours=2)),
            "data": data, **fields}


def body(envelope: dict, **literals: str) -> bytes:
    """The envelope as JSON, with `"@name"` placeholders replaced by raw JSON literals (a
    number json.dumps would round, NaN, a lone surrogate escape)."""
    text = json.dumps(envelope)
    for name, literal in literals.items():
        text = text.replace(f'"@{name}"', literal)
    return text.encode()


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def item(**kw) -> dict:
    return {"productId": "p1", "quantity": 1, "unitPrice": "100.00", **kw}


def cart(id_: str, **data) -> dict:
    return env("cart.updated", {"cartId": f"k_{id_}", "items": [item()], **data}, id_)


def customer(id_: str, **data) -> dict:
    return env("customer.upserted", {"customerId": f"c_{id_}", **data}, id_)


def order(id_: str, **data) -> dict:
    return env("order.created", {"orderId": f"o_{id_}", "customerId": "c1", "status": "PAID",
                                 "total": "100.00", "items": [item()], **data}, id_)


def event(name: str, envelope: dict | bytes, reason: str, *, subject_store: str = STORE,
          type_: str | None = None, **literals: str) -> Case:
    raw = envelope if isinstance(envelope, bytes) else body(envelope, **literals)
    kind = type_ or (envelope.get("type") if isinstance(envelope, dict) else "cart.updated")
    return Case(name, (f"{PREFIX}.events.{subject_store}.{kind}", raw), DEAD_LETTERED, reason)


# --- events: each dead-lettered with this reason (a substring of Stormd-Error) -------------
EVENT_CASES = [
    event("not JSON", b"{oops", "not JSON"),
    event("nested 1,000 levels (was an uncaught RecursionError ending intake)",
          body(cart("deep1000", extra="@deep"), deep=nested(1000)),
          "JSON nested deeper than 32 levels"),
    event("nested 100,000 levels", body(cart("deep100k", extra="@deep"), deep=nested(100_000)),
          "JSON nested deeper than 32 levels"),
    event("nested 33 levels (one over)", body(cart("deep33", extra="@deep"), deep=nested(31)),
          "JSON nested deeper than 32 levels"),
    event("payload of 1 MiB + 1 byte", body(customer("big", name="x" * (1024 * 1024))),
          "over the 1 MiB limit", type_="customer.upserted"),
    event("total 1e30 (stored as REAL on SQLite, refused by PostgreSQL)",
          cart("t1e30", total="@total"), "data.total: Input should be less than or equal to "
          "999999999999.99", total="1e30"),
    event("total 12345678901234567.89 (lost its cents on SQLite)",
          cart("t17", total="@total"), "data.total: Input should be less than or equal to",
          total="12345678901234567.89"),
    event("unitPrice 10.999 (10.999 on SQLite, 11.00 on PostgreSQL)",
          cart("p3dp", items=[item(unitPrice="10.999")]),
          "data.items.0.unitPrice: has more than 2 decimal places"),
    event("unitPrice 10.999 as a JSON number", cart("p3dpn", items=[item(unitPrice="@p")]),
          "data.items.0.unitPrice: has more than 2 decimal places", p="10.999"),
    event("total NaN", cart("tnan", total="@t"), "not JSON", t="NaN"),
    event("total \"Infinity\"", cart("tinf", total="Infinity"),
          "data.total: Input should be a finite number"),
    event("total 1e999999", cart("tbig", total="@t"), "not JSON", t="1e999999"),
    event("negative price", cart("pneg", items=[item(unitPrice="-1")]),
          "data.items.0.unitPrice: Input should be greater than or equal to 0"),
    event("300-character cart id", cart("id300") | {"data": {"cartId": "k" * 300, "items": []}},
          "data.cartId: String should have at most 128 characters"),
    event("NUL in a customer id (stored on SQLite, refused by PostgreSQL)",
          customer("idnul") | {"data": {"customerId": "c\u0000x"}},
          "data.customerId: contains a control character"),
    event("NUL in a name", customer("namenul", name="Rahim\u0000"),
          "data.name: contains a NUL character"),
    event("newline in the event id", customer("x") | {"id": "evt\nforged"},
          "id: contains a control character"),
    event("empty event id", customer("x") | {"id": ""}, "id: String should have at least 1"),
    event("a lone surrogate in a name (PostgreSQL cannot encode it)",
          customer("surrogate", name="@n"), "not JSON", n='"\\ud800"'),
    event("a CANCELLED dated 9999 (froze the order for good)",
          order("y9999", orderId="o_freeze", status="CANCELLED")
          | {"occurredAt": "9999-12-31T23:00:00-06:00"},
          "occurredAt is more than 1 hour after stormd received the event"),
    event("occurredAt two hours ahead", cart("ahead") | {"occurredAt": _at(timedelta(hours=2))},
          "occurredAt is more than 1 hour after stormd received the event"),
    event("occurredAt without a zone", cart("nozone") | {"occurredAt": "2026-11-24T10:00:00"},
          "occurredAt: needs a time zone"),
    event("occurredAt in year 1", cart("y1") | {"occurredAt": "0001-01-01T00:00:00+06:00"},
          "occurredAt: is before 1900"),
    event("createdAt in 9998", customer("created", createdAt="9998-01-01T00:00:00Z"),
          "data.createdAt is more than 1 hour after stormd received the event"),
    event("birthday in 9999", customer("bday", birthday="9999-01-01"),
          "data.birthday: is not between 1900 and 2100"),
    event("quantity 10^30 (reached the handlers before)",
          cart("q30", items=[item(quantity="@q")]), "data.items.0.quantity", q=str(10**30)),
    event("quantity 1,000,001", cart("q1m", items=[item(quantity=1_000_001)]),
          "data.items.0.quantity: Input should be less than or equal to 1000000"),
    event("1,001 lines in a cart", cart("lines", items=[item()] * 1001),
          "data.items: List should have at most 1000 items"),
    event("lines adding up past 12 digits", cart("sum", items=[
        item(unitPrice="999999999999.99", quantity=2)]),
          "data: the items add up to more than 12 digits before the point"),
    event("a 301-character product name", env("product.upserted", {
        "productId": "p1", "name": "n" * 301, "category": "c", "price": "1.00"}, "pname"),
          "data.name: String should have at most 300 characters"),
    event("a 65-character promotion code", order("code", promotionCodes=["X" * 65]),
          "data.promotionCodes.0: String should have at most 64 characters"),
    event("storeId not a subject token", customer("tok") | {"storeId": "store h"},
          "storeId: is not one subject token"),
    event("storeId disagrees with the subject", customer("other") | {"storeId": "store_x"},
          "storeId 'store_x' disagrees with subject store 'store_h'"),
    event("type disagrees with the subject", customer("ty"), "disagrees with subject type",
          type_="cart.updated"),
    event("unknown event type", env("cart.teleported", {}, "tele"),
          "unknown event type 'cart.teleported'"),
    event("envelope is a list", b"[1, 2, 3]", "envelope is not a JSON object"),
    event("a 700 KB name", customer("longname", name="n" * 700_000),
          "data.name: String should have at most 200 characters"),
]

# Valid events sent around the corpus: each must be handled.
SAME_ID = "evt-7"


def _controls() -> list[tuple[str, dict]]:
    """(store, envelope) of the events that must be processed."""
    c = dict(env("customer.upserted", {"customerId": "c_same", "name": "Store C"}, SAME_ID),
             storeId="store_c")
    d = dict(env("customer.upserted", {"customerId": "c_same", "name": "Store D"}, SAME_ID),
             storeId="store_d")
    paid = order("freeze_paid") | {"data": {"orderId": "o_freeze", "customerId": "c1",
                                            "status": "PAID", "total": "100.00",
                                            "items": [item()]},
                                   "occurredAt": _at(-timedelta(minutes=50))}
    shipped = env("order.status_changed", {"orderId": "o_freeze", "status": "SHIPPED"},
                  "freeze_shipped", occurredAt=_at(-timedelta(minutes=20)))
    edge = cart("edge", items=[item(unitPrice="999999999999.99")]) | {
        "occurredAt": _at(timedelta(minutes=50))}  # inside every limit
    deep32 = cart("deep32")  # 32 levels exactly: the envelope, data, items, item, ...
    deep32["data"]["extra"] = json.loads(nested(30))
    return [("store_c", c), ("store_d", d), (STORE, paid), (STORE, shipped), (STORE, edge),
            (STORE, deep32)]


def _metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _rejected() -> float:
    """stormd_events_total{outcome="rejected"} over every type."""
    return sum(s.value for m in REGISTRY.collect() if m.name == "stormd_events"
               for s in m.samples
               if s.name == "stormd_events_total" and s.labels["outcome"] == "rejected")


def _restarts() -> dict[str, float]:
    return {c: _metric("stormd_component_restarts_total", component=c) for c in COMPONENTS}


async def _dead_letters(js, n: int) -> dict[bytes, object]:
    sub = await js.pull_subscribe(f"{PREFIX}.dlq.>", durable=None, stream="STORMD_DLQ")
    got: list = []
    while len(got) < n:
        got += await sub.fetch(n - len(got), timeout=20)
    return {m.data: m for m in got}


def _sign(secret: str, raw: bytes, header: str) -> dict:
    return {header: hub_signature(secret, raw), "content-type": "application/json"}


def _outbox(receipts: list[dict], rid: str, *, signed: bool = True) -> tuple[str, bytes, dict]:
    raw = json.dumps({"id": rid, "receipts": receipts}).encode()
    headers = _sign(OUTBOX_SECRET, raw, "X-Stormd-Signature") if signed else {}
    return "/webhooks/outbox", raw, headers


def _meta(timestamp) -> tuple[str, bytes, dict]:
    raw = json.dumps({"entry": [{"changes": [{"value": {"statuses": [
        {"id": "wamid.1", "status": "delivered", "timestamp": timestamp}]}}]}]}).encode()
    return "/webhooks/meta", raw, _sign(META_SECRET, raw, "X-Hub-Signature-256")


def _receipt(**kw) -> dict:
    return {"messageId": "outbox-1", "status": "delivered", **kw}


WEBHOOK_CASES = [
    Case("outbox receipt whose at has no zone (was a 500)",
         _outbox([_receipt(at="2026-11-30T10:00:00")], "w1"), HTTP_4XX, (400, "time zone")),
    Case("Meta status with a huge timestamp (was a 500)",
         _meta("99999999999999999999"), HTTP_4XX, (400, "timestamp is not a Unix time")),
    Case("Meta status with a timestamp that is no number", _meta("soon"), HTTP_4XX,
         (400, "timestamp is not a Unix time")),
    Case("outbox receipt dated 9999", _outbox([_receipt(at="9999-01-01T00:00:00Z")], "w4"),
         HTTP_4XX, (400, "out of range")),
    Case("outbox receipt with a 5,000-character url",
         _outbox([_receipt(url="https://x.example/" + "a" * 5000)], "w5"), HTTP_4XX,
         (400, "url longer than 1000 characters")),
    Case("outbox request id with NUL", _outbox([_receipt()], "w\u00006"), HTTP_4XX,
         (400, "request id")),
    Case("outbox receipt unsigned", _outbox([_receipt()], "w7", signed=False), HTTP_4XX,
         (401, "X-Stormd-Signature")),
    Case("outbox receipt not JSON", ("/webhooks/outbox", b"{oops",
                                     _sign(OUTBOX_SECRET, b"{oops", "X-Stormd-Signature")),
         HTTP_4XX, (400, "not an outbox receipt")),
    Case("a body over 1 MiB", ("/webhooks/outbox", b"x" * (1024 * 1024 + 1), {}), HTTP_4XX,
         (413, "too large")),
    Case("a provider that does not exist", ("/webhooks/nobody", b"{}", {}), HTTP_4XX,
         (404, "no webhook")),
]


async def test_hostile_events_and_webhooks_through_a_real_daemon(
        daemon_settings, start_daemon, js, sessionmaker):
    settings = daemon_settings(providers={
        "outbox": {"webhook_secret": OUTBOX_SECRET},
        "meta": {"access_token": "t", "phone_number_id": "1", "app_secret": META_SECRET}})
    d = await start_daemon(settings)
    restarts, rejected = _restarts(), _rejected()
    tally = Tally("intake corpus (events)")

    async def handled() -> int:
        async with sessionmaker() as session:
            return await session.scalar(select(func.count()).select_from(ProcessedEvent))

    controls = _controls()
    await publish(js, controls[2][1])  # the order, PAID, before its 9999 CANCELLED
    await eventually(lambda: _is(handled, 1))
    for case in EVENT_CASES:
        subject, raw = case.input
        await js.publish(subject, raw)
    for _, control in controls[:2] + controls[3:]:
        await publish(js, control)

    letters = await _dead_letters(js, len(EVENT_CASES))
    for case in EVENT_CASES:
        letter = letters.get(case.input[1])
        seen = None if letter is None else letter.headers.get("Stormd-Error")
        tally.check(case, seen is not None and case.detail in seen, seen)
    await eventually(lambda: _is(handled, len(controls)), timeout=30)
    async with sessionmaker() as session:
        names = dict((await session.execute(
            select(Customer.store_id, Customer.name).where(Customer.customer_id == "c_same")
        )).all())
        status = await session.scalar(select(Order.status).where(
            Order.store_id == STORE, Order.order_id == "o_freeze"))
    for store_id, control in controls:
        tally.check(Case(f"control {control['id']} of {store_id}", control, PROCESSED),
                    True, None)
    assert names == {"store_c": "Store C", "store_d": "Store D"}  # one id, two stores
    assert status == "SHIPPED"  # the CANCELLED dated 9999 froze nothing

    web_tally = Tally("intake corpus (webhooks)")
    host, port = d.http.bound["http"]
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        for case in WEBHOOK_CASES:
            path, raw, headers = case.input
            resp = await client.post(path, content=raw, headers=headers)
            status_code, words = case.detail
            web_tally.check(case, resp.status_code == status_code and words in resp.text,
                            (resp.status_code, resp.text.strip()))
        ready = await client.get("/readyz")

    # Zero silent stops: a normal event after the corpus is handled.
    await publish(js, customer("after", name="Karim"))
    await eventually(lambda: _is(handled, len(controls) + 1), timeout=15)
    # Zero crashes: no part failed or restarted; every hostile event counted as rejected.
    assert ready.status_code == 200, ready.text
    assert _restarts() == restarts
    assert _rejected() - rejected == len(EVENT_CASES)
    tally.assert_all()
    web_tally.assert_all()


async def _is(count, n: int) -> bool:
    return await count() == n


# --- configuration values: refused with one line, no secret echoed; or printed masked ------
def _config(tmp_path: Path, toml: str) -> str:
    path = tmp_path / "stormd.toml"
    path.write_text(toml)
    return str(path)


CONFIG_CASES = [
    Case("dedupe horizon inside the duplicate window", '[nats]\ndedupe_horizon = "1m"\n',
         CONFIG_ERROR, "nats.dedupe_horizon: must be longer than nats.duplicate_window (2m)"),
    Case("dedupe horizon no duration", '[nats]\ndedupe_horizon = "a week"\n', CONFIG_ERROR,
         'nats.dedupe_horizon: "a week" is not a duration'),
    Case("embedded port out of range", "[nats]\nembedded_port = 70000\n", CONFIG_ERROR,
         "nats.embedded_port: "),
    Case("a bad env: value is not echoed", '[nats]\nmax_deliver = "env:CORPUS_MAXD"\n',
         CONFIG_ERROR, "nats.max_deliver: ******** is invalid"),
    Case("a bad env: duration is not echoed", '[carts]\nabandon_after = "env:CORPUS_DUR"\n',
         CONFIG_ERROR, "carts.abandon_after: ******** is not a duration"),
    Case("a provider's bad env: value is not echoed",
         '[providers.sslwireless]\napi_token = "t"\nsid = "s"\nrate_limit = "env:CORPUS_RL"\n',
         CONFIG_ERROR, "providers.sslwireless: "),
    Case("a NATS URL with a token", '[nats]\nurl = "nats://s3cr3t-token@nats.example:4222"\n',
         MASKED, "nats://********@nats.example:4222"),
    Case("two NATS servers with passwords",
         '[nats]\nurl = "nats://u:pw-one@a.example:4222,nats://u:pw-two@b.example:4222"\n',
         MASKED, "nats://u:********@a.example:4222,nats://u:********@b.example:4222"),
    Case("a database URL with ?password=",
         '[database]\nurl = "postgresql+asyncpg://stormd@db/stormd?password=pg-s3cr3t"\n',
         MASKED, "postgresql+asyncpg://stormd@db/stormd?password=********"),
]
CONFIG_SECRETS = {"CORPUS_MAXD": "maxd-s3cr3t", "CORPUS_DUR": "dur-s3cr3t",
                  "CORPUS_RL": "rl-s3cr3t"}
SECRET_WORDS = ("maxd-s3cr3t", "dur-s3cr3t", "rl-s3cr3t", "s3cr3t-token", "pw-one", "pw-two",
                "pg-s3cr3t")


def test_hostile_configuration_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tally = Tally("intake corpus (configuration)")
    for case in CONFIG_CASES:
        result = CliRunner().invoke(cli, ["config", "check", "--config",
                                          _config(tmp_path, case.input)], env=CONFIG_SECRETS)
        output = result.output
        leaked = [w for w in SECRET_WORDS if w in output]
        if case.outcome == CONFIG_ERROR:
            lines = output.strip().splitlines()
            ok = (result.exit_code == 2 and len(lines) == 1 and case.detail in lines[0]
                  and not leaked)
        else:
            ok = result.exit_code == 0 and case.detail in output and not leaked
        tally.check(case, ok, (result.exit_code, output[-300:]))
    tally.assert_all()
