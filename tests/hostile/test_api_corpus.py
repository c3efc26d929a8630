"""Hostile requests to the HTTP API, each with the 4xx it must get, on SQLite and
PostgreSQL: stolen, forged and foreign keys, injection in paths, bodies and criteria,
bodies too big, too deep or holding what no database keeps, sandbox escapes in templates,
far-away dates, forged cursors and conditional headers. None may be a 5xx or change
anything it should not; the daemon stays healthy throughout."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from campaign_data import NOON, add_customers, add_segment, add_store, customer_row
from sqlalchemy import func, select

from stormd.config.loader import settings_from_dict
from stormd.daemon.runtime.app import Daemon
from stormd.handlers.access.keys import create_key, revoke_key
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call
from stormd.handlers.wiring import build_registry
from stormd.schema.marketing.segments import CustomerSegment
from stormd.schema.shop.promotions import DiscountCode

S = "/api/v1/stores/s1"
JSON = {"content-type": "application/json"}
DEEP = b'{"criteria": ' + b'{"not": ' * 40 + b"{}" + b"}" * 40 + b"}"

# (what it tries, method, path, headers, body (bytes or JSON), the status it must get)
CORPUS = [
    ("no key at all", "GET", f"{S}/segments", {"Authorization": ""}, None, 401),
    ("a key with a forged secret", "GET", f"{S}/segments", "forged", None, 401),
    ("a revoked key", "GET", f"{S}/segments", "revoked", None, 401),
    ("a store key on another store's path", "GET", "/api/v1/stores/s2/segments", None, None, 404),
    ("a store key on a store that does not exist", "DELETE",
     "/api/v1/stores/nope/segments/vip", {"If-Match": "*"}, None, 404),
    ("SQL injection in a path", "GET", f"{S}/segments/vip' OR '1'='1", None, None, 422),
    ("SQL in a criteria field name", "POST", f"{S}/segments/preview", None,
     {"criteria": {"orders.total; DROP TABLE customers; --": 1}}, 422),
    ("criteria nested 40 deep", "POST", f"{S}/segments/preview", JSON, DEEP, 400),
    ("an `in` list of 40,000 values", "POST", f"{S}/segments/preview", None,
     {"criteria": {"customer.locale": {"in": [f"v{i}" for i in range(40_000)]}}}, 422),
    ("a body over 1 MiB", "POST", f"{S}/segments", JSON, b'{"name": "' + b"x" * 1_100_000
     + b'"}', 413),
    ("a body that is not JSON", "POST", f"{S}/segments", JSON, b"{'slug': 'x'", 400),
    ("a NUL character in a name", "POST", f"{S}/segments", JSON,
     b'{"slug": "nul", "name": "a\\u0000b", "criteria": {}}', 400),
    ("a lone surrogate in a name", "POST", f"{S}/segments", JSON,
     b'{"slug": "sur", "name": "a\\ud800b", "criteria": {}}', 400),
    ("NaN as a budget", "POST", f"{S}/campaigns", JSON,
     b'{"name": "n", "channels": ["sms"], "template": "win_back", "budget": NaN}', 400),
    ("1e999 as a number", "POST", f"{S}/segments/preview", JSON,
     b'{"criteria": {"orders.total": {"gte": 1e999}}}', 400),
    ("a 400-digit integer", "POST", f"{S}/segments/preview", JSON,
     b'{"criteria": {"orders.count": {"gte": ' + b"9" * 400 + b"}}}", 400),
    ("a NUL in the query", "GET", f"{S}/messages?customerId=c%00", None, None, 400),
    ("a misspelt filter", "GET", f"{S}/campaigns?statsu=SENT", None, None, 422),
    ("a sandbox escape in a template", "PUT", f"{S}/templates/evil", None,
     {"name": "Evil", "content": {"sms": {"en": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}}},
     422),
    ("a template for a channel that does not exist", "PUT", f"{S}/templates/fax", None,
     {"name": "Fax", "content": {"fax": {"en": "Hello"}}}, 422),
    ("a campaign for the year 9999", "POST", f"{S}/campaigns", None,
     {"name": "Far", "channels": ["sms"], "template": "win_back", "discountPercent": 5,
      "sendMode": "at", "scheduledAt": "9999-12-31T23:59:59-12:00"}, 422),
    ("an If-Match that never matched", "PATCH", f"{S}/segments/regulars",
     {"If-Match": '"forged"'}, {"name": "Mine now"}, 412),
    ("a change without If-Match", "PATCH", f"{S}/settings", None, {"name": "Mine"}, 428),
    ("a limit of 100,000", "GET", f"{S}/messages?limit=100000", None, None, 422),
    ("a forged cursor", "GET", f"{S}/segments?cursor=eyJhIjogMX0", None, None, 422),
    ("a JSON body sent as text/plain", "POST", f"{S}/segments/preview",
     {"content-type": "text/plain"}, b'{"criteria": {}}', 422),
    ("a store id of 300 characters", "GET", "/api/v1/stores/" + "s" * 300 + "/segments",
     None, None, 422),
    ("a negative cart total", "GET", f"{S}/discounts/SAVE10-X?cartTotal=-5", None, None, 422),
    ("a redemption for someone else's code", "POST", f"{S}/discounts/SAVE10-X/redeem", None,
     {"customerId": "c2", "orderId": "o1"}, 409),
    ("an order id of 10,000 characters", "POST", f"{S}/discounts/SAVE10-X/redeem", None,
     {"customerId": "c0", "orderId": "o" * 10_000}, 422),
    ("a path that climbs out", "GET", "/api/v1/stores/s1/../../../etc/passwd", None, None, 404),
    ("an unknown method", "PUT", f"{S}/segments", None, {"slug": "x"}, 405),
]


async def _start(db_url: str, nats_url: str, tmp_path) -> tuple[Daemon, dict[str, str]]:
    settings = settings_from_dict({
        "daemon": {"data_dir": str(tmp_path / "data")}, "nats": {"url": nats_url},
        "database": {"url": db_url}, "metrics": {"listen": "127.0.0.1:0"},
        "http": {"listen": "127.0.0.1:0"}})
    daemon = Daemon(settings, registry=build_registry(), timer_poll=0.2)
    await daemon.start()
    call = Call(JobContext(daemon.sessionmaker, settings, daemon.clock, daemon.registry),
                Actor.command_line())
    async with daemon.sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(3)])
        await add_segment(s, "regulars", ["c0"])
        s.add(DiscountCode(store_id="s1", code="SAVE10-X", customer_id="c0",
                           percent=Decimal(10), trigger="win_back", created_at=NOON))
        await s.commit()
    keys = {"s1": (await create_key(call, "s1")).key, "s2": (await create_key(call, "s2")).key}
    revoked = await create_key(call, "s1")
    await revoke_key(call, revoked.id)
    keys["revoked"] = revoked.key
    keys["forged"] = keys["s1"][:-4] + "AAAA"
    return daemon, keys


async def test_hostile_requests_get_their_4xx_and_change_nothing(db_url, nats_server, tmp_path):
    daemon, keys = await _start(db_url, nats_server, tmp_path)
    host, port = daemon.http.bound["http"]
    outcomes: dict[int, int] = {}
    wrong = []
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as client:
            for what, method, path, headers, body, status in CORPUS:
                key = keys[headers] if isinstance(headers, str) else keys["s1"]
                sent = {"Authorization": f"Bearer {key}",
                        **(headers if isinstance(headers, dict) else {})}
                sent = {k: v for k, v in sent.items() if v}
                kwargs = ({"content": body} if isinstance(body, bytes) else
                          {"json": body} if body is not None else {})
                started = time.monotonic()
                reply = await client.request(method, path, headers=sent, **kwargs)
                seconds = time.monotonic() - started
                outcomes[reply.status_code] = outcomes.get(reply.status_code, 0) + 1
                problem = reply.headers.get("content-type", "").startswith("application/problem")
                if reply.status_code != status or not problem or seconds > 5:
                    wrong.append(f"{what}: {reply.status_code} in {seconds:.1f}s "
                                 f"(want {status}): {reply.text[:200]}")
            health = await client.get("/healthz")
        async with daemon.sessionmaker() as s:
            segments = await s.scalar(select(func.count()).select_from(CustomerSegment).where(
                CustomerSegment.store_id == "s1", CustomerSegment.builtin.is_(False)))
            code = await s.scalar(select(DiscountCode).where(DiscountCode.code == "SAVE10-X"))
    finally:
        await daemon.stop()
    print(f"hostile API corpus: {len(CORPUS)} requests, outcomes {dict(sorted(outcomes.items()))}")
    assert wrong == []
    assert len(CORPUS) >= 15 and all(400 <= s < 500 for s in outcomes)
    assert health.status_code == 200
    assert segments == 1 and code.redeemed_at is None  # nothing was created or redeemed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_template_that_fails_or_loops_is_refused_at_save(db_url, nats_server, tmp_path):
    """Saving renders the body with sample data under the limits of a real send: a body
    that raises or loops is refused there (422 naming why), quickly, and nothing is kept."""
    daemon, keys = await _start(db_url, nats_server, tmp_path)
    host, port = daemon.http.bound["http"]
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60,
                                     headers={"Authorization": f"Bearer {keys['s1']}"}) as client:
            failing = await client.put(f"{S}/templates/oops", json={
                "name": "Oops", "content": {"sms": {"en": "{{ name + 1 }}"}}})
            started = time.monotonic()
            looping = await client.put(f"{S}/templates/loop", json={"name": "Loop", "content": {
                "sms": {"en": "{% for i in range(10**9) %}x{% endfor %}"}}})
            seconds = time.monotonic() - started
            kept = await client.get(f"{S}/templates/oops")
    finally:
        await daemon.stop()
    assert failing.status_code == 422 and "TypeError" in failing.json()["detail"]
    assert looping.status_code == 422 and seconds < 6
    assert "range" in looping.json()["detail"]  # the sandbox's limit, said
    assert kept.status_code == 404
