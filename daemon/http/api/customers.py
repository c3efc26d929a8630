"""`/api/v1/stores/{storeId}/customers/{customerId}` (one customer's full picture) and
`/discounts/{code}` (validate for a customer and cart) and `/discounts/{code}/redeem`
(once; takes an Idempotency-Key)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import IdempotencyKey, idempotent
from stormd.handlers.shop import service
from stormd.handlers.shop.service import (
    MONEY_MAX,
    CustomerPicture,
    DiscountCheck,
    Redeemed,
    Redemption,
)

router = APIRouter(tags=["customers"])
Code = Annotated[str, Path(pattern=service.CODE_PATTERN, description="The discount code.")]
Id = Annotated[str, Query(min_length=1, max_length=128)]


@router.get("/customers/{customerId}", operation_id="getCustomer",
            response_model=CustomerPicture)
async def customer(scope: InStore, customer_id: Annotated[str, Path(
        alias="customerId", min_length=1, max_length=128)]) -> CustomerPicture:
    """Profile, consent, RFM, lifecycle stage, segments and predicted value."""
    return await service.customer_picture(scope.call, scope.store_id, customer_id)


@router.get("/discounts/{code}", operation_id="checkDiscount", response_model=DiscountCheck)
async def check_discount(scope: InStore, code: Code,
                         customer_id: Annotated[str | None, Query(
                             alias="customerId", min_length=1, max_length=128)] = None,
                         cart_id: Annotated[str | None, Query(
                             alias="cartId", min_length=1, max_length=128)] = None,
                         cart_total: Annotated[Decimal | None, Query(
                             alias="cartTotal", ge=0, le=MONEY_MAX, decimal_places=2)] = None
                         ) -> DiscountCheck:
    """May this customer redeem the code on this cart now, and how much does it take off?"""
    return await service.check_discount(scope.call, scope.store_id, code, customer_id,
                                        cart_id, cart_total)


@router.post("/discounts/{code}/redeem", operation_id="redeemDiscount", response_model=Redeemed)
async def redeem_discount(scope: InStore, code: Code, redemption: Redemption,
                          request: Request, idempotency_key: IdempotencyKey = None
                          ) -> Response:
    """Mark the code used by an order: exactly once, even when two checkouts try at the
    same moment (the other gets 409)."""
    return await idempotent(request, scope, idempotency_key, lambda: service.redeem_discount(
        scope.call, scope.store_id, code, redemption))
