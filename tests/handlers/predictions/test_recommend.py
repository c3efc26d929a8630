"""Learned item-to-item recommendations against the rule-based engine's rules.

The synthetic store has a known co-purchase structure: products sit in categories (what
the rule engine knows), and separately in "needs" that cut across categories (a phone, its
cover, a charger; rice, lentils, oil): a customer has one or two needs and most of an
order comes from them, the rest from the store's best sellers. Popularity is skewed within
every category. CDNOW has no products, hence a synthetic store.

Evaluation: per customer with two or more orders, the last order is held out; the
customer's previous order is the context (as after a purchase); four products, none of the
context, are recommended; a hit is any of them in the held-out order. Hit-rate@4 is the
share of customers with a hit. The rule baseline is the shipped rule engine's logic in
numpy: for each context product, the products most often in the same orders (ties by
product number), then its category's best sellers, filled in context order up to four.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from stormd.handlers.predictions import recommend as rec


@dataclass(frozen=True)
class Store:
    basket: np.ndarray  # order id per row
    item: np.ndarray  # product index per row
    customer_of: np.ndarray  # order id -> customer
    category: np.ndarray  # product -> category
    need: np.ndarray  # product -> need (-1: none)
    items: int


def synthetic_store(customers: int = 6000, items: int = 1500, categories: int = 30,
                    needs: int = 150, seed: int = 1) -> Store:
    """Orders of `customers` customers, in order of time per customer."""
    rng = np.random.default_rng(seed)
    category = rng.integers(0, categories, items)
    # Each need spans ~8 products from different categories; a fifth of products serve none.
    need = np.full(items, -1)
    served = rng.permutation(items)[: int(items * 0.8)]
    need[served] = rng.integers(0, needs, served.size)
    popularity = rng.pareto(1.2, items) + 1.0
    members = [np.flatnonzero(need == n) for n in range(needs)]
    global_p = popularity / popularity.sum()

    order_ids, rows_b, rows_i = [], [], []
    order = 0
    for c in range(customers):
        mine = rng.choice(needs, size=1 + int(rng.random() < 0.5), replace=False)
        pool = np.concatenate([members[n] for n in mine])
        if pool.size == 0:
            continue
        pool_p = popularity[pool] / popularity[pool].sum()
        for _ in range(1 + rng.geometric(0.4)):
            size = 1 + rng.binomial(4, 0.4)
            from_need = rng.random(size) < 0.7
            picks = np.where(from_need, rng.choice(pool, size, p=pool_p),
                             rng.choice(items, size, p=global_p))
            for p in np.unique(picks):
                rows_b.append(order)
                rows_i.append(p)
            order_ids.append(c)
            order += 1
    return Store(np.array(rows_b), np.array(rows_i), np.array(order_ids), category, need,
                 items)


def split_last_orders(store: Store):
    """(training rows, [(context, held-out) per customer with two or more orders])."""
    by_order = np.split(store.item, np.flatnonzero(np.diff(store.basket)) + 1)
    order_ids = np.unique(store.basket)
    customer = store.customer_of[order_ids]
    cases, held = [], set()
    for c in np.unique(customer):
        mine = order_ids[customer == c]
        if mine.size >= 2:
            cases.append((by_order[mine[-2]], set(by_order[mine[-1]].tolist())))
            held.add(int(mine[-1]))
    keep = ~np.isin(store.basket, list(held))
    return store.basket[keep], store.item[keep], cases


def rule_based(basket: np.ndarray, item: np.ndarray, category: np.ndarray, items: int):
    """The rule engine's candidates per product: co-purchased by order count (ties by
    product number), then same-category best sellers (by order-line count)."""
    b = rec.basket_matrix(basket, item, items)
    co = (b.T @ b).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    sold = np.bincount(item, minlength=items)
    by_category = {}
    for cat in np.unique(category):
        members = np.flatnonzero(category == cat)
        by_category[cat] = members[np.lexsort((members, -sold[members]))]

    def candidates(p: int, limit: int = 20) -> list[int]:
        row = co.getrow(p)
        together = row.indices[np.lexsort((row.indices, -row.data))][:limit].tolist()
        same = [q for q in by_category[category[p]] if q != p and q not in together]
        return together + same[:limit]

    return candidates


def hit_rate(answers, cases) -> float:
    return float(np.mean([bool(set(np.asarray(a).tolist()) & held)
                          for a, (_, held) in zip(answers, cases)]))


def evaluate(store: Store, k: int = 4) -> dict[str, float]:
    basket, item, cases = split_last_orders(store)
    started = time.perf_counter()
    model = rec.fit(basket, item, n_items=store.items)
    fit_seconds = time.perf_counter() - started
    candidates = rule_based(basket, item, store.category, store.items)

    def rules(context) -> list[int]:
        chosen, skip = [], set(context.tolist())
        for p in context:
            for q in candidates(int(p)):
                if q not in skip and len(chosen) < k:
                    chosen.append(q)
                    skip.add(q)
        return chosen

    learned = rec.recommend_many(model, [c.tolist() for c, _ in cases], k)
    # The shipped combination: learned for warm context, rules when the model is silent.
    combined = [a if a.size else rules(c) for a, (c, _) in zip(learned, cases)]
    return {
        "customers": len(cases),
        "learned": hit_rate(combined, cases),
        "learned_only": hit_rate(learned, cases),
        "rules": hit_rate([rules(c) for c, _ in cases], cases),
        "silent": float(np.mean([a.size == 0 for a in learned])),
        "cold_items": float(model.cold.mean()),
        "fit_seconds": fit_seconds,
    }


@pytest.fixture(scope="module")
def store() -> Store:
    return synthetic_store()


def test_learned_beats_the_rules_on_held_out_last_orders(store):
    result = evaluate(store)
    assert result["customers"] > 3000
    assert result["learned"] > result["rules"] + 0.03, result


def test_neighbours_are_the_products_of_the_same_need(store):
    """The structure the model is meant to find: a warm product's nearest neighbours
    mostly serve the same need, though most of them sit in other categories."""
    model = rec.fit(store.basket, store.item, n_items=store.items)
    warm = np.flatnonzero(~model.cold & (store.need >= 0))
    assert warm.size > store.items // 2
    top = model.neighbours[warm, :3]
    same_need = store.need[top] == store.need[warm, None]
    same_category = store.category[top] == store.category[warm, None]
    assert same_need.mean() > 0.6
    assert same_category.mean() < 0.2
    assert np.all(np.diff(model.similarity[warm], axis=1) <= 1e-6)  # best first


def test_cold_products_are_flagged_and_never_recommended():
    # Product 9 is in two orders only; products 0..3 in many.
    rng = np.random.default_rng(0)
    basket, item = [], []
    for order in range(200):
        for p in rng.choice(4, 2, replace=False):
            basket.append(order)
            item.append(p)
    basket += [500, 500, 501, 501]
    item += [9, 0, 9, 1]
    model = rec.fit(np.array(basket), np.array(item), n_items=10, min_baskets=5)
    assert model.cold.tolist() == [False] * 4 + [True] * 6
    assert model.baskets[9] == 2
    assert rec.recommend(model, [9], 4).size == 0  # no learned signal: use the rules
    answer = rec.recommend(model, [0, 9], 4)
    assert set(answer.tolist()) <= {1, 2, 3}
    assert 9 not in model.neighbours[:4].ravel()
