"""A local bKash Tokenized Checkout (URL-based, mode 0011) for SMS credit top-ups.

Wire format, under /<version>/tokenized/checkout/ (v1.2.0-beta; also served without the
version prefix):
- token/grant and token/refresh: headers `username`, `password`; body {app_key, app_secret
  [, refresh_token]} -> {statusCode "0000", statusMessage "Successful", id_token,
  token_type "Bearer", expires_in 3600, refresh_token}.
- create, execute, payment/status: headers `Authorization: <id_token>` (no scheme) and
  `X-APP-Key`; create takes {mode "0011", payerReference, callbackURL, amount, currency
  "BDT", intent "sale", merchantInvoiceNumber} and answers paymentID, bkashURL, the
  success/failure/cancelled callback URLs, transactionStatus "Initiated"; execute answers
  trxID and transactionStatus "Completed".
- The customer pays on bkashURL; bKash then sends the browser to callbackURL with
  ?paymentID=..&status=success|failure|cancel&signature=..&apiVersion=..
- Business errors come back as HTTP 200 with {statusCode, statusMessage}: 2001 Invalid App
  Key, 2002 Invalid Payment ID, 2006 Invalid Amount, 2007 Invalid Currency, 2008 Invalid
  Intent, 2023 Insufficient Balance, 2049 Invalid Merchant Callback URL, 2056 Invalid Payment
  State, 2063 Mode is not valid as per request data, 2065 Mandatory field missing, 2117 Payment
  execution already been called before, 9999 on the token endpoints. A missing or bad id_token
  is refused by the gateway in front: HTTP 401 {"message": "Unauthorized"}, or {"message":
  "The incoming token has expired"}.
Sources: bKash's own WooCommerce plugin (github.com/bKash-developer/bKash-for-woocommerce,
includes/classes/ApiComm.php and ProcessPayments.php: endpoints, headers, callback
parameters, error fields); https://developer.bka.sh (Tokenized Checkout reference and error
code list, as mirrored by github.com/dibakarsutradhar/bkash-rs src/error.rs); sandbox
transcripts published by integrators (create/grant/execute bodies, 2023 and 2117 responses,
the gateway's "Unauthorized" and "The incoming token has expired"); 9999 "Username does not
exist" from github.com/karim-007/laravel-bkash-tokenize issue 2.

Not verified against bKash: the status a payment reports between the customer's approval and
execute (kept "Initiated"), after a cancel or failure ("Cancelled", "Failed"), the refresh
error text, and the exact callback signature (random here; merchants must not trust the
query string anyway and must execute or query the payment).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from ._server import Clock, Delivery, FakeServer, read_json

API_VERSION = "v1.2.0-beta"
_DHAKA = timezone(timedelta(hours=6))
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")
CUSTOMER_OUTCOMES = ("success", "failure", "cancel")


@dataclass
class Payment:
    payment_id: str
    amount: str
    currency: str
    intent: str
    payer_reference: str
    callback_url: str
    merchant_invoice_number: str
    created_at: str
    transaction_status: str = "Initiated"
    customer: str | None = None  # success | failure | cancel, once the customer acted
    signature: str = ""
    trx_id: str | None = None
    executed_at: str | None = None
    customer_msisdn: str = "01770618575"

    def callback(self, status: str) -> str:
        sep = "&" if "?" in self.callback_url else "?"
        query = urlencode({"paymentID": self.payment_id, "status": status,
                           "signature": self.signature, "apiVersion": API_VERSION})
        return f"{self.callback_url}{sep}{query}"


class BkashError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response({"statusCode": self.code, "statusMessage": self.message})


class GatewayRefusal(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def response(self) -> web.Response:
        return web.json_response({"message": self.message}, status=401)


class FakeBkash(FakeServer):
    """One merchant account; tokens last `token_lifetime` seconds of the fake's clock."""

    def __init__(self, *, username: str = "01770000000",
                 password: str = "demo-password", app_key: str = "demo-app-key",
                 app_secret: str = "demo-app-secret",
                 token_lifetime: int = 3600, clock: Clock | None = None):
        self.username = username
        self.password = password
        self.app_key = app_key
        self.app_secret = app_secret
        self.token_lifetime = token_lifetime
        self.payments: dict[str, Payment] = {}
        self.tokens: dict[str, float] = {}  # id_token -> expiry (POSIX seconds)
        self.refresh_tokens: set[str] = set()
        self._injected: dict[str, list[tuple[str, str]]] = {}
        super().__init__(clock=clock)

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        for prefix in (f"/{API_VERSION}/tokenized/checkout", "/tokenized/checkout"):
            router.add_post(f"{prefix}/token/grant", self._grant)
            router.add_post(f"{prefix}/token/refresh", self._refresh)
            router.add_post(f"{prefix}/create", self._create)
            router.add_post(f"{prefix}/execute", self._execute)
            router.add_post(f"{prefix}/payment/status", self._status)
        router.add_get("/redirect/", self._payment_page)

    @property
    def api_url(self) -> str:
        """What a merchant configures as its base URL."""
        return f"{self.base_url}/{API_VERSION}/tokenized/checkout"

    # ---------------------------------------------------------------- for tests and the demo

    def inject_error(self, endpoint: str, status_code: str = "9999",
                     status_message: str = "System Error", *, times: int = 1) -> None:
        """Make the next `times` calls to an endpoint (create, execute, status, grant,
        refresh) answer with this bKash error, e.g. a 9999 outage or 2023 Insufficient Balance.
        """
        self._injected.setdefault(endpoint, []).extend([(status_code, status_message)] * times)

    def expire_tokens(self) -> None:
        """Every id_token issued so far expires now (refresh tokens stay valid)."""
        now = self.clock().timestamp()
        self.tokens = {token: now - 1 for token in self.tokens}

    def customer_acts(self, payment_id: str, outcome: str) -> str:
        """The customer pays (success), fails (failure) or cancels on bKash's page.

        Returns the callback URL bKash sends the browser to; `customer_returns` also visits it.
        """
        if outcome not in CUSTOMER_OUTCOMES:
            raise ValueError(f"outcome must be one of {CUSTOMER_OUTCOMES}")
        payment = self.payments[payment_id]
        if payment.customer is None and payment.transaction_status == "Initiated":
            payment.customer = outcome
            if outcome == "cancel":
                payment.transaction_status = "Cancelled"
            elif outcome == "failure":
                payment.transaction_status = "Failed"
        return payment.callback(outcome)

    async def customer_returns(self, payment_id: str, outcome: str = "success") -> Delivery:
        """The customer acts, then the browser follows bKash's redirect to the merchant."""
        url = self.customer_acts(payment_id, outcome)
        return await self.call_merchant("GET", url, follow_redirects=True)

    # ---------------------------------------------------------------- the API

    def _take_injected(self, endpoint: str) -> None:
        queue = self._injected.get(endpoint)
        if queue:
            raise BkashError(*queue.pop(0))

    def _now(self) -> str:
        now = self.clock().astimezone(_DHAKA)
        return now.strftime("%Y-%m-%dT%H:%M:%S:") + f"{now.microsecond // 1000:03d} GMT+0600"

    def _check_credentials(self, request: web.Request, body: dict[str, Any]) -> None:
        if request.headers.get("username") != self.username:
            raise BkashError("9999", "Username does not exist")
        if not hmac.compare_digest(request.headers.get("password", ""), self.password):
            raise BkashError("9999", "Invalid credentials.")
        if body.get("app_key") != self.app_key or not hmac.compare_digest(
                str(body.get("app_secret", "")), self.app_secret):
            raise BkashError("2001", "Invalid App Key")

    def _issue(self) -> dict[str, Any]:
        id_token = "eyJ" + secrets.token_urlsafe(48)
        refresh_token = "eyJjdHkiOiJKV1Qi" + secrets.token_urlsafe(48)
        self.tokens[id_token] = self.clock().timestamp() + self.token_lifetime
        self.refresh_tokens.add(refresh_token)
        return {"statusCode": "0000", "statusMessage": "Successful", "id_token": id_token,
                "token_type": "Bearer", "expires_in": self.token_lifetime,
                "refresh_token": refresh_token}

    async def _grant(self, request: web.Request) -> web.Response:
        body = await read_json(request) or {}
        try:
            self._take_injected("grant")
            self._check_credentials(request, body)
        except BkashError as error:
            return error.response()
        return web.json_response(self._issue())

    async def _refresh(self, request: web.Request) -> web.Response:
        body = await read_json(request) or {}
        try:
            self._take_injected("refresh")
            self._check_credentials(request, body)
            if body.get("refresh_token") not in self.refresh_tokens:
                raise BkashError("9999", "Invalid refresh token")
        except BkashError as error:
            return error.response()
        self.refresh_tokens.discard(body["refresh_token"])
        return web.json_response(self._issue())

    def _authorize(self, request: web.Request) -> None:
        # The raw id_token, as bKash's plugin sends it; "Bearer <token>" is not accepted.
        expiry = self.tokens.get(request.headers.get("Authorization", "").strip())
        if expiry is None:
            raise GatewayRefusal("Unauthorized")
        if expiry <= self.clock().timestamp():
            raise GatewayRefusal("The incoming token has expired")
        if request.headers.get("X-APP-Key") != self.app_key:
            raise BkashError("2001", "Invalid App Key")

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            body = await read_json(request)
            if not isinstance(body, dict):
                raise BkashError("2025", "Invalid request body")
            self._take_injected("create")
            payment = self._validated_payment(body)
        except (BkashError, GatewayRefusal) as error:
            return error.response()
        self.payments[payment.payment_id] = payment
        return web.json_response({
            "paymentID": payment.payment_id,
            "bkashURL": f"{self.base_url}/redirect/?" + urlencode({
                "paymentId": payment.payment_id, "hash": secrets.token_urlsafe(24),
                "mode": "0011", "apiVersion": API_VERSION}),
            "callbackURL": payment.callback_url,
            "successCallbackURL": payment.callback("success"),
            "failureCallbackURL": payment.callback("failure"),
            "cancelledCallbackURL": payment.callback("cancel"),
            "amount": payment.amount,
            "intent": payment.intent,
            "currency": payment.currency,
            "paymentCreateTime": payment.created_at,
            "transactionStatus": payment.transaction_status,
            "merchantInvoiceNumber": payment.merchant_invoice_number,
            "statusCode": "0000",
            "statusMessage": "Successful",
        })

    def _validated_payment(self, body: dict[str, Any]) -> Payment:
        for name in ("mode", "payerReference", "callbackURL", "amount", "currency", "intent",
                     "merchantInvoiceNumber"):
            if body.get(name) in (None, ""):
                raise BkashError("2065", "Mandatory field missing")
        if body["mode"] != "0011":
            raise BkashError("2063", "Mode is not valid as per request data")
        amount = str(body["amount"])
        try:
            positive = Decimal(amount) > 0
        except InvalidOperation:
            positive = False
        if not (_AMOUNT.match(amount) and positive):
            raise BkashError("2006", "Invalid Amount")
        if body["currency"] != "BDT":
            raise BkashError("2007", "Invalid Currency")
        if body["intent"] not in ("sale", "authorization"):
            raise BkashError("2008", "Invalid Intent")
        callback = urlsplit(str(body["callbackURL"]))
        if callback.scheme not in ("http", "https") or not callback.netloc:
            raise BkashError("2049", "Invalid Merchant Callback URL")
        return Payment(
            payment_id="TR0011" + secrets.token_hex(10), amount=amount,
            currency="BDT", intent=str(body["intent"]),
            payer_reference=str(body["payerReference"]), callback_url=str(body["callbackURL"]),
            merchant_invoice_number=str(body["merchantInvoiceNumber"]), created_at=self._now(),
            signature=secrets.token_urlsafe(8))

    async def _payment_id(self, request: web.Request) -> Payment:
        body = await read_json(request)
        payment_id = body.get("paymentID") if isinstance(body, dict) else None
        if not payment_id:
            raise BkashError("2065", "Mandatory field missing")
        payment = self.payments.get(str(payment_id))
        if payment is None:
            raise BkashError("2002", "Invalid Payment ID")
        return payment

    async def _execute(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            payment = await self._payment_id(request)
            self._take_injected("execute")
            if payment.transaction_status == "Completed":
                raise BkashError("2117", "Payment execution already been called before")
            if payment.customer != "success":
                raise BkashError("2056", "Invalid Payment State")
        except (BkashError, GatewayRefusal) as error:
            return error.response()
        payment.transaction_status = "Completed"
        payment.trx_id = secrets.token_hex(5).upper()
        payment.executed_at = self._now()
        return web.json_response({
            "paymentID": payment.payment_id, "trxID": payment.trx_id,
            "transactionStatus": "Completed", "amount": payment.amount,
            "currency": payment.currency, "intent": payment.intent,
            "paymentExecuteTime": payment.executed_at,
            "merchantInvoiceNumber": payment.merchant_invoice_number,
            "payerReference": payment.payer_reference,
            "customerMsisdn": payment.customer_msisdn,
            "statusCode": "0000", "statusMessage": "Successful",
        })

    async def _status(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            payment = await self._payment_id(request)
            self._take_injected("status")
        except (BkashError, GatewayRefusal) as error:
            return error.response()
        body: dict[str, Any] = {
            "paymentID": payment.payment_id, "mode": "0011",
            "paymentCreateTime": payment.created_at, "amount": payment.amount,
            "currency": payment.currency, "intent": payment.intent,
            "merchantInvoice": payment.merchant_invoice_number,
            "merchantInvoiceNumber": payment.merchant_invoice_number,
            "payerReference": payment.payer_reference,
            "transactionStatus": payment.transaction_status,
            "verificationStatus": "Complete" if payment.trx_id else "Incomplete",
            "statusCode": "0000", "statusMessage": "Successful",
        }
        if payment.trx_id:
            body.update(trxID=payment.trx_id, paymentExecuteTime=payment.executed_at,
                        customerMsisdn=payment.customer_msisdn)
        return web.json_response(body)

    async def _payment_page(self, request: web.Request) -> web.StreamResponse:
        """bKash's hosted page: `&action=success|failure|cancel` acts and redirects."""
        payment = self.payments.get(request.query.get("paymentId", ""))
        if payment is None:
            return web.Response(status=404, text="Unknown payment")
        action = request.query.get("action")
        if action in CUSTOMER_OUTCOMES:
            raise web.HTTPFound(self.customer_acts(payment.payment_id, action))
        links = " · ".join(
            f'<a href="{request.path_qs}&action={a}">{a}</a>' for a in CUSTOMER_OUTCOMES)
        return web.Response(content_type="text/html", text=(
            f"<!doctype html><title>bKash</title><p>Pay ৳{payment.amount} to invoice"
            f" {payment.merchant_invoice_number}</p><p>{links}</p>"))
