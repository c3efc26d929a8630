"""A/B variants and holdouts: stable assignment, per-variant results, and a winner rule.

Assignment hashes (campaign, customer) with BLAKE2b, so a customer lands in the same
variant on every run, in every process, after a pause and resume, with no stored state.
The holdout uses an independent hash ("holdout:" salt), so holding out never skews the
variant split. Significance is the two-proportion z-test with a pooled proportion:

    p = (x1 + x2) / (n1 + n2),  z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2))

two-sided p-value = erfc(|z| / sqrt 2). A winner is named only when every variant has at
least `campaigns.ab_min_sample` recipients and the best variant beats each other one at
`campaigns.ab_confidence`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BUCKETS = 10_000


def bucket(salt: str, campaign_id: str, customer_id: str) -> int:
    """A stable number in [0, BUCKETS) for this campaign and customer."""
    digest = hashlib.blake2b(f"{salt}:{campaign_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_holdout(campaign_id: str, customer_id: str, percent: float) -> bool:
    """True for the deterministic `percent` share of customers kept out of the send."""
    return percent > 0 and bucket("holdout", campaign_id, customer_id) < percent * BUCKETS / 100


def assign_variant(campaign_id: str, customer_id: str, variants: Sequence[dict[str, Any]]) -> str:
    """The name of the variant this customer gets, split by the variants' `weight`s."""
    if not variants:
        raise ValueError("no variants to assign")
    weights = [float(v.get("weight", 1)) for v in variants]
    if any(w <= 0 for w in weights):
        raise ValueError("variant weights must be positive")
    point = bucket("variant", campaign_id, customer_id) / BUCKETS * sum(weights)
    edge = 0.0
    for variant, weight in zip(variants, weights):
        edge += weight
        if point < edge:
            return str(variant["name"])
    return str(variants[-1]["name"])


@dataclass(frozen=True)
class ZTest:
    z: float
    p_value: float

    def significant(self, confidence: float) -> bool:
        return self.p_value < 1 - confidence


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> ZTest:
    """Is x1/n1 different from x2/n2? (two-sided, pooled)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both groups need at least one recipient")
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return ZTest(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / spread
    return ZTest(z, math.erfc(abs(z) / math.sqrt(2)))


@dataclass
class VariantResult:
    name: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    revenue: Any = 0

    def rate(self, metric: str) -> float:
        return getattr(self, metric) / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.name, "sent": self.sent, "opened": self.opened,
                "clicked": self.clicked, "converted": self.converted,
                "revenue": str(self.revenue), "openRate": round(self.rate("opened"), 4),
                "clickRate": round(self.rate("clicked"), 4),
                "conversionRate": round(self.rate("converted"), 4)}


def pick_winner(results: Sequence[VariantResult], metric: str = "converted",
                min_sample: int = 100, confidence: float = 0.95) -> dict[str, Any]:
    """The winner rule: the best rate on `metric`, significant against every other variant,
    with enough recipients in each. Otherwise no winner yet, and why."""
    if len(results) < 2:
        return {"winner": None, "reason": "fewer than two variants"}
    small = [r.name for r in results if r.sent < min_sample]
    if small:
        return {"winner": None, "reason": f"variants under {min_sample} recipients: {', '.join(small)}"}
    best = max(results, key=lambda r: r.rate(metric))
    tests = {}
    for other in results:
        if other is best:
            continue
        test = two_proportion_z_test(getattr(best, metric), best.sent,
                                     getattr(other, metric), other.sent)
        tests[other.name] = {"z": round(test.z, 4), "pValue": round(test.p_value, 6)}
        if not test.significant(confidence):
            return {"winner": None, "metric": metric, "leader": best.name, "tests": tests,
                    "reason": f"{best.name} vs {other.name} not significant at {confidence:.0%}"}
    return {"winner": best.name, "metric": metric, "tests": tests}
