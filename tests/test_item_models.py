"""Pure item models against itertools / scipy recomputations, and the join's order-insensitivity."""
from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import chi2_contingency

from online_models.cooccurrence import ForwardDecay, ItemCounts, association, capped_basket, order_counts
from online_models.item_memory import ItemMemory

HOUR_MS = 3_600_000
WINDOW_MS = 24 * HOUR_MS
LATENESS_MS = 6 * HOUR_MS


def test_item_counts_equal_itertools_on_random_baskets():
    rng = random.Random(1)
    baskets = [sorted({f"s{rng.randrange(40)}" for _ in range(rng.randint(1, 9))}) for _ in range(500)]
    counts = ItemCounts()
    for basket in baskets:
        counts.add_basket(basket, 1.0, segment=None)
    assert counts.baskets == 500 and not counts.popular
    assert counts.items == Counter(sku for basket in baskets for sku in basket)
    assert counts.pairs == Counter(pair for basket in baskets for pair in itertools.permutations(basket, 2))


def test_basket_cap_is_a_uniform_sample_that_ignores_line_order():
    skus = [f"sku-{i}" for i in range(100)]
    kept = Counter()
    for n in range(2000):
        basket = capped_basket(f"order-{n}", skus, 30)
        assert len(basket) == 30 and set(basket) <= set(skus)
        assert capped_basket(f"order-{n}", list(reversed(skus)) + skus[:5], 30) == basket
        kept.update(basket)
    share = np.array([kept[sku] for sku in skus]) / 2000
    assert abs(share.mean() - 0.3) < 1e-12
    assert share.min() > 0.25 and share.max() < 0.35  # binomial(2000, 0.3): sd 0.010


def test_orders_beyond_the_per_customer_cap_are_thinned_to_the_expected_share():
    counted = sum(order_counts(f"o-{n}", n, 100) for n in range(1, 20_001))
    expected = 100 + sum(100 / n for n in range(101, 20_001))  # 100 (1 + ln 200) = 630
    assert abs(counted - expected) < 4 * expected**0.5


@pytest.mark.parametrize("seed", range(5))
def test_llr_equals_scipy_g_squared_and_is_signed_by_association(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(50, 5000))
        n_x, n_y = (int(v) for v in rng.integers(1, n, size=2))
        k11 = int(rng.integers(max(0, n_x + n_y - n), min(n_x, n_y) + 1))
        table = np.array([[k11, n_x - k11], [n_y - k11, n - n_x - n_y + k11]])
        g2 = chi2_contingency(table, correction=False, lambda_="log-likelihood")[0]
        served = float(association("llr", [k11], n_x, [n_y], n)[0])
        assert abs(abs(served) - g2) <= 1e-7 * max(1.0, g2)
        if abs(k11 * n - n_x * n_y) > 1e-9 * n * n:
            assert np.sign(served) == np.sign(k11 * n - n_x * n_y) or g2 < 1e-9


def test_forward_decay_scaled_sums_equal_directly_decayed_counts():
    decay = ForwardDecay(half_life_ms=7 * 24 * HOUR_MS, landmark_ms=1_700_000_000_000)
    rng = random.Random(2)
    times = [1_700_000_000_000 + rng.randrange(0, 400) * 24 * HOUR_MS for _ in range(300)]
    now = max(times)
    stored = sum(decay.weight(t) for t in times)
    direct = sum(2.0 ** (-(now - t) / decay.half_life_ms) for t in times)
    assert stored / decay.scale(now) == pytest.approx(direct, rel=1e-12)
    assert float(decay.amount(decay.weight(now))) == decay.weight(now)  # 17 digits survive the trip to Redis


def _oracle_credits(views, orders) -> Counter:
    """(viewed, bought) pairs: each order, each distinct item viewed in the window before it."""
    credits = Counter()
    for order_id, ts, basket in orders:
        for viewed in {sku for sku, viewed_ts in views if ts - WINDOW_MS <= viewed_ts < ts}:
            credits.update((viewed, bought) for bought in basket if bought != viewed)
    return credits


topic_events = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 72)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(views=topic_events, orders=st.lists(st.tuples(st.lists(st.integers(0, 6), min_size=1, max_size=4),
                                                     st.integers(0, 72)), max_size=8),
       interleave=st.randoms(use_true_random=False))
def test_view_purchase_join_is_the_same_for_every_interleaving_of_the_two_topics(views, orders, interleave):
    """Each topic arrives in event-time order; how the two interleave (a replay drains them at different
    speeds) must change neither the credits nor the remembered state."""
    views = sorted((f"s{sku}", hour * HOUR_MS) for sku, hour in views)
    views.sort(key=lambda view: view[1])
    orders = sorted(((f"o{i}", hour * HOUR_MS, sorted({f"s{s}" for s in skus}))
                     for i, (skus, hour) in enumerate(orders)), key=lambda order: order[1])
    expected = _oracle_credits(views, orders)

    def run(flags: list[bool]):
        memory, credits = ItemMemory(), Counter()
        pending_views, pending_orders = list(views), list(orders)
        for take_view in flags:
            if take_view and pending_views:
                sku, ts = pending_views.pop(0)
                found = memory.view(sku, ts, "viewed", window_ms=WINDOW_MS, lateness_ms=LATENESS_MS)
            elif pending_orders:
                order_id, ts, basket = pending_orders.pop(0)
                credit = memory.order(order_id, ts, basket, 1.0, window_ms=WINDOW_MS, lateness_ms=LATENESS_MS,
                                      max_viewed=30)
                found = [credit] if credit else []
            else:
                continue
            for credit in found:
                credits.update((v, b) for v in credit.viewed for b in credit.basket if v != b)
        return credits, memory.to_dict()

    views_first = run([True] * len(views) + [False] * len(orders))
    orders_first = run([False] * len(orders) + [True] * len(views))
    flags = [True] * len(views) + [False] * len(orders)
    interleave.shuffle(flags)
    shuffled = run(flags)
    assert views_first[0] == orders_first[0] == shuffled[0] == expected
    assert views_first[1] == orders_first[1] == shuffled[1]
