"""The store, its customers and its discount codes as the API and the command line see
them: the store's profile and settings (as `store.upserted` carries them), one customer's
full picture, and discount codes validated for a customer and cart and redeemed once.

Redemption is a single conditional UPDATE (unredeemed, unexpired, this customer's): of two
checkouts redeeming one code at the same moment exactly one succeeds, on SQLite (the
write lock serialises them) and on PostgreSQL (the second UPDATE waits for the first and
then finds the code taken).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import select, update

from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import (
    Call,
    Conflict,
    NotFound,
    check_if_match,
    require_store,
)
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.shop.carts import Cart
from stormd.schema.shop.customers import Customer, DndNumber
from stormd.schema.shop.promotions import DiscountCode
from stormd.schema.shop.stores import Store

CENT = Decimal("0.01")
MONEY_MAX = Decimal("999999999999.99")  # 12 digits before the point, 2 after


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# --- stores and settings -----------------------------------------------------------------


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone (e.g. Asia/Dhaka)") from None
    return name


TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]
Money = Annotated[Decimal, Field(ge=0, le=MONEY_MAX, decimal_places=2)]


class SenderIds(_Model):
    sms: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    whatsapp: str | None = Field(default=None, max_length=32)


class StoreSettings(_Model):
    """The store's profile and settings (what `store.upserted` carries); stored values, or
    the daemon's defaults where the store has not said."""

    store_id: str
    name: str = Field(description="What customers see.")
    timezone: str
    currency: str
    locale: str
    shop_url: str | None
    sender_ids: SenderIds
    monthly_budget: Decimal | None
    min_roi: Decimal
    created_at: datetime
    updated_at: datetime | None


class SettingsChanges(_Model):
    """What to change (fields left out keep their value; null clears the budget)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimeZone | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    locale: Literal["bn", "en"] | None = None
    shop_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")
    sender_ids: SenderIds | None = None
    monthly_budget: Money | None = None
    min_roi: Annotated[Decimal, Field(ge=0, le=1000, decimal_places=2)] | None = None


class StoreSummary(_Model):
    id: str
    name: str | None
    created_at: datetime


def _settings(call: Call, s: Store) -> StoreSettings:
    return StoreSettings(
        store_id=s.id, name=s.name or s.id, timezone=s.timezone or call.settings.daemon.timezone,
        currency=s.currency or "BDT", locale=s.locale or "bn", shop_url=s.shop_url,
        sender_ids=SenderIds.model_validate(s.sender_ids or {}),
        monthly_budget=s.monthly_budget,
        min_roi=Decimal(10) if s.min_roi is None else s.min_roi,
        created_at=s.created_at, updated_at=s.updated_at)


async def list_stores(call: Call, page: PageRequest) -> Page[StoreSummary]:
    """The stores the caller may see: a store key its own, an operator key every one."""
    page.sort = "id"
    query = select(Store)
    if call.actor.store_id is not None:
        query = query.where(Store.id == call.actor.store_id)
    sorts = {"id": SortKey(Store.id, "id")}
    async with call.reading() as session:
        return await fetch_page(session, query, page, sorts, sorts["id"], lambda s: StoreSummary(
            id=s.id, name=s.name, created_at=s.created_at))


async def get_settings(call: Call, store_id: str) -> StoreSettings:
    async with call.reading() as session:
        return _settings(call, await require_store(session, store_id))


async def update_settings(call: Call, store_id: str, changes: SettingsChanges,
                          if_match: str | None = None, *, require_match: bool = False
                          ) -> StoreSettings:
    given = changes.model_dump(exclude_unset=True)
    async with call.writing() as session:
        await require_store(session, store_id)
        store = await session.get(Store, store_id, with_for_update=True)
        check_if_match(_settings(call, store), if_match, required=require_match)
        for name in ("name", "timezone", "currency", "locale", "shop_url", "min_roi"):
            if name in given and given[name] is not None:
                setattr(store, name, given[name])
        if "shop_url" in given and given["shop_url"] is None:
            store.shop_url = None
        if "monthly_budget" in given:
            store.monthly_budget = given["monthly_budget"]
        if "sender_ids" in given:
            store.sender_ids = {k: v for k, v in (given["sender_ids"] or {}).items()
                                if v is not None} or None
        store.updated_at = call.now()
        await session.flush()
        await call.audit(session, store_id, "settings.update", store_id,
                         changes.model_dump(mode="json", by_alias=True, exclude_unset=True))
        return _settings(call, store)


# --- one customer ------------------------------------------------------------------------


class Consent(_Model):
    email: bool
    sms: bool
    whatsapp: bool
    push: bool
    dnd: bool = Field(description="The phone is on the store's do-not-disturb list.")


class Rfm(_Model):
    recency_days: int | None
    frequency: int | None
    monetary: Decimal | None
    r: int | None
    f: int | None
    m: int | None
    composite: int | None
    as_of: datetime


class OrdersSummary(_Model):
    count: int = Field(description="Completed orders, all time.")
    total: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None


class Membership(_Model):
    slug: str
    name: str
    entered_at: datetime


class CustomerPicture(_Model):
    customer_id: str
    name: str | None
    email: str | None
    phone: str | None
    locale: str
    birthday: date | None
    created_at: datetime | None
    updated_at: datetime | None
    consent: Consent
    stage: str | None = Field(description="PROSPECT, NEW, ACTIVE or CHURNED.")
    churn_risk: float | None
    rfm: Rfm | None
    orders: OrdersSummary
    segments: list[Membership]
    predicted_value: Decimal | None = Field(
        default=None, description="Predicted customer lifetime value; null until the store's "
                                  "predictions have been fitted.")


async def customer_picture(call: Call, store_id: str, customer_id: str) -> CustomerPicture:
    """Profile, consent, RFM, stage, segments (and predicted value, once there is one)."""
    async with call.reading() as session:
        await require_store(session, store_id)
        c = await session.get(Customer, (store_id, customer_id))
        if c is None:
            raise NotFound(f"store {store_id!r} has no customer {customer_id!r}")
        lm = await session.get(CustomerLifecycleMetrics, (store_id, customer_id))
        dnd = c.phone is not None and await session.get(DndNumber, (store_id, c.phone)) is not None
        rows = (await session.execute(
            select(CustomerSegment.slug, CustomerSegment.name, CustomerSegmentMember.entered_at)
            .join(CustomerSegment, CustomerSegment.id == CustomerSegmentMember.segment_id)
            .where(CustomerSegmentMember.store_id == store_id,
                   CustomerSegmentMember.customer_id == customer_id)
            .order_by(CustomerSegment.slug))).all()
    rfm = None
    if lm is not None and lm.composite is not None:
        rfm = Rfm(recency_days=lm.recency_days, frequency=lm.frequency, monetary=lm.monetary,
                  r=lm.r, f=lm.f, m=lm.m, composite=lm.composite, as_of=lm.as_of)
    return CustomerPicture(
        customer_id=c.customer_id, name=c.name, email=c.email, phone=c.phone,
        locale=c.locale or "bn", birthday=c.birthday, created_at=c.created_at,
        updated_at=c.updated_at,
        consent=Consent(email=c.consent_email, sms=c.consent_sms, whatsapp=c.consent_whatsapp,
                        push=c.consent_push, dnd=dnd),
        stage=lm.stage if lm else None, churn_risk=lm.churn_risk if lm else None, rfm=rfm,
        orders=OrdersSummary(count=lm.orders_count if lm else 0,
                             total=lm.orders_total if lm else Decimal(0),
                             first_order_at=lm.first_order_at if lm else None,
                             last_order_at=lm.last_order_at if lm else None),
        segments=[Membership(slug=s, name=n, entered_at=at) for s, n, at in rows])


# --- discount codes ----------------------------------------------------------------------

CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class DiscountCheck(_Model):
    code: str
    valid: bool = Field(description="The customer may redeem it on this cart now.")
    reason: str | None = Field(description="Why not, when not valid.")
    discount_type: Literal["PERCENT"] = "PERCENT"
    value: Decimal = Field(description="The percentage off.")
    discount_amount: Decimal | None = Field(description="What it takes off the cart's total, "
                                                        "when the total is known.")
    customer_id: str | None = Field(description="Whose code it is (null: anyone's).")
    campaign_id: str | None
    trigger: str
    single_use: bool = True
    expires_at: datetime | None
    redeemed_at: datetime | None
    order_id: str | None


class Redemption(_Model):
    customer_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1, max_length=128)
    cart_total: Money | None = Field(default=None, description="To compute the amount off.")


class Redeemed(_Model):
    code: str
    order_id: str
    customer_id: str
    redeemed_at: datetime
    discount_type: Literal["PERCENT"] = "PERCENT"
    value: Decimal
    discount_amount: Decimal | None
    campaign_id: str | None
    trigger: str


def _why_not(code: DiscountCode, customer_id: str | None, now: datetime) -> str | None:
    if code.redeemed_at is not None:
        return f"already redeemed at {code.redeemed_at.isoformat()} by order {code.order_id}"
    if code.expires_at is not None and code.expires_at <= now:
        return f"expired at {code.expires_at.isoformat()}"
    if code.customer_id is not None and customer_id is not None and customer_id != code.customer_id:
        return "issued to another customer"
    if code.customer_id is not None and customer_id is None:
        return "issued to one customer: give customerId"
    return None


def _check(code: DiscountCode, customer_id: str | None, total: Decimal | None,
           now: datetime) -> DiscountCheck:
    reason = _why_not(code, customer_id, now)
    amount = None if total is None else (total * code.percent / 100).quantize(CENT)
    return DiscountCheck(code=code.code, valid=reason is None, reason=reason, value=code.percent,
                         discount_amount=amount, customer_id=code.customer_id,
                         campaign_id=code.campaign_id, trigger=code.trigger,
                         expires_at=code.expires_at, redeemed_at=code.redeemed_at,
                         order_id=code.order_id)


async def _code(session, store_id: str, code: str) -> DiscountCode:
    row = await session.scalar(select(DiscountCode).where(DiscountCode.store_id == store_id,
                                                          DiscountCode.code == code))
    if row is None:
        raise NotFound(f"store {store_id!r} has no discount code {code!r}")
    return row


async def check_discount(call: Call, store_id: str, code: str, customer_id: str | None = None,
                         cart_id: str | None = None, cart_total: Decimal | None = None
                         ) -> DiscountCheck:
    """May this customer redeem this code on this cart now (and for how much)?"""
    async with call.reading() as session:
        await require_store(session, store_id)
        row = await _code(session, store_id, code)
        if cart_total is None and cart_id is not None:
            cart = await session.get(Cart, (store_id, cart_id))
            if cart is None:
                raise NotFound(f"store {store_id!r} has no cart {cart_id!r}")
            cart_total = cart.total
    return _check(row, customer_id, cart_total, call.now())


async def redeem_discount(call: Call, store_id: str, code: str, redemption: Redemption
                          ) -> Redeemed:
    """Mark the code used by this order: once, whoever asks at the same moment."""
    now = call.now()
    D = DiscountCode
    async with call.writing() as session:
        await require_store(session, store_id)
        row = await _code(session, store_id, code)
        done = await session.execute(
            update(D).where(D.store_id == store_id, D.code == code, D.redeemed_at.is_(None),
                            (D.expires_at.is_(None)) | (D.expires_at > now),
                            (D.customer_id.is_(None)) | (D.customer_id == redemption.customer_id))
            .values(redeemed_at=now, order_id=redemption.order_id)
            .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            await session.refresh(row)
            reason = _why_not(row, redemption.customer_id, now) or "it cannot be redeemed now"
            raise Conflict(f"code {code} cannot be redeemed: {reason}")
        await call.audit(session, store_id, "discounts.redeem", code,
                         {"orderId": redemption.order_id, "customerId": redemption.customer_id})
        total = redemption.cart_total
        return Redeemed(code=code, order_id=redemption.order_id,
                        customer_id=redemption.customer_id, redeemed_at=now, value=row.percent,
                        discount_amount=None if total is None else
                        (total * row.percent / 100).quantize(CENT),
                        campaign_id=row.campaign_id, trigger=row.trigger)

