"""The event contract (docs/events.md): the envelope and one typed model per event type.

`parse_event` turns a subject and raw bytes into a validated `Event`, or raises
`EventRejected` with the reason the dead-letter header will carry.

The limits (docs/events.md, "Limits") are part of the models, so every value that reaches
a handler or `stormd import` fits both databases the same way: ids and text as long as
their columns and free of what PostgreSQL refuses (NUL), money that NUMERIC(14, 2) holds
exactly, quantities an INTEGER holds, times that UTC arithmetic cannot overflow. A value
beyond them is refused here, never left to fail (or to pass) in one database only.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stormd.config.channels import CHANNELS

OrderStatus = Literal["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"]
# A consent change names one channel or all of them.
ConsentChannel = Literal[(*CHANNELS, "all")]


# --- limits (docs/events.md), the same on SQLite and PostgreSQL -------------------------
MAX_PAYLOAD = 1024 * 1024  # bytes of one event
MAX_DEPTH = 32  # JSON containers nested in one event, the envelope being the first
MAX_AHEAD = timedelta(hours=1)  # how far after its receipt an event's time may lie
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)  # no time or date before this
LATEST_DATE = date(2100, 12, 31)  # birthdays
MAX_QUANTITY = 1_000_000
MAX_ITEMS = 1_000  # lines of one cart or order
MAX_LIST = 50  # push tokens, promotion codes
MAX_MONEY = Decimal("999999999999.99")

ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"  # no control characters (Unicode Cc)
TEXT_PATTERN = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
STORE_PATTERN = r"^[A-Za-z0-9_-]+$"  # one subject token
# What a pattern's mismatch means, in the dead-letter reason (never the value itself).
PATTERN_REASONS = {ID_PATTERN: "contains a control character",
                   TEXT_PATTERN: "contains a NUL character",
                   STORE_PATTERN: "is not one subject token (letters, digits, _ and -)"}

# Ids of the storefront's entities (event, customer, cart, order, product, message).
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
# Campaign ids and promotion codes: their columns are shorter.
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
StoreId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=STORE_PATTERN)]


def text(max_length: int) -> Any:
    """A free text field no longer than its column, without NUL."""
    return Annotated[str, StringConstraints(max_length=max_length, pattern=TEXT_PATTERN)]


CENT = Decimal("0.01")


def _cents(value: Decimal) -> Decimal:
    # quantize is exact here (le= bounds the digits) and a fifth of the cost of pydantic's
    # decimal_places, which takes the number apart: money is on the hot path.
    if value.quantize(CENT) != value:
        raise ValueError("has more than 2 decimal places")
    return value


# >= 0, at most 12 digits before the point and 2 after: what NUMERIC(14, 2) holds exactly
# (SQLite's REAL holds 15 significant digits exactly, so both read back the same value).
# "10.990" is 10.99; "10.999" is refused.
Money = Annotated[Decimal, Field(ge=0, le=MAX_MONEY), AfterValidator(_cents)]


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone")
    if value < EARLIEST:
        raise ValueError("is before 1900")
    return value


def _sane_date(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST_DATE:
        raise ValueError("is not between 1900 and 2100")
    return value


ZonedTime = Annotated[datetime, AfterValidator(_zoned)]  # never a naive time, nor before 1900
SaneDate = Annotated[date, AfterValidator(_sane_date)]


class Payload(BaseModel):
    """Event data: camelCase on the wire, snake_case in Python; unknown extra fields are
    ignored so storefronts can add to their events without breaking stormd."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Consent(Payload):
    email: bool | None = None
    sms: bool | None = None
    whatsapp: bool | None = None
    push: bool | None = None


class CustomerUpserted(Payload):
    customer_id: Id
    email: text(320) | None = None
    phone: str | None = Field(default=None, pattern=r"^\+\d{8,15}$")
    name: text(200) | None = None
    locale: Literal["bn", "en"] | None = None
    birthday: SaneDate | None = None
    created_at: ZonedTime | None = None
    consent: Consent | None = None
    push_tokens: list[text(4096)] | None = Field(default=None, max_length=MAX_LIST)


class CustomerConsentChanged(Payload):
    customer_id: Id
    channel: ConsentChannel
    opted_in: bool


class ProductUpserted(Payload):
    product_id: Id
    name: text(300)
    category: text(120)
    price: Money
    active: bool = True
    image_url: text(500) | None = None


class LineItem(Payload):
    product_id: Id
    name: text(300) | None = None
    category: text(120) | None = None
    quantity: int = Field(ge=0, le=MAX_QUANTITY)
    unit_price: Money
    image_url: text(500) | None = None


class CartUpdated(Payload):
    cart_id: Id
    customer_id: Id | None = None
    items: list[LineItem] = Field(max_length=MAX_ITEMS)
    total: Money | None = None

    @model_validator(mode="after")
    def _total_from_items(self) -> CartUpdated:
        if self.total is None:
            total = sum((i.unit_price * i.quantity for i in self.items), Decimal(0))
            if total > MAX_MONEY:
                raise ValueError("the items add up to more than 12 digits before the point")
            self.total = total
        return self


class CartCleared(Payload):
    cart_id: Id


class OrderCreated(Payload):
    order_id: Id
    customer_id: Id
    cart_id: Id | None = None
    status: OrderStatus
    total: Money
    items: list[LineItem] = Field(max_length=MAX_ITEMS)
    promotion_codes: list[ShortId] | None = Field(default=None, max_length=MAX_LIST)


class OrderStatusChanged(Payload):
    order_id: Id
    status: OrderStatus


class PromotionRedeemed(Payload):
    order_id: Id
    customer_id: Id
    code: ShortId
    discount_type: Literal["PERCENT", "FIXED", "FREE_SHIPPING"]
    discount_amount: Money
    campaign_id: ShortId | None = None


class EmailEngagement(Payload):
    message_id: Id
    customer_id: Id | None = None
    campaign_id: ShortId | None = None
    url: text(1000) | None = None
    reason: text(2000) | None = None  # kept to its first 500 characters


PAYLOADS: dict[str, type[Payload]] = {
    "customer.upserted": CustomerUpserted,
    "customer.consent_changed": CustomerConsentChanged,
    "product.upserted": ProductUpserted,
    "cart.updated": CartUpdated,
    "cart.cleared": CartCleared,
    "order.created": OrderCreated,
    "order.status_changed": OrderStatusChanged,
    "promotion.redeemed": PromotionRedeemed,
    "email.sent": EmailEngagement,
    "email.open": EmailEngagement,
    "email.click": EmailEngagement,
    "email.bounce": EmailEngagement,
}
EVENT_TYPES = tuple(PAYLOADS)


class Envelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: Id
    type: str = Field(min_length=1, max_length=64)
    store_id: StoreId
    occurred_at: ZonedTime
    data: dict[str, Any]


class Event(BaseModel):
    """A validated event: the envelope plus its typed data."""

    id: str
    type: str
    store_id: str
    occurred_at: datetime
    data: Payload

    def actor_key(self) -> str:
        """The mailbox this event belongs to: events of one key are handled in order."""
        d = self.data
        if isinstance(d, (CartUpdated, CartCleared)):
            return f"{self.store_id}:cart:{d.cart_id}"
        if isinstance(d, OrderStatusChanged):
            return f"{self.store_id}:order:{d.order_id}"
        if isinstance(d, ProductUpserted):
            return f"{self.store_id}:product:{d.product_id}"
        customer = getattr(d, "customer_id", None)
        if customer:
            return f"{self.store_id}:customer:{customer}"
        return f"{self.store_id}:message:{getattr(d, 'message_id', self.id)}"


class EventRejected(Exception):
    """An event that cannot be applied; `reason` goes into the `Stormd-Error` header."""

    def __init__(self, reason: str, store_id: str | None = None, type: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.store_id = store_id
        self.type = type


def _first_error(exc: ValidationError, prefix: str) -> str:
    """The first error as a dead-letter reason: the field path and pydantic's fixed wording
    (or ours for a pattern), never the offending value."""
    err = exc.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(p) for p in err["loc"])
    where = f"{prefix}{path}" if path else (prefix.rstrip(".") or "row")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"missing required field {where}"
    if err["type"] == "string_pattern_mismatch":
        msg = PATTERN_REASONS.get(err.get("ctx", {}).get("pattern"), "has a character not allowed")
    elif err["type"] == "json_invalid":
        msg = "not JSON"
    elif err["type"] == "int_parsing_size":  # pydantic speaks of a string even for a number
        msg = "is too large a number"
    return f"{where}: {msg}"


def depth(value: Any) -> int:
    """How deeply containers nest in a parsed JSON value (iteratively: a value nested deeper
    than Python's recursion limit must not raise), counted up to MAX_DEPTH + 1."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def time_beyond_limit(occurred_at: datetime | None, data: Any, received: datetime
                      ) -> str | None:
    """The field (`occurredAt`, `createdAt`) of an event or imported row whose time lies
    more than MAX_AHEAD after its receipt, else None: a clock far in the future would
    freeze an entity (nothing dated earlier could change it)."""
    latest = received + MAX_AHEAD
    if occurred_at is not None and occurred_at > latest:
        return "occurredAt"
    # Not getattr(data, "created_at"): on a model without the field it goes through
    # pydantic's __getattr__, which cost more than the rest of these checks together.
    if isinstance(data, CustomerUpserted) and data.created_at is not None \
            and data.created_at > latest:
        return "createdAt"
    return None


def subject_parts(subject: str, prefix: str) -> tuple[str | None, str | None]:
    """(storeId, type) from `<prefix>.events.<storeId>.<type>`; None where absent."""
    head = f"{prefix}.events."
    if not subject.startswith(head):
        return None, None
    rest = subject[len(head):]
    store, _, type_ = rest.partition(".")
    return store or None, type_ or None


def parse_event(subject: str, body: bytes, prefix: str, received: datetime | None = None
                ) -> Event:
    """The event, or EventRejected. `received` (the daemon's clock at receipt) bounds how
    far in the future `occurredAt` may lie; without it that limit is not checked."""
    store_from_subject, type_from_subject = subject_parts(subject, prefix)
    if len(body) > MAX_PAYLOAD:
        raise EventRejected(f"payload of {len(body)} bytes is over the 1 MiB limit",
                            store_from_subject, type_from_subject)
    try:
        raw = orjson.loads(body)  # iterative: no nesting makes it recurse
    except orjson.JSONDecodeError as exc:
        raise EventRejected(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                            store_from_subject, type_from_subject) from None
    if not isinstance(raw, dict):
        raise EventRejected("envelope is not a JSON object", store_from_subject, type_from_subject)
    # Each container opens with one of these bytes: few of them cannot nest deeply (the
    # usual event is decided by two byte counts, without walking it).
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and depth(raw) > MAX_DEPTH:
        raise EventRejected(f"JSON nested deeper than {MAX_DEPTH} levels",
                            store_from_subject, type_from_subject)
    try:
        env = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise EventRejected(_first_error(exc, ""), store_from_subject, type_from_subject) from None
    if store_from_subject is None:
        raise EventRejected(f"subject {subject} names no store", None, env.type)
    if env.store_id != store_from_subject:
        raise EventRejected(
            f"storeId {env.store_id!r} disagrees with subject store {store_from_subject!r}",
            store_from_subject,
            env.type,
        )
    if type_from_subject is not None and type_from_subject != env.type:
        raise EventRejected(
            f"type {env.type!r} disagrees with subject type {type_from_subject!r}",
            store_from_subject,
            env.type,
        )
    model = PAYLOADS.get(env.type)
    if model is None:
        raise EventRejected(f"unknown event type {env.type!r}", store_from_subject, env.type)
    try:
        data = model.model_validate(env.data)
    except ValidationError as exc:
        raise EventRejected(_first_error(exc, "data."), store_from_subject, env.type) from None
    if received is not None:
        late = time_beyond_limit(env.occurred_at, data, received)
        if late is not None:
            where = late if late == "occurredAt" else f"data.{late}"
            raise EventRejected(f"{where} is more than 1 hour after stormd received the event",
                                store_from_subject, env.type)
    # Every part is validated above; constructing without a second validation pass halves
    # the cost of parsing on the intake hot path.
    return Event.model_construct(
        id=env.id, type=env.type, store_id=env.store_id, occurred_at=env.occurred_at, data=data
    )


_TOKENS = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def dlq_subject(prefix: str, store_id: str | None, type_: str | None) -> str:
    """`<prefix>.dlq.<storeId or _>.<type or _>`; a part unfit for a subject becomes `_`."""
    store = store_id if store_id and _TOKENS.match(store_id) and "." not in store_id else "_"
    kind = type_ if type_ and _TOKENS.match(type_) else "_"
    return f"{prefix}.dlq.{store}.{kind}"
