"""A local Pathao Courier Merchant API: token, orders, order info and status webhooks.

Wire format:
- POST /aladdin/api/v1/issue-token {client_id, client_secret, grant_type "password",
  username, password} or {client_id, client_secret, grant_type "refresh_token",
  refresh_token} -> {token_type "Bearer", expires_in 432000, access_token, refresh_token}.
- POST /aladdin/api/v1/orders (Authorization: Bearer) {store_id, merchant_order_id,
  recipient_name (3-100), recipient_phone (11), recipient_address (10-220), delivery_type
  48|12, item_type 1|2, item_quantity, item_weight 0.5-10, amount_to_collect, ...} ->
  {"message": "Order Created Successfully", "type": "success", "code": 200, "data":
  {consignment_id, merchant_order_id, order_status "Pending", delivery_fee}}.
- GET /aladdin/api/v1/orders/{consignment_id}/info -> {"message": "Order info", "type",
  "code", "data": {consignment_id, merchant_order_id, order_status, order_status_slug,
  updated_at, invoice_id}}.
  Pathao's merchant API documentation (merchant.pathao.com/courier/developer-api), as copied
  in public repositories.
- Webhooks: before saving a callback URL Pathao posts {"event": "webhook_integration"} and
  requires HTTP 202 with header X-Pathao-Merchant-Webhook-Integration-Secret
  (f3992ecc-59da-4cbe-a049-a13da2018d51); every event then carries the merchant's webhook
  secret in the X-PATHAO-Signature header (compared as is, not an HMAC) and a body
  {consignment_id, merchant_order_id, updated_at, timestamp, store_id, event, ...} with events
  order.created, order.pickup-requested, order.picked, order.in-transit, order.delivered,
  order.returned, ... Sources: Pathao's own WooCommerce plugin
  (github.com/pathao-eng/courier-woocommerce-plugin, plugin-api.php: header check, 202
  answer, the event -> status map Pickup_Requested, Picked, In_Transit, Delivered, Return...)
  and the merchant panel's webhook page (sample payloads per event).

Inferred, not documented: error bodies. Token errors follow Laravel Passport, which the
issue-token endpoint is (invalid_client 401, invalid_grant 400, {error, error_description,
message}); an API call without a valid token answers 401 {"message": "Unauthenticated."};
validation errors answer 422 in the success envelope's shape with "errors": {field:
[messages]}; an unknown consignment answers 404 in the same shape.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from typing import Any

from aiohttp import web

from ._server import Clock, Delivery, FakeServer, compact_json, read_json

INTEGRATION_HEADER = "X-Pathao-Merchant-Webhook-Integration-Secret"
INTEGRATION_SECRET = "f3992ecc-59da-4cbe-a049-a13da2018d51"
SIGNATURE_HEADER = "X-PATHAO-Signature"
_DHAKA = timezone(timedelta(hours=6))

# Webhook event -> order_status_slug, as Pathao's plugin maps them.
EVENTS: dict[str, str] = {
    "order.created": "Pending",
    "order.updated": "Order_Updated",
    "order.pickup-requested": "Pickup_Requested",
    "order.assigned-for-pickup": "Assigned_for_Pickup",
    "order.picked": "Picked",
    "order.pickup-failed": "Pickup_Failed",
    "order.pickup-cancelled": "Pickup_Cancelled",
    "order.at-the-sorting-hub": "At_the_Sorting_HUB",
    "order.in-transit": "In_Transit",
    "order.received-at-last-mile-hub": "Received_at_Last_Mile_HUB",
    "order.assigned-for-delivery": "Assigned_for_Delivery",
    "order.delivered": "Delivered",
    "order.partial-delivery": "Partial_Delivery",
    "order.returned": "Return",
    "order.delivery-failed": "Delivery_Failed",
    "order.on-hold": "On_Hold",
    "order.paid-return": "paid_return",
    "order.exchanged": "exchange",
    "order.paid": "Payment_Invoice",
}
# A cash-on-delivery parcel's usual journey after it is created.
DELIVERED_PATH = (
    "order.pickup-requested", "order.assigned-for-pickup", "order.picked",
    "order.at-the-sorting-hub", "order.in-transit", "order.received-at-last-mile-hub",
    "order.assigned-for-delivery", "order.delivered",
)


@dataclass
class Order:
    consignment_id: str
    merchant_order_id: str | None
    store_id: int
    recipient_name: str
    recipient_phone: str
    recipient_address: str
    amount_to_collect: int
    delivery_fee: float
    status_slug: str = "Pending"
    updated_at: str = ""
    invoice_id: str | None = None
    events: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.status_slug.replace("_", " ")


class PathaoError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message"))
        self.status = status
        self.body = body

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


def _passport(status: int, error: str, description: str) -> PathaoError:
    return PathaoError(status, {"error": error, "error_description": description,
                                "message": description})


class FakePathao(FakeServer):
    """One merchant with one or more stores; a webhook only after a passed integration check."""

    def __init__(self, *, client_id: str = "demo-client-id", client_secret: str = "demo-client-secret",
                 username: str = "merchant@example.com", password: str = "demo-password",
                 store_ids: tuple[int, ...] = (130820,), webhook_secret: str = "demo-webhook-secret",
                 delivery_fee: float = 80, token_lifetime: int = 432000,
                 clock: Clock | None = None):
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.store_ids = set(store_ids)
        self.webhook_secret = webhook_secret
        self.delivery_fee = delivery_fee
        self.token_lifetime = token_lifetime
        self.callback_url: str | None = None
        self.orders: dict[str, Order] = {}
        self.tokens: dict[str, float] = {}
        self.refresh_tokens: set[str] = set()
        super().__init__(clock=clock)

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/aladdin/api/v1/issue-token", self._issue_token)
        router.add_post("/aladdin/api/v1/orders", self._create)
        router.add_get("/aladdin/api/v1/orders/{consignment_id}/info", self._info)

    # ---------------------------------------------------------------- for tests and the demo

    def order_by_merchant_id(self, merchant_order_id: str) -> Order | None:
        return next((o for o in self.orders.values()
                     if o.merchant_order_id == merchant_order_id), None)

    async def integrate_webhook(self, callback_url: str) -> bool:
        """Pathao's check before it saves a callback URL; events flow only once it passed."""
        delivery = await self.call_merchant(
            "POST", callback_url, body=compact_json({"event": "webhook_integration"}),
            headers=self._webhook_headers())
        passed = (delivery.status == 202
                  and delivery.response_headers.get(INTEGRATION_HEADER) == INTEGRATION_SECRET)
        if passed:
            self.callback_url = callback_url
        return passed

    async def advance(self, consignment_id: str, event: str, *, reason: str | None = None,
                      collected_amount: int | None = None) -> Delivery | None:
        """Move a consignment on: records the status for polling and posts the webhook."""
        if event not in EVENTS:
            raise ValueError(f"unknown Pathao event {event!r}")
        order = self.orders[consignment_id]
        order.status_slug = EVENTS[event]
        order.events.append(event)
        extra: dict[str, Any] = {}
        if event in ("order.created", "order.updated", "order.pickup-requested"):
            extra["delivery_fee"] = order.delivery_fee
        if event == "order.partial-delivery":
            extra["collected_amount"] = collected_amount if collected_amount is not None else 0
        if event == "order.paid":
            order.invoice_id = order.invoice_id or secrets.token_hex(7).upper()
            extra["invoice_id"] = order.invoice_id
        if reason is not None:
            extra["reason"] = reason
        return await self._post_event(order, event, extra)

    async def advance_through(self, consignment_id: str,
                              events: tuple[str, ...] = DELIVERED_PATH) -> list[Delivery | None]:
        return [await self.advance(consignment_id, event) for event in events]

    def _webhook_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: self.webhook_secret}

    async def _post_event(self, order: Order, event: str,
                          extra: dict[str, Any]) -> Delivery | None:
        now = self.clock()
        order.updated_at = now.astimezone(_DHAKA).strftime("%Y-%m-%d %H:%M:%S")
        if not self.callback_url:
            return None
        payload = {
            "consignment_id": order.consignment_id,
            "merchant_order_id": order.merchant_order_id,
            "updated_at": order.updated_at,
            "timestamp": now.astimezone(UTC).isoformat(timespec="seconds"),
            "store_id": order.store_id,
            "event": event,
            **extra,
        }
        return await self.call_merchant("POST", self.callback_url, body=compact_json(payload),
                                        headers=self._webhook_headers())

    # ---------------------------------------------------------------- the API

    async def _issue_token(self, request: web.Request) -> web.Response:
        body = await read_json(request) or {}
        try:
            if body.get("client_id") != self.client_id or not hmac.compare_digest(
                    str(body.get("client_secret", "")), self.client_secret):
                raise _passport(401, "invalid_client", "Client authentication failed")
            grant = body.get("grant_type")
            if grant == "password":
                if body.get("username") != self.username or not hmac.compare_digest(
                        str(body.get("password", "")), self.password):
                    raise _passport(400, "invalid_grant", "The user credentials were incorrect.")
            elif grant == "refresh_token":
                if body.get("refresh_token") not in self.refresh_tokens:
                    raise _passport(400, "invalid_request", "The refresh token is invalid.")
                self.refresh_tokens.discard(body["refresh_token"])
            else:
                raise _passport(400, "unsupported_grant_type",
                                "The authorization grant type is not supported by the"
                                " authorization server.")
        except PathaoError as error:
            return error.response()
        access, refresh = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
        self.tokens[access] = self.clock().timestamp() + self.token_lifetime
        self.refresh_tokens.add(refresh)
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                                  "access_token": access, "refresh_token": refresh})

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= self.clock().timestamp():
            raise PathaoError(401, {"message": "Unauthenticated."})

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await read_json(request)
            order = self._validated_order(body if isinstance(body, dict) else {})
        except PathaoError as error:
            return error.response()
        self.orders[order.consignment_id] = order
        order.events.append("order.created")
        order.updated_at = self.clock().astimezone(_DHAKA).strftime("%Y-%m-%d %H:%M:%S")
        self.later(self._post_event(order, "order.created", {"delivery_fee": order.delivery_fee}))
        return web.json_response({
            "message": "Order Created Successfully", "type": "success", "code": 200,
            "data": {"consignment_id": order.consignment_id,
                     "merchant_order_id": order.merchant_order_id,
                     "order_status": "Pending", "delivery_fee": order.delivery_fee},
        })

    def _validated_order(self, body: dict[str, Any]) -> Order:
        errors: dict[str, list[str]] = {}

        def need(name: str) -> Any:
            value = body.get(name)
            if value in (None, ""):
                errors.setdefault(name, []).append(f"The {name.replace('_', ' ')} field is required.")
            return value

        store_id = need("store_id")
        name, phone, address = need("recipient_name"), need("recipient_phone"), need("recipient_address")
        delivery_type, item_type = need("delivery_type"), need("item_type")
        quantity, weight, amount = need("item_quantity"), need("item_weight"), need("amount_to_collect")
        if store_id not in (None, "") and _int(store_id) not in self.store_ids:
            errors.setdefault("store_id", []).append("The selected store id is invalid.")
        if name and not 3 <= len(str(name)) <= 100:
            errors.setdefault("recipient_name", []).append(
                "The recipient name must be between 3 and 100 characters.")
        if phone and not re.fullmatch(r"01\d{9}", str(phone)):
            errors.setdefault("recipient_phone", []).append("The recipient phone format is invalid.")
        if address and not 10 <= len(str(address)) <= 220:
            errors.setdefault("recipient_address", []).append(
                "The recipient address must be between 10 and 220 characters.")
        if delivery_type not in (None, "") and _int(delivery_type) not in (48, 12):
            errors.setdefault("delivery_type", []).append("The selected delivery type is invalid.")
        if item_type not in (None, "") and _int(item_type) not in (1, 2):
            errors.setdefault("item_type", []).append("The selected item type is invalid.")
        if quantity not in (None, "") and (_int(quantity) or 0) < 1:
            errors.setdefault("item_quantity", []).append("The item quantity must be at least 1.")
        if weight not in (None, "") and not 0.5 <= (_float(weight) or 0) <= 10:
            errors.setdefault("item_weight", []).append(
                "The item weight must be between 0.5 and 10.")
        if amount not in (None, "") and (_int(amount) is None or _int(amount) < 0):
            errors.setdefault("amount_to_collect", []).append(
                "The amount to collect must be an integer of at least 0.")
        if errors:
            raise PathaoError(422, {"message": "Please fix the given errors", "type": "error",
                                    "code": 422, "errors": errors})
        now = self.clock().astimezone(_DHAKA)
        consignment_id = f"D{now:%d%m%y}" + secrets.token_hex(3).upper()
        merchant_order_id = body.get("merchant_order_id")
        return Order(consignment_id=consignment_id,
                     merchant_order_id=str(merchant_order_id) if merchant_order_id else None,
                     store_id=int(store_id), recipient_name=str(name), recipient_phone=str(phone),
                     recipient_address=str(address), amount_to_collect=int(amount),
                     delivery_fee=self.delivery_fee)

    async def _info(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            order = self.orders.get(request.match_info["consignment_id"])
            if order is None:
                raise PathaoError(404, {"message": "Order not found", "type": "error",
                                        "code": 404})
        except PathaoError as error:
            return error.response()
        return web.json_response({
            "message": "Order info", "type": "success", "code": 200,
            "data": {"consignment_id": order.consignment_id,
                     "merchant_order_id": order.merchant_order_id,
                     "order_status": order.status, "order_status_slug": order.status_slug,
                     "updated_at": order.updated_at, "invoice_id": order.invoice_id},
        })


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
