"""Learned item-to-item recommendations: item vectors from what is bought together.

Count how many orders each pair of products shares and divide by the square root of both
products' totals (a cosine normalisation: best sellers are damped without being erased).
A truncated SVD of that sparse matrix gives each product a vector; two products score
cosine(vectors) + DIRECT_WEIGHT x their normalised co-purchase. The vectors link products
never bought together but bought with the same others (what raw counts cannot see); the
direct term keeps well-observed pairs exact where a low rank would blur them.

Why SVD and not implicit ALS: one deterministic `svds` call (seeded), two knobs (dimensions,
cold threshold) instead of ALS's regularisation, confidence weight and iteration count,
scipy only. On the synthetic store of the tests (held-out last orders, hit-rate@4) the
cosine normalisation beat positive PMI by about three points, and the blend beat either
part alone by one to two points.

Pure functions over arrays: (basket id, product index) rows in, an `ItemVectors` out. A
basket is an order (or, if the caller chooses, all of a customer's orders). Products with
fewer than `min_baskets` baskets are cold: they get no vector, are never recommended by
the model, and `ItemVectors.cold` tells the caller to use the rule-based engine for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

MIN_BASKETS = 5  # fewer orders than this: co-purchase counts are noise, use the rules
NEIGHBOURS = 20
DIRECT_WEIGHT = 4.0


def auto_dimensions(warm_products: int) -> int:
    """About one dimension per 16 products, 32 to 256: too few dimensions merge unrelated
    groups of products (hit-rate fell from 0.38 to 0.31 on a 15,000-product synthetic
    store at 64), too many cost SVD time for little."""
    return int(min(256, max(32, warm_products // 16)))


@dataclass(frozen=True)
class ItemVectors:
    """Fitted model: unit vectors per product (zero rows for cold ones), the normalised
    co-purchase matrix, and each warm product's best neighbours by blended score, best
    first (-1 pads short lists)."""

    vectors: np.ndarray  # (items, dims) float32
    direct: sparse.csr_matrix  # (items, items) normalised co-purchase, zero for cold
    cold: np.ndarray  # (items,) bool
    baskets: np.ndarray  # (items,) baskets containing the product
    neighbours: np.ndarray  # (items, NEIGHBOURS) int32
    similarity: np.ndarray  # (items, NEIGHBOURS) float32, blended score

    @property
    def items(self) -> int:
        return int(self.cold.size)


def basket_matrix(basket, item, n_items: int | None = None) -> sparse.csr_matrix:
    """Baskets x products, 1 where the product is in the basket (repeats counted once)."""
    basket = np.asarray(basket)
    item = np.asarray(item, dtype=np.int64)
    _, rows = np.unique(basket, return_inverse=True)
    n_items = int(item.max()) + 1 if n_items is None else int(n_items)
    m = sparse.csr_matrix((np.ones(item.size, dtype=np.float32), (rows.ravel(), item)),
                          shape=(int(rows.max()) + 1 if rows.size else 0, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _normalise(co: sparse.csr_matrix) -> sparse.csr_matrix:
    """C_ij / sqrt(c_i c_j), c_i = product i's co-purchase total: symmetric, in [0, 1]."""
    inv = 1.0 / np.sqrt(np.asarray(co.sum(axis=1)).ravel())
    scale = sparse.diags(inv.astype(np.float32))
    return (scale @ co @ scale).tocsr()


def fit(basket, item, *, n_items: int | None = None, dims: int | None = None,
        min_baskets: int = MIN_BASKETS, neighbours: int = NEIGHBOURS,
        seed: int = 0) -> ItemVectors:
    """Item vectors and neighbour lists from (basket id, product index) rows."""
    b = basket_matrix(basket, item, n_items)
    n = b.shape[1]
    counts = np.asarray(b.sum(axis=0)).ravel().astype(np.int64)
    warm = counts >= min_baskets
    b = b[:, np.flatnonzero(warm)]
    b = b[np.asarray(b.sum(axis=1)).ravel() >= 2]  # a single-product basket pairs nothing
    co = (b.T @ b).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    warm_index = np.flatnonzero(warm)
    connected = np.asarray(co.sum(axis=1)).ravel() > 0
    co = co[connected][:, connected]
    warm_index = warm_index[connected]
    cold = np.ones(n, dtype=bool)
    cold[warm_index] = False

    vectors = np.zeros((n, 0), dtype=np.float32)
    direct = sparse.csr_matrix((n, n), dtype=np.float32)
    if warm_index.size >= 3:
        m = _normalise(co.astype(np.float32))
        k = min(dims or auto_dimensions(warm_index.size), warm_index.size - 2)
        v0 = np.random.default_rng(seed).uniform(0.5, 1.0, warm_index.size)
        u, s, _ = svds(m, k=k, v0=v0, solver="arpack")
        warm_vectors = u * np.sqrt(s)
        norms = np.linalg.norm(warm_vectors, axis=1, keepdims=True)
        warm_vectors = np.divide(warm_vectors, norms, out=np.zeros_like(warm_vectors),
                                 where=norms > 0)
        vectors = np.zeros((n, k), dtype=np.float32)
        vectors[warm_index] = warm_vectors
        m = m.tocoo()
        direct = sparse.csr_matrix((m.data, (warm_index[m.row], warm_index[m.col])),
                                   shape=(n, n))
    else:
        cold[:] = True
    top, sim = _neighbours(vectors, direct, cold, neighbours)
    return ItemVectors(vectors, direct, cold, counts, top, sim)


def _scores(vectors: np.ndarray, direct: sparse.csr_matrix, query: sparse.csr_matrix,
            warm: np.ndarray) -> np.ndarray:
    """Blended score of every warm product for each row of `query` (products x weights)."""
    learned = np.asarray(query @ vectors) @ vectors[warm].T
    return learned + DIRECT_WEIGHT * (query @ direct[:, warm]).toarray()


def _neighbours(vectors: np.ndarray, direct: sparse.csr_matrix, cold: np.ndarray, k: int,
                block: int = 2048):
    """Top-k neighbours of every warm product by the blended score, in blocks."""
    n = cold.size
    top = np.full((n, k), -1, dtype=np.int32)
    sim = np.zeros((n, k), dtype=np.float32)
    warm = np.flatnonzero(~cold)
    if warm.size < 2 or k == 0:
        return top, sim
    kk = min(k, warm.size - 1)
    direct_warm = direct[:, warm].tocsr()
    for start in range(0, warm.size, block):
        rows = warm[start:start + block]
        scores = vectors[rows] @ vectors[warm].T + DIRECT_WEIGHT * direct_warm[rows].toarray()
        scores[np.arange(rows.size), np.arange(start, start + rows.size)] = -np.inf
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top[rows, :kk] = warm[np.take_along_axis(part, order, axis=1)]
        sim[rows, :kk] = np.take_along_axis(part_scores, order, axis=1)
    return top, sim


def recommend(model: ItemVectors, context: Iterable[int], k: int,
              exclude: Iterable[int] = ()) -> np.ndarray:
    """Up to k products for a set of context products (e.g. an order just placed).

    Scores are summed over the warm context products; cold context products contribute
    nothing. An empty answer means "no learned signal": the caller falls back to the
    rule-based engine.
    """
    [answer] = recommend_many(model, [list(context)], k, [list(exclude)])
    return answer


def recommend_many(model: ItemVectors, contexts: Sequence[Sequence[int]], k: int,
                   excludes: Sequence[Iterable[int]] | None = None,
                   block: int = 1024) -> list[np.ndarray]:
    """`recommend` for many contexts at once (one matrix product per block of contexts)."""
    answers: list[np.ndarray] = []
    warm = np.flatnonzero(~model.cold)
    for start in range(0, len(contexts), block):
        chunk = contexts[start:start + block]
        rows = np.repeat(np.arange(len(chunk)), [len(c) for c in chunk])
        cols = np.fromiter((i for c in chunk for i in c), dtype=np.int64, count=rows.size)
        q = sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)),
                              shape=(len(chunk), model.items))
        scores = _scores(model.vectors, model.direct, q, warm)  # (contexts, warm products)
        for i, c in enumerate(chunk):
            ex = set(c) | set(excludes[start + i] if excludes is not None else ())
            has_signal = any(not model.cold[j] for j in c)
            if not has_signal or warm.size == 0:
                answers.append(np.zeros(0, dtype=np.int64))
                continue
            row = scores[i].copy()
            banned = np.searchsorted(warm, [j for j in ex if not model.cold[j]])
            row[banned] = -np.inf
            kk = min(k, int(np.isfinite(row).sum()))
            if kk == 0:
                answers.append(np.zeros(0, dtype=np.int64))
                continue
            part = np.argpartition(-row, kk - 1)[:kk]
            part = part[np.argsort(-row[part], kind="stable")]
            answers.append(warm[part])
    return answers
