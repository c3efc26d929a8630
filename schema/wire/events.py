"""The event contract (docs/events.md): the envelope and one typed model per event type.

`parse_event` turns a subject and raw bytes into a validated `Event`, or raises
`EventRejected` with the reason the dead-letter header will carry.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from stormd.config.channels import CHANNELS

OrderStatus = Literal["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"]
# A consent change names one channel or all of them.
ConsentChannel = Literal[(*CHANNELS, "all")]


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("occurredAt needs a time zone")
    return value


ZonedTime = Annotated[datetime, AfterValidator(_zoned)]  # occurredAt: never a naive time


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
    customer_id: str
    email: str | None = None
    phone: str | None = Field(default=None, pattern=r"^\+\d{8,15}$")
    name: str | None = None
    locale: Literal["bn", "en"] | None = None
    birthday: date | None = None
    created_at: datetime | None = None
    consent: Consent | None = None
    push_tokens: list[str] | None = None


class CustomerConsentChanged(Payload):
    customer_id: str
    channel: ConsentChannel
    opted_in: bool


class ProductUpserted(Payload):
    product_id: str
    name: str
    category: str
    price: Decimal = Field(ge=0)
    active: bool = True
    image_url: str | None = None


class LineItem(Payload):
    product_id: str
    name: str | None = None
    category: str | None = None
    quantity: int = Field(ge=0)
    unit_price: Decimal = Field(ge=0)
    image_url: str | None = None


class CartUpdated(Payload):
    cart_id: str
    customer_id: str | None = None
    items: list[LineItem]
    total: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _total_from_items(self) -> CartUpdated:
        if self.total is None:
            self.total = sum((i.unit_price * i.quantity for i in self.items), Decimal(0))
        return self


class CartCleared(Payload):
    cart_id: str


class OrderCreated(Payload):
    order_id: str
    customer_id: str
    cart_id: str | None = None
    status: OrderStatus
    total: Decimal = Field(ge=0)
    items: list[LineItem]
    promotion_codes: list[str] | None = None


class OrderStatusChanged(Payload):
    order_id: str
    status: OrderStatus


class PromotionRedeemed(Payload):
    order_id: str
    customer_id: str
    code: str
    discount_type: Literal["PERCENT", "FIXED", "FREE_SHIPPING"]
    discount_amount: Decimal = Field(ge=0)
    campaign_id: str | None = None


class EmailEngagement(Payload):
    message_id: str
    customer_id: str | None = None
    campaign_id: str | None = None
    url: str | None = None
    reason: str | None = None


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

    id: str = Field(min_length=1, max_length=128)
    type: str
    store_id: str = Field(min_length=1, max_length=64)
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
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "missing":
        return f"missing required field {prefix}{where}"
    return f"{prefix}{where}: {msg}"


def subject_parts(subject: str, prefix: str) -> tuple[str | None, str | None]:
    """(storeId, type) from `<prefix>.events.<storeId>.<type>`; None where absent."""
    head = f"{prefix}.events."
    if not subject.startswith(head):
        return None, None
    rest = subject[len(head):]
    store, _, type_ = rest.partition(".")
    return store or None, type_ or None


def parse_event(subject: str, body: bytes, prefix: str) -> Event:
    store_from_subject, type_from_subject = subject_parts(subject, prefix)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventRejected(f"not JSON: {exc}", store_from_subject, type_from_subject) from None
    if not isinstance(raw, dict):
        raise EventRejected("envelope is not a JSON object", store_from_subject, type_from_subject)
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
