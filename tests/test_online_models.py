"""Pure models: one shared contract, plus independent recomputations (numpy / pandas)."""
from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from online_models.activity import CustomerActivity
from online_models.decay import DecayedCount
from online_models.item_memory import ItemMemory
from online_models.purchase_history import DAY_MS, PurchaseHistory
from online_models.quantiles import LinearBuckets, LogBuckets, QuantileSketch
from online_models.rfm import SEGMENT_NAMES, RfmScores, score_from_rank
from online_models.watermark import Watermark

MODELS_DIR = Path(__file__).resolve().parent.parent / "online_models"


def test_online_models_import_neither_kafka_nor_redis():
    forbidden = {"faust", "aiokafka", "redis", "kafka", "streams", "agents", "api"}
    for path in MODELS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def _feed(model, seed: int):
    rng = random.Random(seed)
    for step in range(50):
        ts = 1_700_000_000_000 + rng.randrange(0, 400) * DAY_MS
        if isinstance(model, PurchaseHistory):
            model.add_order(ts, rng.randrange(100, 10_000), rng.randrange(1, 4)) if step % 7 else \
                model.add_refund(ts, rng.randrange(1, 100), 1)
        elif isinstance(model, DecayedCount):
            model.add(ts)
        elif isinstance(model, Watermark):
            model.observe(ts)
        elif isinstance(model, CustomerActivity):
            model.update(rng.choice(["purchases", "interactions"]), ts)
        elif isinstance(model, ItemMemory):
            sku = f"sku-{rng.randrange(30)}"
            if step % 3:
                model.view(sku, ts, "viewed", window_ms=30 * DAY_MS, lateness_ms=DAY_MS)
            else:
                model.order(f"o{step}", ts, [sku, f"sku-{rng.randrange(30)}"], 1.0, window_ms=30 * DAY_MS,
                            lateness_ms=DAY_MS, max_viewed=5)
    return model


ROUND_TRIPS = {
    "purchase_history": (lambda: PurchaseHistory(), PurchaseHistory.from_dict, lambda m: m.to_dict()),
    "decayed_count": (lambda: DecayedCount(7 * DAY_MS), DecayedCount.from_dict, lambda m: m.to_dict()),
    "watermark": (lambda: Watermark(3_600_000), Watermark.from_dict, lambda m: m.to_dict()),
    "activity": (lambda: CustomerActivity(), CustomerActivity.from_dict, lambda m: m.to_dict()),
    "item_memory": (lambda: ItemMemory(), ItemMemory.from_dict, lambda m: m.to_dict()),
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_every_model_is_deterministic_and_round_trips_through_plain_data(name):
    build, load, dump = ROUND_TRIPS[name]
    first, second = _feed(build(), seed=3), _feed(build(), seed=3)
    assert dump(first) == dump(second)
    restored = load(dump(first))
    assert dump(restored) == dump(first)
    # and the restored model keeps computing identically
    assert dump(_feed(restored, seed=4)) == dump(_feed(load(dump(first)), seed=4))


def test_purchase_history_equals_pandas_for_shuffled_arrivals():
    rng = np.random.default_rng(7)
    order_ts = np.sort(rng.integers(0, 500, size=40)) * DAY_MS + rng.integers(0, DAY_MS, size=40)
    amounts = rng.integers(100, 20_000, size=40)
    refunds = [(int(order_ts[i]) + DAY_MS, int(amounts[i]) // 2) for i in (3, 17)]
    events = [("order", int(t), int(a)) for t, a in zip(order_ts, amounts)] + [("refund", t, a) for t, a in refunds]
    # arrivals out of order, but each event at most 5 positions late (bounded lateness)
    arrivals = sorted(range(len(events)), key=lambda i: events[i][1] + rng.integers(0, 5) * DAY_MS)
    history = PurchaseHistory(tail_size=8)
    for i in arrivals:
        kind, ts, amount = events[i]
        history.add_order(ts, amount, 1) if kind == "order" else history.add_refund(ts, amount, 1)

    frame = pd.DataFrame({"ts": order_ts, "amount": amounts})
    gaps_days = frame["ts"].sort_values().diff().dropna() / DAY_MS
    assert history.orders == len(frame)
    assert history.net_minor == frame["amount"].sum() - sum(a for _, a in refunds)
    assert history.distinct_days == (frame["ts"] // DAY_MS).nunique()
    assert history.mean_gap_days == pytest.approx(gaps_days.mean(), rel=1e-12)
    assert history.gap_std_days == pytest.approx(gaps_days.std(ddof=0), rel=1e-9)
    assert (history.first_order_ms, history.last_order_ms) == (frame["ts"].min(), frame["ts"].max())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=2, max_size=30), st.randoms())
def test_arrival_order_within_the_tail_does_not_change_the_history(days, shuffler):
    ordered, shuffled = PurchaseHistory(tail_size=32), PurchaseHistory(tail_size=32)
    for day in sorted(days):
        ordered.add_order(day * DAY_MS, 100, 1)
    arrivals = list(days)
    shuffler.shuffle(arrivals)
    for day in arrivals:
        shuffled.add_order(day * DAY_MS, 100, 1)
    assert shuffled.to_dict() == ordered.to_dict()


def test_decayed_count_is_order_insensitive():
    stamps = [0, 5 * DAY_MS, 2 * DAY_MS, 9 * DAY_MS, 1 * DAY_MS]
    forward, backward = DecayedCount(7 * DAY_MS), DecayedCount(7 * DAY_MS)
    for ts in stamps:
        forward.add(ts)
    for ts in reversed(stamps):
        backward.add(ts)
    expected = sum(2 ** (-(10 * DAY_MS - ts) / (7 * DAY_MS)) for ts in stamps)
    assert forward.value_at(10 * DAY_MS) == pytest.approx(expected, rel=1e-12)
    assert backward.value_at(10 * DAY_MS) == pytest.approx(expected, rel=1e-12)


def test_log_sketch_quantiles_are_within_alpha_of_numpy():
    values = np.random.default_rng(1).lognormal(8, 1.5, size=20_000)
    sketch = QuantileSketch(LogBuckets(0.01))
    for value in values:
        sketch.add(float(value))
    for q in (0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 0.95):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert abs(sketch.quantile(q) / exact - 1) <= 0.01 + 1e-9, q
    assert len(sketch.counts) < 1000


def test_sketch_tracks_a_changing_population_exactly_with_replace_and_merge():
    rng = random.Random(5)
    current = {customer: rng.randrange(1, 20) for customer in range(500)}
    left, right = QuantileSketch(LinearBuckets(1)), QuantileSketch(LinearBuckets(1))
    for customer, orders in current.items():
        (left if customer % 2 else right).add(orders)
    for _ in range(2000):  # customers place more orders; each shard updates its own customers
        customer = rng.randrange(500)
        (left if customer % 2 else right).replace(current[customer], current[customer] + 1)
        current[customer] += 1
    merged = QuantileSketch(LinearBuckets(1))
    merged.merge(left)
    merged.merge(right)
    values = np.array(list(current.values()))
    for probe in (1, 5, 10, 15, 30):
        exact = ((values < probe).sum() + (values == probe).sum() / 2) / len(values)
        assert merged.midrank(probe) == pytest.approx(exact)


def test_every_rfm_cell_has_one_name_and_all_eleven_names_occur():
    names = {RfmScores(r, f, m).segment for r, f, m in itertools.product(range(1, 6), repeat=3)}
    assert names == set(SEGMENT_NAMES)


def test_rfm_scores_are_quintiles_of_the_population():
    sketch = QuantileSketch(LinearBuckets(1))
    for orders in range(1, 101):
        sketch.add(orders)
    assert [score_from_rank(sketch.midrank(x)) for x in (1, 20, 21, 50, 80, 81, 100)] == [1, 1, 2, 3, 4, 5, 5]


def test_weighted_prequential_figures_match_scikit_learn_and_pandas_on_the_population_they_stand_for():
    """A thinned example of weight w counts as w examples: ROC AUC against scikit-learn's sample weights,
    decile calibration against pandas on the examples repeated w times, log loss against scikit-learn."""
    from sklearn.metrics import log_loss, roc_auc_score

    from online_models.prequential import PrequentialMetrics, calibration_by_decile

    rng = np.random.default_rng(3)
    p = np.round(rng.uniform(0.01, 0.99, 400), 2)  # rounded: ties, counted half
    y = (rng.random(400) < p).astype(int)
    w = rng.choice([1, 4], 400)
    metrics = PrequentialMetrics(window=1000)
    for pi, yi, wi in zip(p, y, w):
        metrics.update(float(pi), int(yi), float(wi))
    window = metrics.report()["window"]
    assert window["roc_auc"] == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert metrics.recent_log_loss() == pytest.approx(log_loss(y, p, sample_weight=w), abs=1e-12)
    repeated = pd.DataFrame({"p": np.repeat(p, w), "y": np.repeat(y, w)}).sort_values("p", kind="mergesort")
    weighted = calibration_by_decile(p, y, w)
    unrolled = calibration_by_decile(repeated["p"].to_numpy(), repeated["y"].to_numpy())
    for ours, theirs in zip(weighted, unrolled):  # same deciles up to examples straddling a decile border
        assert ours["predicted"] == pytest.approx(theirs["predicted"], abs=0.02)
        assert ours["observed"] == pytest.approx(theirs["observed"], abs=0.06)


def test_the_window_as_a_ring_reports_what_the_deque_did_and_old_checkpoints_resume_with_their_window():
    """The window's predictions are kept as a ring of arrays (a report per version cut no longer converts a deque
    of tuples): its figures equal the same window recomputed with scikit-learn, over a ring that wrapped; a
    checkpoint pickled before (a deque in ``recent``) resumes with its window and goes on identically."""
    import pickle
    from collections import deque

    from sklearn.metrics import roc_auc_score

    from online_models.prequential import PrequentialMetrics

    rng = np.random.default_rng(5)
    p, y, w = np.round(rng.uniform(0.01, 0.99, 130), 2), (rng.random(130) < 0.4).astype(int), rng.choice([1, 3], 130)
    metrics = PrequentialMetrics(window=50)
    for pi, yi, wi in zip(p, y, w):
        metrics.update(float(pi), int(yi), float(wi))
    window = metrics.report()["window"]
    assert window["count"] == 50
    assert window["roc_auc"] == pytest.approx(roc_auc_score(y[-50:], p[-50:], sample_weight=w[-50:]), abs=1e-12)
    assert window["brier"] == pytest.approx(np.average((p[-50:] - y[-50:]) ** 2, weights=w[-50:]), abs=1e-12)
    old = dict(metrics.__dict__)
    for name in ("_recent", "_recent_at", "_recent_count"):
        del old[name]
    old["recent"] = deque(zip(p[-50:].tolist(), y[-50:].tolist(), w[-50:].astype(float).tolist()), maxlen=50)
    restored = PrequentialMetrics.__new__(PrequentialMetrics)
    restored.__setstate__(pickle.loads(pickle.dumps(old)))
    assert restored.window == 50 and restored.report() == metrics.report()
    for resumed in (restored, metrics):
        resumed.update(0.5, 1, 2.0)
    assert restored.report() == metrics.report()


def test_thinned_examples_stand_for_every_checkpoint_of_a_silent_spell():
    from online_models.hazard import ExampleClock, HazardConfig

    config = HazardConfig(thin_every=4, thin_after_steps=13)
    step = config.step_ms
    at = lambda t, anchors: ([t / DAY_MS], None)  # noqa: E731 - features: the day; no anchor
    for start in (0, 1_000, 2_000, 3_000):  # four phases
        thinned, full = ExampleClock(), ExampleClock()
        thinned.open(start, at, config)
        full.open(start, at, HazardConfig())
        kept = thinned.advance(start + 52 * step, at, config)
        every = full.advance(start + 52 * step, at, HazardConfig())
        assert len(every) == 52 and [e.weight for e in every] == [1] * 52
        assert all(e.weight == 1 for e in kept[:13]) and {e.weight for e in kept[13:]} == {4}
        assert abs(sum(e.weight for e in kept) - 52) < 4  # the 39 deep checkpoints, one in four, each counting 4
        assert {e.checkpoint_ms for e in kept} <= {e.checkpoint_ms for e in every}
