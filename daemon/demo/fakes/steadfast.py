"""A local Steadfast Courier API (V1): create a consignment, read its status, webhooks.

Wire format, under /api/v1 (the real base is https://portal.packzy.com/api/v1):
- Every request carries headers Api-Key and Secret-Key.
- POST /create_order {invoice (unique, letters, digits, - and _), recipient_name (<= 100),
  recipient_phone (11 digits), recipient_address (<= 250), cod_amount (>= 0), note,
  item_description, delivery_type 0|1} -> {"status": 200, "message": "Consignment has been
  created successfully.", "consignment": {consignment_id, invoice, tracking_code,
  recipient_name, recipient_phone, recipient_address, cod_amount, status "in_review", note,
  created_at, updated_at}}.
- GET /status_by_cid/{id}, /status_by_invoice/{invoice}, /status_by_trackingcode/{code} ->
  {"status": 200, "delivery_status": "in_review"}; delivery statuses pending,
  delivered_approval_pending, partial_delivered_approval_pending, cancelled_approval_pending,
  unknown_approval_pending, delivered, partial_delivered, cancelled, hold, in_review, unknown.
- GET /get_balance -> {"status": 200, "current_balance": 0}.
  Steadfast's API documentation (https://docs.google.com/document/d/e/2PACX-1vTi0sTyR353xu1AK
  0nR8E_WKe5onCkUXGEf8ch8uoJy9qxGfgGnboSIkNosjQ0OOdXkJhgGuAsWxnIh/pub).
- Webhooks (merchant panel, "Webhook Integration"): POST to the callback URL with
  Authorization: Bearer <the auth token the merchant entered>; bodies {"notification_type":
  "delivery_status", consignment_id, invoice, cod_amount, status, delivery_charge,
  tracking_message, updated_at "YYYY-MM-DD HH:MM:SS"} and {"notification_type":
  "tracking_update", consignment_id, invoice, tracking_message, updated_at}; the merchant
  answers 200.

Inferred, not documented: error bodies. Validation failures answer HTTP 400 with {"status":
400, "message", "errors": {field: [messages]}} (what integrators record, e.g. "The invoice has
already been taken."); bad keys answer 401 {"message": "Unauthenticated."}; an unknown
consignment answers 404 {"status": 404, "message": "Consignment not found."}. Clients should
read the body's "status" as well as the HTTP status.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ._server import Clock, Delivery, FakeServer, compact_json, read_json

_DHAKA = timezone(timedelta(hours=6))
_INVOICE = re.compile(r"^[A-Za-z0-9_-]+$")
DELIVERY_STATUSES = (
    "pending", "delivered_approval_pending", "partial_delivered_approval_pending",
    "cancelled_approval_pending", "unknown_approval_pending", "delivered",
    "partial_delivered", "cancelled", "hold", "in_review", "unknown",
)


@dataclass
class Consignment:
    consignment_id: int
    invoice: str
    tracking_code: str
    recipient_name: str
    recipient_phone: str
    recipient_address: str
    cod_amount: Decimal
    note: str | None
    created_at: str
    status: str = "in_review"
    updated_at: str = ""
    delivery_charge: Decimal = Decimal("60")
    history: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"consignment_id": self.consignment_id, "invoice": self.invoice,
                "tracking_code": self.tracking_code, "recipient_name": self.recipient_name,
                "recipient_phone": self.recipient_phone,
                "recipient_address": self.recipient_address,
                "cod_amount": _number(self.cod_amount), "status": self.status, "note": self.note,
                "created_at": self.created_at, "updated_at": self.updated_at}


class SteadfastError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message"))
        self.status = status
        self.body = body

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


class FakeSteadfast(FakeServer):
    """One merchant account; webhooks go to `callback_url` with `webhook_token` as Bearer."""

    def __init__(self, *, api_key: str = "demo-api-key", secret_key: str = "demo-secret-key",
                 callback_url: str | None = None, webhook_token: str = "demo-webhook-token",
                 delivery_charge: Decimal | int = 60, clock: Clock | None = None):
        self.api_key = api_key
        self.secret_key = secret_key
        self.callback_url = callback_url
        self.webhook_token = webhook_token
        self.delivery_charge = Decimal(delivery_charge)
        self.balance = Decimal(0)
        self.consignments: dict[int, Consignment] = {}
        self._next_id = 1424107
        super().__init__(clock=clock)

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/create_order", self._create)
        router.add_get("/api/v1/status_by_cid/{key}", self._status_by("cid"))
        router.add_get("/api/v1/status_by_invoice/{key}", self._status_by("invoice"))
        router.add_get("/api/v1/status_by_trackingcode/{key}", self._status_by("tracking"))
        router.add_get("/api/v1/get_balance", self._balance)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v1"

    # ---------------------------------------------------------------- for tests and the demo

    def by_invoice(self, invoice: str) -> Consignment | None:
        return next((c for c in self.consignments.values() if c.invoice == invoice), None)

    async def advance(self, consignment_id: int, status: str, *,
                      tracking_message: str | None = None,
                      cod_amount: Decimal | int | None = None) -> Delivery | None:
        """Set a delivery status (recorded for polling) and post the delivery_status webhook."""
        if status not in DELIVERY_STATUSES:
            raise ValueError(f"unknown Steadfast delivery status {status!r}")
        consignment = self.consignments[consignment_id]
        consignment.status = status
        consignment.history.append(status)
        if cod_amount is not None:
            consignment.cod_amount = Decimal(cod_amount)
        if status in ("delivered", "partial_delivered"):
            self.balance += consignment.cod_amount - consignment.delivery_charge
        consignment.updated_at = self._stamp()
        return await self._post({
            "notification_type": "delivery_status",
            "consignment_id": consignment.consignment_id,
            "invoice": consignment.invoice,
            "cod_amount": _number(consignment.cod_amount),
            "status": status,
            "delivery_charge": _number(consignment.delivery_charge),
            "tracking_message": tracking_message or _MESSAGES.get(status, status),
            "updated_at": consignment.updated_at,
        })

    async def track(self, consignment_id: int, tracking_message: str) -> Delivery | None:
        """A tracking_update webhook: news about the parcel without a status change."""
        consignment = self.consignments[consignment_id]
        return await self._post({
            "notification_type": "tracking_update",
            "consignment_id": consignment.consignment_id,
            "invoice": consignment.invoice,
            "tracking_message": tracking_message,
            "updated_at": self._stamp(),
        })

    def _stamp(self) -> str:
        return self.clock().astimezone(_DHAKA).strftime("%Y-%m-%d %H:%M:%S")

    async def _post(self, payload: dict[str, Any]) -> Delivery | None:
        if not self.callback_url:
            return None
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.webhook_token}"}
        return await self.call_merchant("POST", self.callback_url, body=compact_json(payload),
                                        headers=headers)

    # ---------------------------------------------------------------- the API

    def _authorize(self, request: web.Request) -> None:
        key, secret = request.headers.get("Api-Key", ""), request.headers.get("Secret-Key", "")
        if not (hmac.compare_digest(key, self.api_key)
                and hmac.compare_digest(secret, self.secret_key)):
            raise SteadfastError(401, {"message": "Unauthenticated."})

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await read_json(request)
            consignment = self._validated(body if isinstance(body, dict) else {})
        except SteadfastError as error:
            return error.response()
        self.consignments[consignment.consignment_id] = consignment
        return web.json_response({"status": 200,
                                  "message": "Consignment has been created successfully.",
                                  "consignment": consignment.as_json()})

    def _validated(self, body: dict[str, Any]) -> Consignment:
        errors: dict[str, list[str]] = {}
        for name in ("invoice", "recipient_name", "recipient_phone", "recipient_address",
                     "cod_amount"):
            if body.get(name) in (None, ""):
                errors.setdefault(name, []).append(f"The {name.replace('_', ' ')} field is required.")
        invoice = str(body.get("invoice") or "")
        if invoice and not _INVOICE.match(invoice):
            errors.setdefault("invoice", []).append("The invoice format is invalid.")
        elif invoice and self.by_invoice(invoice) is not None:
            errors.setdefault("invoice", []).append("The invoice has already been taken.")
        name = str(body.get("recipient_name") or "")
        if len(name) > 100:
            errors.setdefault("recipient_name", []).append(
                "The recipient name may not be greater than 100 characters.")
        phone = str(body.get("recipient_phone") or "")
        if phone and not re.fullmatch(r"\d{11}", phone):
            errors.setdefault("recipient_phone", []).append(
                "The recipient phone must be 11 digits.")
        address = str(body.get("recipient_address") or "")
        if len(address) > 250:
            errors.setdefault("recipient_address", []).append(
                "The recipient address may not be greater than 250 characters.")
        try:
            cod = Decimal(str(body.get("cod_amount")))
            if cod < 0 or not cod.is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            cod = Decimal(0)
            if body.get("cod_amount") not in (None, ""):
                errors.setdefault("cod_amount", []).append(
                    "The cod amount must be a number of at least 0.")
        if body.get("delivery_type") not in (None, 0, 1, "0", "1"):
            errors.setdefault("delivery_type", []).append("The selected delivery type is invalid.")
        if errors:
            first = next(iter(errors.values()))[0]
            raise SteadfastError(400, {"status": 400, "message": first, "errors": errors})
        now = self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        consignment = Consignment(
            consignment_id=self._next_id, invoice=invoice,
            tracking_code=secrets.token_hex(4).upper(), recipient_name=name,
            recipient_phone=phone, recipient_address=address, cod_amount=cod,
            note=body.get("note"), created_at=now, updated_at=now,
            delivery_charge=self.delivery_charge)
        self._next_id += 1
        return consignment

    def _status_by(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            try:
                self._authorize(request)
                key = request.match_info["key"]
                if kind == "cid":
                    found = self.consignments.get(int(key)) if key.isdigit() else None
                elif kind == "invoice":
                    found = self.by_invoice(key)
                else:
                    found = next((c for c in self.consignments.values()
                                  if c.tracking_code == key), None)
                if found is None:
                    raise SteadfastError(404, {"status": 404,
                                               "message": "Consignment not found."})
            except SteadfastError as error:
                return error.response()
            return web.json_response({"status": 200, "delivery_status": found.status})
        return handler

    async def _balance(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except SteadfastError as error:
            return error.response()
        return web.json_response({"status": 200, "current_balance": _number(self.balance)})


_MESSAGES = {
    "pending": "Your package is on its way.",
    "delivered": "Your package has been delivered successfully.",
    "partial_delivered": "Your package has been partially delivered.",
    "cancelled": "Your package has been cancelled.",
    "hold": "Your package is on hold.",
    "in_review": "Your order is placed and waiting to be reviewed.",
}


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
