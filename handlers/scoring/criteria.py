"""The segment criteria language (docs/scoring.md), compiled to SQLAlchemy expressions.

Criteria are JSON: an object whose keys are fields (all must hold) or the combinators
`all` / `any` (lists of criteria) and `not` (one criteria). A field's condition is a
literal (equality) or an object of operators `eq ne gt gte lt lte in nin between`.
Every name and value is checked against the tables below and becomes a bound parameter
of a SQLAlchemy expression; criteria never become SQL text.

Expressions read the per-customer feature rows: `customer_lifecycle_metrics` (one row per
customer, handlers/scoring/lifecycle.py: scores, stage, churn risk, e-mail engagement)
outer-joined to `customers`, plus correlated sub-queries over orders for promotions and
categories (an item without a category of its own has its product's catalogue category). A field whose value is unknown for a customer
(no RFM score yet, no order) satisfies no condition, and `not` of such a condition holds.
Day counts are whole days before T and compare as timestamps, exactly.

Criteria are bounded so that one store's segment cannot wedge the SQL built from it: `all`,
`any` and `not` nest at most `MAX_DEPTH` deep, a list (`in`/`nin` values, `all`/`any`
items, category names) holds at most `MAX_LIST` entries, the whole criteria at most
`MAX_VALUES` values, a string at most `MAX_TEXT` characters; an `in` list becomes one SQL
`IN (...)`, never a chain of ORs (which SQLite refuses past 1,000 deep).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, exists, false, func, not_, or_, select, true
from sqlalchemy.sql import ColumnElement, FromClause

from stormd.handlers.scoring.features import completed_orders
from stormd.handlers.scoring.lifecycle import STAGES
from stormd.schema.marketing.predictions import CustomerPrediction
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.orders import Order, OrderItem
from stormd.schema.shop.products import Product
from stormd.schema.shop.promotions import AppliedPromotion

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "between")
COMBINATORS = ("all", "any", "not")
MAX_DAYS = 36_500  # a century: day bounds beyond it would leave the calendar
MAX_NUMBER = 1e15  # beyond exact integers in a double, and SQLite's 64-bit integers
EQUALITY = ("eq", "ne", "in", "nin")
MAX_DEPTH = 8  # all / any / not nested in each other
MAX_LIST = 1_000  # entries of one list
MAX_VALUES = 5_000  # values and conditions in one criteria, all lists together
MAX_TEXT = 200  # characters of a string value

LM = CustomerLifecycleMetrics.__table__
CUSTOMERS = Customer.__table__
PREDICTIONS = CustomerPrediction.__table__


class CriteriaError(ValueError):
    """Criteria that cannot be compiled; the message names the field, operator or value."""


def feature_from() -> FromClause:
    """The per-customer feature rows the criteria read."""
    return LM.outerjoin(
        CUSTOMERS,
        and_(CUSTOMERS.c.store_id == LM.c.store_id, CUSTOMERS.c.customer_id == LM.c.customer_id),
    )


@dataclass(frozen=True)
class _Field:
    kind: str  # number, days, ratio, rate, stage, string, bool, categories
    column: Callable[[], Any] | None = None


FIELDS: dict[str, _Field] = {
    "rfm.recency": _Field("number", lambda: LM.c.recency_days),
    "rfm.frequency": _Field("number", lambda: LM.c.frequency),
    "rfm.monetary": _Field("number", lambda: LM.c.monetary),
    "rfm.r": _Field("number", lambda: LM.c.r),
    "rfm.f": _Field("number", lambda: LM.c.f),
    "rfm.m": _Field("number", lambda: LM.c.m),
    "rfm.composite": _Field("number", lambda: LM.c.composite),
    "orders.count": _Field("number", lambda: LM.c.orders_count),
    "orders.total": _Field("number", lambda: LM.c.orders_total),
    "daysSinceLastOrder": _Field("days", lambda: LM.c.last_order_at),
    "daysSinceFirstOrder": _Field("days", lambda: LM.c.first_order_at),
    "lifecycle.stage": _Field("stage", lambda: LM.c.stage),
    "churn.risk": _Field("number", lambda: LM.c.churn_risk),
    "engagement.lastOpenDays": _Field("days", lambda: LM.c.last_open_at),
    "engagement.openRate": _Field("rate"),
    "promotions.redeemedRatio": _Field("ratio"),
    "categories.lastOrderMissing": _Field("categories"),
    "categories.purchased": _Field("categories"),
    "customer.locale": _Field("string", lambda: func.coalesce(CUSTOMERS.c.locale, "bn")),
    "consent.email": _Field("bool", lambda: func.coalesce(CUSTOMERS.c.consent_email, true())),
    "consent.sms": _Field("bool", lambda: func.coalesce(CUSTOMERS.c.consent_sms, true())),
    "consent.whatsapp": _Field(
        "bool", lambda: func.coalesce(CUSTOMERS.c.consent_whatsapp, true())),
    "consent.push": _Field("bool", lambda: func.coalesce(CUSTOMERS.c.consent_push, true())),
}


def _predicted(name: str) -> Callable[[], Any]:
    """A column of the customer's latest predictions (handlers/predictions/nightly.py), by
    primary key; NULL (matching nothing) for a customer without predictions."""
    return lambda: (select(PREDICTIONS.c[name])
                    .where(PREDICTIONS.c.store_id == LM.c.store_id,
                           PREDICTIONS.c.customer_id == LM.c.customer_id)
                    .scalar_subquery())


# Predicted value and churn: read from the latest predictions, refreshed nightly.
PREDICTION_FIELDS: dict[str, _Field] = {
    "clv.predicted90d": _Field("number", _predicted("clv_90d")),
    "clv.predicted365d": _Field("number", _predicted("clv_365d")),
    "churn.probability": _Field("number", _predicted("churn_probability")),
    "purchases.expected90d": _Field("number", _predicted("expected_90d")),
}
FIELDS.update(PREDICTION_FIELDS)


def reads_predictions(criteria: Any) -> bool:
    """Whether the criteria read a prediction field (such segments are refreshed after the
    nightly predictions, not before)."""
    if isinstance(criteria, dict):
        return any(k in PREDICTION_FIELDS or (k in COMBINATORS and reads_predictions(v))
                   for k, v in criteria.items())
    if isinstance(criteria, list):
        return any(reads_predictions(v) for v in criteria)
    return False

_KIND_OPERATORS = {
    "number": OPERATORS, "days": OPERATORS, "ratio": OPERATORS, "rate": OPERATORS,
    "stage": EQUALITY, "string": EQUALITY, "bool": EQUALITY,
}


def compile_criteria(criteria: Any, as_of: datetime) -> ColumnElement[bool]:
    """The criteria as a boolean expression over `feature_from()`, for instant T = as_of."""
    if not isinstance(criteria, dict):
        raise CriteriaError(f"criteria must be a JSON object, not {_json_type(criteria)}")
    if not criteria:
        raise CriteriaError("criteria is empty: give at least one field or all/any/not")
    return _Compiler(as_of).object(criteria, "")


# Fields whose condition is evaluated against T: their expressions embed the instant.
_TIMED_KINDS = ("days", "ratio", "categories")


def reads_time(criteria: Any) -> bool:
    """Whether the criteria's expression depends on the instant T (day counts, and the
    order sub-queries of promotions and categories)."""
    if isinstance(criteria, dict):
        return any((k in FIELDS and FIELDS[k].kind in _TIMED_KINDS) or reads_time(v)
                   for k, v in criteria.items() if k in FIELDS or k in COMBINATORS)
    if isinstance(criteria, list):
        return any(reads_time(v) for v in criteria)
    return False


def validate_criteria(criteria: Any) -> None:
    """Raise CriteriaError naming what is wrong, or return quietly."""
    compile_criteria(criteria, datetime.now().astimezone())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float, Decimal)) or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # a huge integer is a number, refused by its range
    return math.isfinite(value)


class _Compiler:
    def __init__(self, as_of: datetime):
        self.as_of = as_of
        self.depth = 0
        self.values = 0

    def count(self, n: int, where: str) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise CriteriaError(f"{where}: criteria hold more than {MAX_VALUES:,} values and "
                                "conditions in all; split them into several segments")

    def sized(self, value: list[Any], where: str) -> None:
        if len(value) > MAX_LIST:
            raise CriteriaError(f"{where}: a list of {len(value):,} entries, over the limit of "
                                f"{MAX_LIST:,}")
        self.count(len(value), where)

    def object(self, criteria: dict[str, Any], path: str) -> ColumnElement[bool]:
        parts = []
        for key, value in criteria.items():
            where = f"{path}{key}"
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise CriteriaError(f"{where}: needs a non-empty list of criteria")
                self.sized(value, where)
                subs = [self.nested(v, f"{where}[{i}]") for i, v in enumerate(value)]
                parts.append(_joined(and_ if key == "all" else or_, subs))
            elif key == "not":
                parts.append(not_(self.nested(value, where)))
            elif key in FIELDS:
                parts.append(self.field(key, FIELDS[key], value, where))
            else:
                raise CriteriaError(f"unknown field {key!r} at {where!r}; fields are "
                                    + ", ".join(FIELDS) + "; combinators are all, any, not")
        return and_(*parts)

    def nested(self, value: Any, where: str) -> ColumnElement[bool]:
        if not isinstance(value, dict) or not value:
            raise CriteriaError(f"{where}: needs a criteria object, not {_json_type(value)}")
        if self.depth >= MAX_DEPTH:
            raise CriteriaError(f"{where}: all/any/not nested more than {MAX_DEPTH} deep")
        self.depth += 1
        try:
            return self.object(value, where + ".")
        finally:
            self.depth -= 1

    def field(self, name: str, f: _Field, condition: Any, where: str) -> ColumnElement[bool]:
        self.count(1, where)
        if f.kind == "categories":
            return self.categories(name, condition, where)
        if isinstance(condition, dict):
            if not condition:
                raise CriteriaError(f"{where}: the condition has no operator")
            parts = []
            for op, value in condition.items():
                if op not in OPERATORS:
                    raise CriteriaError(f"{where}: unknown operator {op!r}; operators are "
                                        + ", ".join(OPERATORS))
                if op not in _KIND_OPERATORS[f.kind]:
                    raise CriteriaError(f"{where}: operator {op!r} does not apply to {name} "
                                        f"(use {', '.join(_KIND_OPERATORS[f.kind])})")
                parts.append(self.operator(name, f, op, value, f"{where}.{op}"))
            return and_(*parts)
        if isinstance(condition, list):
            raise CriteriaError(f"{where}: a list needs an operator (in, nin or between)")
        return self.operator(name, f, "eq", condition, where)

    def operator(self, name: str, f: _Field, op: str, value: Any, where: str):
        if op in ("in", "nin"):
            if not isinstance(value, list) or not value:
                raise CriteriaError(f"{where}: needs a non-empty list, not {_json_type(value)}")
            self.sized(value, where)
            for i, v in enumerate(value):
                self.check(name, f, v, f"{where}[{i}]")
            match = self.one_of(f, value)
            return match if op == "in" else and_(self.known(f), not_(match))
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise CriteriaError(f"{where}: needs [lo, hi], not {_json_type(value)}")
            lo, hi = value
            self.check(name, f, lo, f"{where}[0]")
            self.check(name, f, hi, f"{where}[1]")
            if lo > hi:
                raise CriteriaError(f"{where}: lo {lo} is greater than hi {hi}")
            return and_(self.compare(f, "gte", lo), self.compare(f, "lte", hi))
        self.check(name, f, value, where)
        if op == "ne":
            return and_(self.known(f), not_(self.compare(f, "eq", value)))
        return self.compare(f, op, value)

    def check(self, name: str, f: _Field, value: Any, where: str) -> None:
        if f.kind in ("number", "days", "ratio", "rate"):
            if not _is_number(value):
                raise CriteriaError(f"{where}: {name} takes a number, not {_json_type(value)} "
                                    f"{_shown(value)}")
            limit = MAX_DAYS if f.kind == "days" else MAX_NUMBER
            if abs(value) > limit:
                raise CriteriaError(f"{where}: {_shown(value)} is out of range for {name} "
                                    f"(at most {limit:g} either way)")
        elif f.kind == "bool":
            if not isinstance(value, bool):
                raise CriteriaError(f"{where}: {name} takes true or false, not {_shown(value)}")
        elif f.kind == "stage":
            if value not in STAGES:
                raise CriteriaError(f"{where}: {_shown(value)} is not a lifecycle stage "
                                    f"({', '.join(STAGES)})")
        elif not isinstance(value, str):
            raise CriteriaError(f"{where}: {name} takes a string, not {_json_type(value)}")
        elif "\x00" in value:
            raise CriteriaError(f"{where}: {name} may not contain a NUL character")
        elif len(value) > MAX_TEXT:
            raise CriteriaError(f"{where}: a string of {len(value):,} characters, over the "
                                f"limit of {MAX_TEXT}")

    def one_of(self, f: _Field, values: list[Any]) -> ColumnElement[bool]:
        """`field in values` as one SQL IN (day counts: a range per run of whole days);
        false where the field is unknown."""
        values = list(dict.fromkeys(values))
        if f.kind == "days":
            days = sorted({int(v) for v in values if v == int(v)})
            runs: list[list[int]] = []
            for d in days:
                if runs and d == runs[-1][1] + 1:
                    runs[-1][1] = d
                else:
                    runs.append([d, d])
            column = f.column()
            return _joined(or_, [and_(column <= self.as_of - timedelta(days=lo),
                                      column > self.as_of - timedelta(days=hi + 1))
                                 for lo, hi in runs] or [false()])
        if f.kind == "ratio":
            return and_(LM.c.orders_count > 0, self.redeemed().in_(
                [v * LM.c.orders_count for v in values]))
        column = f.column()
        if f.kind in ("bool", "string", "stage"):
            return column.in_(values)
        return and_(column.is_not(None), column.in_(values))

    def known(self, f: _Field) -> ColumnElement[bool]:
        if f.kind == "ratio":
            return LM.c.orders_count > 0
        if f.kind == "rate":
            return LM.c.emails_sent > 0
        return f.column().is_not(None)

    def compare(self, f: _Field, op: str, value: Any) -> ColumnElement[bool]:
        """`field op value` for a checked scalar value; false where the field is unknown."""
        if f.kind == "days":
            return self.days(f.column(), op, value)
        if f.kind == "ratio":
            return and_(LM.c.orders_count > 0, _apply(op, self.redeemed(), value * LM.c.orders_count))
        if f.kind == "rate":  # opened / sent compared without dividing
            return and_(LM.c.emails_sent > 0,
                        _apply(op, LM.c.emails_opened, value * LM.c.emails_sent))
        column = f.column()
        if f.kind in ("bool", "string"):
            return _apply(op, column, value)
        return and_(column.is_not(None), _apply(op, column, value))

    def days(self, column: Any, op: str, value: float) -> ColumnElement[bool]:
        """Whole days before T compared as instants: days >= d iff t <= T - d days."""

        def at_least(d: int) -> ColumnElement[bool]:
            return column <= self.as_of - timedelta(days=d)

        def at_most(d: int) -> ColumnElement[bool]:
            return column > self.as_of - timedelta(days=d + 1)

        if op == "gte":
            return at_least(math.ceil(value))
        if op == "gt":
            return at_least(math.floor(value) + 1)
        if op == "lte":
            return at_most(math.floor(value))
        if op == "lt":
            return at_most(math.ceil(value) - 1)
        if value != int(value):  # eq: a whole-day count never equals a fraction
            return false()
        return and_(at_least(int(value)), at_most(int(value)))

    def redeemed(self):
        """Completed orders of the customer with a redeemed promotion."""
        o = Order.__table__.c
        ap = AppliedPromotion.__table__.c
        return (
            select(func.count())
            .where(completed_orders(LM.c.store_id, self.as_of), o.customer_id == LM.c.customer_id,
                   exists().where(ap.store_id == o.store_id, ap.order_id == o.order_id))
            .scalar_subquery()
        )

    def categories(self, name: str, value: Any, where: str) -> ColumnElement[bool]:
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v and "\x00" not in v for v in value)):
            raise CriteriaError(f"{where}: {name} takes a non-empty list of category names, "
                                f"not {_json_type(value)} {_shown(value)}")
        self.sized(value, where)
        if any(len(v) > MAX_TEXT for v in value):
            raise CriteriaError(f"{where}: a category name over {MAX_TEXT} characters")
        o = Order.__table__.c
        item = OrderItem.__table__.c
        p = Product.__table__.c
        catalogue = (select(p.category).where(p.store_id == item.store_id,
                                              p.product_id == item.product_id)
                     .scalar_subquery())
        category = func.coalesce(item.category, catalogue)

        def items(*where: Any) -> Any:
            return exists().where(
                completed_orders(LM.c.store_id, self.as_of), o.customer_id == LM.c.customer_id,
                item.store_id == o.store_id, item.order_id == o.order_id, *where)

        if name == "categories.purchased":
            return items(category.in_(value))
        # The last completed order (every order at that instant, if several) has items, all
        # of a known category, none of these; an item of unknown category makes it unknown.
        last = o.occurred_at == LM.c.last_order_at
        return and_(LM.c.last_order_at.is_not(None), items(last),
                    ~items(last, category.in_(value)), ~items(last, category.is_(None)))


_CHUNK = 32


def _joined(join: Any, parts: list[Any]) -> ColumnElement[bool]:
    """`join(*parts)` kept shallow: SQL parses `a OR b OR c ...` as a chain as deep as it is
    long (SQLite refuses 1,000), so a long list is joined in groups of 32, each group a
    CASE (true or false, as the conditions never are NULL)."""
    while len(parts) > _CHUNK:
        parts = [case((join(*parts[i:i + _CHUNK]), true()), else_=false())
                 for i in range(0, len(parts), _CHUNK)]
    return join(*parts)


def _shown(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {len(str(abs(value) // 10**60)) + 60}-digit number"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _apply(op: str, left: Any, right: Any) -> ColumnElement[bool]:
    if op == "eq":
        return left == right
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    raise CriteriaError(f"operator {op!r} cannot compare")  # pragma: no cover - checked earlier
