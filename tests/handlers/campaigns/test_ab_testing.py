"""A/B assignment stability, holdout share, the two-proportion z-test and the winner rule."""

from __future__ import annotations

import math

import pytest

from stormd.handlers.campaigns.ab_testing import (
    VariantResult,
    assign_variant,
    in_holdout,
    pick_winner,
    two_proportion_z_test,
)

AB = [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}]
CUSTOMERS = [f"cust{i}" for i in range(20_000)]


def test_assignment_is_stable_and_follows_weights():
    first = [assign_variant("cmp_1", c, AB) for c in CUSTOMERS]
    assert first == [assign_variant("cmp_1", c, AB) for c in CUSTOMERS]
    assert abs(first.count("A") / len(first) - 0.5) < 0.02
    skewed = [assign_variant("cmp_1", c, [{"name": "A", "weight": 9}, {"name": "B", "weight": 1}])
              for c in CUSTOMERS]
    assert abs(skewed.count("B") / len(skewed) - 0.1) < 0.01
    other = [assign_variant("cmp_2", c, AB) for c in CUSTOMERS]
    assert sum(a != b for a, b in zip(first, other)) > 8000  # campaigns split independently


def test_holdout_share_is_stable_and_independent_of_variants():
    held = [c for c in CUSTOMERS if in_holdout("cmp_1", c, 10)]
    assert abs(len(held) / len(CUSTOMERS) - 0.10) < 0.01
    assert held == [c for c in CUSTOMERS if in_holdout("cmp_1", c, 10)]
    in_a = [assign_variant("cmp_1", c, AB) for c in held].count("A") / len(held)
    assert abs(in_a - 0.5) < 0.05
    assert not any(in_holdout("cmp_1", c, 0) for c in CUSTOMERS[:1000])


def test_z_test_matches_the_hand_computed_figures():
    # p = 350/2000 = 0.175; se = sqrt(0.175 * 0.825 * 2/1000) = 0.0169926; z = 0.05 / se
    t = two_proportion_z_test(200, 1000, 150, 1000)
    assert t.z == pytest.approx(2.94245, abs=1e-5)
    assert t.p_value == pytest.approx(0.0032563, abs=1e-6)
    assert t.significant(0.95) and t.significant(0.99) and not t.significant(0.999)
    assert two_proportion_z_test(0, 10, 0, 10).p_value == 1.0
    flipped = two_proportion_z_test(150, 1000, 200, 1000)
    assert flipped.z == pytest.approx(-t.z) and flipped.p_value == pytest.approx(t.p_value)
    assert math.isclose(two_proportion_z_test(50, 100, 50, 100).z, 0.0)
    with pytest.raises(ValueError):
        two_proportion_z_test(1, 0, 1, 10)


def test_winner_rule_needs_significance_and_enough_recipients():
    a, b = VariantResult("A", sent=1000, converted=200), VariantResult("B", sent=1000, converted=150)
    assert pick_winner([a, b], min_sample=100)["winner"] == "A"
    close = VariantResult("B", sent=1000, converted=190)
    verdict = pick_winner([a, close], min_sample=100)
    assert verdict["winner"] is None and verdict["leader"] == "A" and "not significant" in verdict["reason"]
    small = pick_winner([VariantResult("A", sent=50, converted=40),
                         VariantResult("B", sent=50, converted=1)], min_sample=100)
    assert small["winner"] is None and "under 100" in small["reason"]
    assert pick_winner([a])["winner"] is None
