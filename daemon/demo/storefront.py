"""A simulated StormCom storefront: realistic event envelopes (docs/events.md) for the demo and
the ingest benchmark — Bangladeshi shoppers (Bengali and English names, +8801 phones),
products with BDT prices, order history, carts that are abandoned or converted, orders
moving through their statuses, promotions redeemed, e-mail engagement.

Everything is drawn from a seeded random generator, so a run is reproducible.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

FIRST_BN = ["রহিম", "করিম", "ফাতেমা", "আয়েশা", "তানভীর", "নুসরাত", "সাকিব", "মিম", "রাফি", "জান্নাত"]
LAST_BN = ["উদ্দিন", "হোসেন", "আক্তার", "রহমান", "ইসলাম", "চৌধুরী", "খাতুন", "আহমেদ"]
FIRST_EN = ["Rahim", "Karim", "Fatema", "Ayesha", "Tanvir", "Nusrat", "Shakib", "Mim", "Rafi",
            "Jannat", "Arif", "Sadia", "Imran", "Farhana", "Mehedi", "Tasnim"]
LAST_EN = ["Uddin", "Hossain", "Akter", "Rahman", "Islam", "Chowdhury", "Khatun", "Ahmed"]
CATALOGUE = {
    "Electronics": [("Walton Smartphone", 14999), ("Xiaomi Earbuds", 1899), ("Power Bank", 1450),
                    ("Smart Watch", 3499)],
    "Fashion": [("Jamdani Saree", 6500), ("Panjabi", 2200), ("Three-Piece", 1850),
                ("Lungi", 450)],
    "Groceries": [("Miniket Rice 5kg", 420), ("Soybean Oil 5L", 890), ("Hilsa 1kg", 1600),
                  ("Tea 400g", 260)],
    "Beauty": [("Lipstick", 650), ("Face Wash", 380), ("Mehedi Cone Pack", 150)],
    "Accessories": [("Leather Wallet", 990), ("Sunglasses", 1200), ("Phone Cover", 250)],
    "Home": [("Rice Cooker", 2800), ("Nakshi Kantha", 3500), ("Pressure Cooker", 2100)],
}
PROMO_CODES = ["EID10", "WELCOME5", "PUJA15", "FREESHIP"]
COD_SHARE = 0.6  # orders paid in cash on delivery: PENDING -> SHIPPED -> DELIVERED, never PAID


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass
class Storefront:
    """One store's shoppers and catalogue, and the events they cause."""

    store_id: str = "store_1"
    customers: int = 300
    seed: int = 7
    rng: random.Random = field(init=False)
    products: list[dict[str, Any]] = field(init=False, default_factory=list)
    people: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        n = 0
        for category, items in CATALOGUE.items():
            for name, price in items:
                n += 1
                self.products.append({"productId": f"p{n:03d}", "name": name,
                                      "category": category, "price": str(price)})
        for i in range(self.customers):
            self.people.append(self._person(i))

    def _person(self, i: int) -> dict[str, Any]:
        bengali = self.rng.random() < 0.6
        first, last = ((self.rng.choice(FIRST_BN), self.rng.choice(LAST_BN)) if bengali
                       else (self.rng.choice(FIRST_EN), self.rng.choice(LAST_EN)))
        latin = f"{self.rng.choice(FIRST_EN).lower()}{i}"
        operator = self.rng.choice(["3", "4", "5", "6", "7", "8", "9"])
        return {
            "customerId": f"c{i:05d}", "name": f"{first} {last}",
            "email": f"{latin}@example.com.bd",
            "phone": f"+8801{operator}{self.rng.randrange(10**7, 10**8)}",
            "locale": "bn" if bengali else "en",
            "consent": {"email": True, "sms": self.rng.random() > 0.1,
                        "whatsapp": self.rng.random() > 0.2, "push": False},
        }

    def envelope(self, type_: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": _id("evt"), "type": type_, "storeId": self.store_id,
                "occurredAt": at.isoformat(), "data": data}

    def _items(self, k: int | None = None) -> list[dict[str, Any]]:
        chosen = self.rng.sample(self.products, k or self.rng.randint(1, 3))
        return [{"productId": p["productId"], "name": p["name"], "category": p["category"],
                 "quantity": self.rng.randint(1, 2), "unitPrice": p["price"]} for p in chosen]

    @staticmethod
    def _total(items: list[dict[str, Any]]) -> str:
        return str(sum(Decimal(i["unitPrice"]) * i["quantity"] for i in items))

    def catalogue_events(self, at: datetime) -> list[dict[str, Any]]:
        return [self.envelope("product.upserted", at, p) for p in self.products]

    def customer_events(self, at: datetime) -> list[dict[str, Any]]:
        return [self.envelope("customer.upserted", at - timedelta(days=200),
                              {**p, "createdAt": (at - timedelta(days=200)).isoformat()})
                for p in self.people]

    def order_events(self, customer_id: str, at: datetime, cart_id: str | None = None,
                     items: list[dict[str, Any]] | None = None,
                     final: str = "DELIVERED") -> list[tuple[datetime, dict[str, Any]]]:
        """An order and its status changes over two days: PAID, SHIPPED, DELIVERED, or for
        cash on delivery (most orders in Bangladesh) SHIPPED, DELIVERED."""
        items = items or self._items()
        order_id = _id("o")
        data = {"orderId": order_id, "customerId": customer_id, "status": "PENDING",
                "total": self._total(items), "items": items}
        if cart_id:
            data["cartId"] = cart_id
        out = [(at, self.envelope("order.created", at, data))]
        if self.rng.random() < 0.15:
            code = self.rng.choice(PROMO_CODES)
            out.append((at, self.envelope("promotion.redeemed", at, {
                "orderId": order_id, "customerId": customer_id, "code": code,
                "discountType": "PERCENT", "discountAmount": "50"})))
        cod = self.rng.random() < COD_SHARE
        steps = (["CANCELLED"] if final == "CANCELLED" else
                 ["SHIPPED", "DELIVERED"] if cod else ["PAID", "SHIPPED", "DELIVERED"])
        for n, status in enumerate(steps, 1):
            when = at + timedelta(hours=8 * n)
            out.append((when, self.envelope("order.status_changed", when,
                                            {"orderId": order_id, "status": status})))
        return out

    def history(self, day: datetime, half_years: int = 2) -> list[tuple[datetime, dict[str, Any]]]:
        """Past completed orders, a year of them by default, so RFM and the predictions
        have something to score: in each half-year a shopper buys 0 to 8 times."""
        out = []
        for p in self.people:
            for half in range(half_years):
                for _ in range(self.rng.choice([0, 0, 1, 1, 2, 3, 5, 8])):
                    at = day - timedelta(days=self.rng.uniform(3, 175) + 180 * half)
                    out += self.order_events(p["customerId"], at)
        return out

    def day(self, start: datetime, hours: float = 14) -> list[tuple[datetime, dict[str, Any]]]:
        """One trading day: browsing sessions with carts (about a third abandoned, the rest
        converted), a few cleared carts, engagement with earlier e-mails, consent changes."""
        out: list[tuple[datetime, dict[str, Any]]] = []
        for p in self.rng.sample(self.people, k=int(len(self.people) * 0.6)):
            at = start + timedelta(hours=self.rng.uniform(0, hours))
            cart_id = _id("cart")
            items = self._items()
            for update in range(self.rng.randint(1, 3)):
                if update:
                    items = items + self._items(1)
                    at += timedelta(minutes=self.rng.uniform(1, 10))
                out.append((at, self.envelope("cart.updated", at, {
                    "cartId": cart_id, "customerId": p["customerId"], "items": items,
                    "total": self._total(items)})))
            fate = self.rng.random()
            if fate < 0.55:
                buy_at = at + timedelta(minutes=self.rng.uniform(2, 30))
                out += self.order_events(p["customerId"], buy_at, cart_id, items,
                                         "CANCELLED" if self.rng.random() < 0.05 else "DELIVERED")
            elif fate < 0.62:
                out.append((at, self.envelope("cart.cleared", at, {"cartId": cart_id})))
            elif self.rng.random() < 0.35:  # abandoned, then back after a reminder
                back = at + timedelta(hours=self.rng.uniform(1.5, 30))
                out += self.order_events(p["customerId"], back, cart_id, items)
            if self.rng.random() < 0.2:
                message_id = _id("msg")
                for kind in ("email.sent", "email.open", "email.click")[: self.rng.randint(1, 3)]:
                    at += timedelta(minutes=5)
                    out.append((at, self.envelope(kind, at, {
                        "messageId": message_id, "customerId": p["customerId"],
                        "url": "https://store.example/deal" if kind == "email.click" else None})))
            if self.rng.random() < 0.02:
                out.append((at, self.envelope("customer.consent_changed", at, {
                    "customerId": p["customerId"], "channel": "sms", "optedIn": False})))
        return sorted(out, key=lambda pair: pair[0])


def mixed_events(n: int, start: datetime, store_id: str = "bench", seed: int = 1) -> Iterator[
        dict[str, Any]]:
    """`n` mixed envelopes (customers, products, carts, orders, statuses, engagement) in
    time order, for throughput measurements."""
    shop = Storefront(store_id=store_id, customers=max(n // 20, 10), seed=seed)
    yield from shop.catalogue_events(start)
    yield from shop.customer_events(start)
    produced = len(shop.products) + len(shop.people)
    day = start
    while produced < n:
        for _, env in shop.day(day):
            if produced >= n:
                return
            yield env
            produced += 1
        day += timedelta(days=1)
