"""A local RedX OpenAPI (v1.0.0-beta): create a parcel, read and track it, status webhooks.

Wire format, under /v1.0.0-beta (the real bases are openapi.redx.com.bd and
sandbox.redx.com.bd):
- Every request carries `API-ACCESS-TOKEN: Bearer <token>`.
- POST /parcel {customer_name, customer_phone, delivery_area, delivery_area_id,
  customer_address, merchant_invoice_id, cash_collection_amount, parcel_weight (grams), value,
  instruction, pickup_store_id, parcel_details_json} -> {"tracking_id": "..."}.
- GET /parcel/info/{tracking_id} -> {"parcel": {tracking_id, customer_address, delivery_area,
  delivery_area_id, charge, customer_name, customer_phone, cash_collection_amount,
  parcel_weight, merchant_invoice_id, status, instruction, created_at, delivery_type, value,
  pickup_location}}; a new parcel is "pickup-pending".
- GET /parcel/track/{tracking_id} -> {"tracking": [{message_en, message_bn, time}]}.
- GET /areas -> {"areas": [{id, name, post_code, division_name, zone_id}]}.
- Webhooks: POST to the merchant's callback URL, credentials carried in that URL's query
  (e.g. ?token=...), body {tracking_number, timestamp, status, message_en, message_bn,
  invoice_number}; statuses ready-for-delivery, delivery-in-progress, delivered, agent-hold,
  agent-returning, returned, agent-area-change.
  RedX's OpenAPI documentation (merchant panel, "Developer API"; no public URL was found, so
  this follows the copy kept in public repositories and the SDKs built on it).

Inferred, not documented: error bodies. A bad token answers 401 {"message": "Unauthorized"};
a refused parcel answers 400 {"message", "validation_errors": {field: message}}; an unknown
tracking id answers 404 {"message": "Parcel not found"}.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ._server import Clock, Delivery, FakeServer, compact_json, read_json

API_VERSION = "v1.0.0-beta"
WEBHOOK_STATUSES: dict[str, tuple[str, str]] = {
    "ready-for-delivery": ("Parcel received at the RedX hub", "পার্সেলটি রেডএক্স হাবে পৌঁছেছে"),
    "delivery-in-progress": ("Parcel is out for delivery", "পার্সেলটি ডেলিভারির পথে"),
    "delivered": ("Parcel delivered", "পার্সেলটি ডেলিভারি সম্পন্ন হয়েছে"),
    "agent-hold": ("Parcel is on hold", "পার্সেলটি হোল্ডে আছে"),
    "agent-returning": ("Parcel is being returned", "পার্সেলটি ফেরত যাচ্ছে"),
    "returned": ("Parcel returned", "পার্সেলটি ফেরত দেওয়া হয়েছে"),
    "agent-area-change": ("Delivery area change in progress", "ডেলিভারি এলাকা পরিবর্তন হচ্ছে"),
}
DELIVERED_PATH = ("ready-for-delivery", "delivery-in-progress", "delivered")
AREAS = (
    {"id": 1, "name": "Mohammadpur(Dhaka)", "post_code": 1207, "division_name": "Dhaka",
     "zone_id": 1},
    {"id": 2, "name": "Dhanmondi", "post_code": 1209, "division_name": "Dhaka", "zone_id": 1},
    {"id": 3, "name": "Gulshan", "post_code": 1212, "division_name": "Dhaka", "zone_id": 1},
    {"id": 12, "name": "Mirpur DOHS", "post_code": 1216, "division_name": "Dhaka", "zone_id": 1},
)


@dataclass
class Parcel:
    tracking_id: str
    customer_name: str
    customer_phone: str
    customer_address: str
    delivery_area: str
    delivery_area_id: int
    cash_collection_amount: Decimal
    parcel_weight: int
    value: str
    merchant_invoice_id: str | None
    instruction: str
    created_at: str
    charge: int = 60
    status: str = "pickup-pending"
    tracking: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tracking_id": self.tracking_id, "customer_address": self.customer_address,
            "delivery_area": self.delivery_area, "delivery_area_id": self.delivery_area_id,
            "charge": self.charge, "customer_name": self.customer_name,
            "customer_phone": self.customer_phone,
            "cash_collection_amount": _number(self.cash_collection_amount),
            "parcel_weight": self.parcel_weight, "merchant_invoice_id": self.merchant_invoice_id,
            "status": self.status, "instruction": self.instruction,
            "created_at": self.created_at, "delivery_type": "regular", "value": self.value,
            "pickup_location": {"id": 1, "name": "Malibag", "address": "Malibagh",
                                "area_name": "Malibag", "area_id": 1},
        }


class RedxError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message"))
        self.status = status
        self.body = body

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


class FakeRedx(FakeServer):
    """One merchant token; webhooks go to `callback_url` (credentials in its query)."""

    def __init__(self, *, access_token: str = "demo-redx-token", callback_url: str | None = None,
                 clock: Clock | None = None):
        self.access_token = access_token
        self.callback_url = callback_url
        self.parcels: dict[str, Parcel] = {}
        super().__init__(clock=clock)

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        prefix = f"/{API_VERSION}"
        router.add_post(f"{prefix}/parcel", self._create)
        router.add_get(f"{prefix}/parcel/info/{{tracking_id}}", self._info)
        router.add_get(f"{prefix}/parcel/track/{{tracking_id}}", self._track)
        router.add_get(f"{prefix}/areas", self._areas)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/{API_VERSION}"

    # ---------------------------------------------------------------- for tests and the demo

    def by_invoice(self, merchant_invoice_id: str) -> Parcel | None:
        return next((p for p in self.parcels.values()
                     if p.merchant_invoice_id == merchant_invoice_id), None)

    async def advance(self, tracking_id: str, status: str) -> Delivery | None:
        """Set a parcel's status (recorded for polling and tracking) and post the webhook."""
        if status not in WEBHOOK_STATUSES:
            raise ValueError(f"unknown RedX status {status!r}")
        parcel = self.parcels[tracking_id]
        parcel.status = status
        message_en, message_bn = WEBHOOK_STATUSES[status]
        stamp = self._stamp()
        parcel.tracking.append({"message_en": message_en, "message_bn": message_bn,
                                "time": stamp})
        if not self.callback_url:
            return None
        payload = {"tracking_number": parcel.tracking_id, "timestamp": stamp, "status": status,
                   "message_en": message_en, "message_bn": message_bn,
                   "invoice_number": parcel.merchant_invoice_id}
        return await self.call_merchant("POST", self.callback_url, body=compact_json(payload),
                                        headers={"Content-Type": "application/json"})

    async def advance_through(self, tracking_id: str,
                              statuses: tuple[str, ...] = DELIVERED_PATH) -> list[Delivery | None]:
        return [await self.advance(tracking_id, status) for status in statuses]

    def _stamp(self) -> str:
        now = self.clock().astimezone(UTC)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

    # ---------------------------------------------------------------- the API

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("API-ACCESS-TOKEN", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not (token and hmac.compare_digest(token, self.access_token)):
            raise RedxError(401, {"message": "Unauthorized"})

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await read_json(request)
            parcel = self._validated(body if isinstance(body, dict) else {})
        except RedxError as error:
            return error.response()
        self.parcels[parcel.tracking_id] = parcel
        parcel.tracking.append({"message_en": "Package is created successfully",
                                "message_bn": "পার্সেলটি সফল ভাবে প্লেস করা হয়েছে",
                                "time": parcel.created_at})
        return web.json_response({"tracking_id": parcel.tracking_id})

    def _validated(self, body: dict[str, Any]) -> Parcel:
        errors: dict[str, str] = {}
        for name in ("customer_name", "customer_phone", "delivery_area", "delivery_area_id",
                     "customer_address", "cash_collection_amount", "parcel_weight", "value"):
            if body.get(name) in (None, ""):
                errors[name] = f"{name} is required"
        area_ids = {area["id"] for area in AREAS}
        area_id = _int(body.get("delivery_area_id"))
        if "delivery_area_id" not in errors and area_id not in area_ids:
            errors["delivery_area_id"] = "delivery_area_id is not a valid area"
        phone = str(body.get("customer_phone") or "")
        if "customer_phone" not in errors and not (phone.isdigit() and len(phone) == 11):
            errors["customer_phone"] = "customer_phone must be an 11 digit number"
        try:
            cash = Decimal(str(body.get("cash_collection_amount")))
            if cash < 0 or not cash.is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            cash = Decimal(0)
            errors.setdefault("cash_collection_amount",
                              "cash_collection_amount must be a number of at least 0")
        weight = _int(body.get("parcel_weight"))
        if "parcel_weight" not in errors and (weight is None or weight <= 0):
            errors["parcel_weight"] = "parcel_weight must be a positive number of grams"
        if errors:
            raise RedxError(400, {"message": "Invalid request", "validation_errors": errors})
        invoice = body.get("merchant_invoice_id")
        return Parcel(
            tracking_id=f"{self.clock():%y}A{secrets.token_hex(5).upper()}",
            customer_name=str(body["customer_name"]), customer_phone=phone,
            customer_address=str(body["customer_address"]),
            delivery_area=str(body["delivery_area"]), delivery_area_id=int(area_id or 0),
            cash_collection_amount=cash, parcel_weight=int(weight or 0),
            value=str(body["value"]), merchant_invoice_id=str(invoice) if invoice else None,
            instruction=str(body.get("instruction") or ""), created_at=self._stamp())

    def _parcel(self, request: web.Request) -> Parcel:
        self._authorize(request)
        parcel = self.parcels.get(request.match_info["tracking_id"])
        if parcel is None:
            raise RedxError(404, {"message": "Parcel not found"})
        return parcel

    async def _info(self, request: web.Request) -> web.Response:
        try:
            parcel = self._parcel(request)
        except RedxError as error:
            return error.response()
        return web.json_response({"parcel": parcel.as_json()})

    async def _track(self, request: web.Request) -> web.Response:
        try:
            parcel = self._parcel(request)
        except RedxError as error:
            return error.response()
        return web.json_response({"tracking": parcel.tracking})

    async def _areas(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except RedxError as error:
            return error.response()
        rows = list(AREAS)
        if "post_code" in request.query:
            rows = [a for a in rows if str(a["post_code"]) == request.query["post_code"]]
        return web.json_response({"areas": rows})


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
