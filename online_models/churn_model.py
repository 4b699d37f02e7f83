"""Online churn learners, the trainer that picks the served one, and its snapshots.

Two river learners see every closed hazard example (:mod:`online_models.hazard`),
each predicting it before learning it (prequential evaluation): a scaled logistic
regression and a Hoeffding tree. The served model is the one with the lower log loss
over the recent window. An ADWIN detector watches the served model's error stream
and reports drift.

Snapshots are plain data, scored with numpy for a whole batch at once: the linear
learner as scaler means/deviations and weights, the tree as arrays of splits and leaf
probabilities. Nothing a scorer reads from Redis is ever unpickled.

Why a Hoeffding tree and not the adaptive one: on the simulated history the plain
tree learned at 51 µs per example against 258 µs for ``HoeffdingAdaptiveTreeClassifier``
with the same prequential quality (window ROC AUC 0.799 vs 0.792, log loss 0.382 vs
0.379), and its single path per row has a plain form (the adaptive tree's predictions
mix alternate subtrees weighted by their error). Drift is followed by the AdaGrad-trained
logistic learner, which is served whenever its recent log loss is lower.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from river import drift, linear_model, optim, preprocessing, tree
from river.tree.base import Branch
from river.tree.nodes.branch import NumericBinaryBranch

from online_models import bgnbd
from online_models.churn_features import (EXPLAINED, FEATURES, MODEL_EXPLAINED, MODEL_FEATURES, POPULATION_FEATURES,
                                          as_current, population_columns, with_population_columns)
from online_models.clv import ClvPrior, rate_and_alive
from online_models.hazard import HazardConfig, no_order_probability
from online_models.prequential import PrequentialMetrics

__all__ = ["HazardLearner", "make_learners", "PlattCalibrator", "ChurnTrainer", "HazardScorer", "LinearHazardScorer",
           "TreeHazardScorer", "NamedColumnsScorer", "scorer_from_snapshot", "prior_churn_probability",
           "churn_probabilities", "top_contributions"]


class HazardLearner(Protocol):
    """What the trainer needs of a model: river's ``predict_proba_one`` / ``learn_one``."""

    def predict_proba_one(self, x: dict) -> dict: ...

    def learn_one(self, x: dict, y: bool, w: float = 1.0) -> None: ...


def make_learners(seed: int = 42) -> dict[str, HazardLearner]:
    """The competing learners: a scaled logistic regression and a Hoeffding tree.

    AdaGrad rather than plain SGD: the hinge columns are non-zero for few examples, and a per-column step
    lets them learn at their own pace (measured, four cutoffs pooled: worst 90-day decile 0.07 against
    0.16 with SGD(0.02)); no L2, which kept shrinking those rare columns between their updates."""
    return {
        "logistic": preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.AdaGrad(0.1), intercept_lr=0.02, l2=0.0),
        "hoeffding_tree": tree.HoeffdingTreeClassifier(grace_period=300, leaf_prediction="mc", max_depth=8),
    }


def _positive(probabilities: dict) -> float:
    return float(probabilities.get(True, 0.0))


_EDGE = 1e-6  # probabilities are kept this far from 0 and 1 before taking log-odds


def _logit(p: float) -> float:
    p = min(max(p, _EDGE), 1 - _EDGE)
    return math.log(p / (1 - p))


@dataclass
class PlattCalibrator:
    """Online Platt scaling ``q = σ(slope · logit(p) + offset)`` of a learner's probability, by SGD on log
    loss. Why: SGD-trained learners are overconfident at the extremes (measured: the logistic
    learner's top decile predicted 0.58 for 0.53 observed), and hazards compose over 13 steps, so a
    small bias per step becomes a large one in ``churn_p``. Two parameters adapt fast and stay
    monotone (ranking, hence ROC AUC, is unchanged). A linear learner folds them into its weights.

    >>> calibrator = PlattCalibrator()
    >>> rng = np.random.default_rng(1)
    >>> for _ in range(20000):                       # the learner says 0.4, the truth is 0.2
    ...     calibrator.learn(0.4, bool(rng.random() < 0.2))
    >>> round(calibrator(0.4), 2)
    0.2
    """

    slope: float = 1.0
    offset: float = 0.0
    learning_rate: float = 0.002

    def __call__(self, p: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.slope * _logit(p) + self.offset)))

    def many(self, p: np.ndarray) -> np.ndarray:
        """:meth:`__call__` for an array of probabilities (scorers calibrate a whole batch at once)."""
        p = np.clip(p, _EDGE, 1 - _EDGE)
        return 1.0 / (1.0 + np.exp(-(self.slope * np.log(p / (1 - p)) + self.offset)))

    def learn(self, p: float, purchased: bool, weight: float = 1.0) -> None:
        z = _logit(p)
        error = (1.0 / (1.0 + math.exp(-(self.slope * z + self.offset))) - purchased) * weight
        self.slope -= self.learning_rate * error * z
        self.offset -= self.learning_rate * error


def _learn(learner: HazardLearner, x: dict, purchased: bool, weight: float) -> None:
    """``learn_one``, naming the weight only when it is not 1: a river pipeline routes named arguments to its
    steps on every call, a cost the unweighted (common) case need not pay."""
    if weight == 1:
        learner.learn_one(x, purchased)
    else:
        learner.learn_one(x, purchased, w=weight)


#: Examples the served linear model is averaged over at least (:meth:`ChurnTrainer._average_linear`).
AVERAGED_EXAMPLES = 2500

#: Positive examples (orders within the step) the served linear model is averaged over, when that is more
#: examples than :data:`AVERAGED_EXAMPLES` (a shop whose customers rarely order).
AVERAGED_POSITIVES = 450

#: Examples the trainer keeps for rehearsal (a uniform sample of all it has learned).
REHEARSAL_SIZE = 5000


class Rehearsal:
    """A uniform sample of the examples seen so far (reservoir sampling), drawn from at random with the weight
    each was learned with; seeded, so a replay of the same examples trains the same model.

    >>> memory = Rehearsal(size=3, seed=1)
    >>> for i in range(100):
    ...     memory.remember([float(i)], i % 2 == 0)
    >>> row, label, weight = memory.draw()
    >>> memory.filled, memory.seen, row in memory.rows.tolist(), weight
    (3, 100, True, 1.0)
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen, self.filled = size, 0, 0
        self.rows = np.empty((0, 0), dtype=np.float32)
        self.labels = np.zeros(size, dtype=bool)
        self.weights = np.ones(size, dtype=np.float32)
        self._rng = random.Random(seed)

    def __setstate__(self, state: dict) -> None:
        """Checkpoints from before weighted examples resume with every remembered example weighing 1."""
        self.__dict__.update(state)
        self.__dict__.setdefault("weights", np.ones(self.size, dtype=np.float32))

    def upgrade_rows(self) -> None:
        """Rows remembered under an earlier feature list, as today's (:func:`as_current`)."""
        if self.filled and self.rows.shape[1] != len(FEATURES):
            self.rows = np.array([as_current(row) for row in self.rows.tolist()], dtype=np.float32)

    def remember(self, row: list[float], label: bool, weight: float = 1.0) -> None:
        if self.filled == 0:
            self.rows = np.zeros((self.size, len(row)), dtype=np.float32)
        self.seen += 1
        slot = self.filled if self.filled < self.size else self._rng.randrange(self.seen)
        if slot < self.size:
            self.rows[slot], self.labels[slot], self.weights[slot] = row, label, weight
            self.filled = min(self.filled + 1, self.size)

    def draw(self) -> tuple[list[float], bool, float] | None:
        if self.filled == 0:
            return None
        slot = self._rng.randrange(self.filled)
        return self.rows[slot].tolist(), bool(self.labels[slot]), float(self.weights[slot])


class ChurnTrainer:
    """Learns the hazard of an order within one step, prequentially, with every learner.

    >>> trainer = ChurnTrainer(window=100)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(600):
    ...     silence = rng.uniform(0, 5)
    ...     x = dict.fromkeys(FEATURES, 0.0) | {"log_silence_days": silence}
    ...     _ = trainer.learn(x, bool(rng.random() < 1 / (1 + math.exp(silence - 2.5))))
    >>> trainer.examples, trainer.metrics["logistic"].report()["overall"]["roc_auc"] > 0.7
    (600, True)
    """

    def __init__(self, learners: dict[str, HazardLearner] | None = None, window: int = 5000,
                 rehearsal: int = REHEARSAL_SIZE, seed: int = 42, step_days: float = 7.0,
                 average_examples: int = AVERAGED_EXAMPLES, average_positives: int = AVERAGED_POSITIVES) -> None:
        self.learners = learners or make_learners()
        self.step_days = step_days
        self.buyers = bgnbd.BuyerSample()
        self.population: bgnbd.BgNbdParams | None = None  # the BG/NBD fit behind the population columns
        self._fitted_at = (0, 0)  # (examples, sampled buyers) at the last fit
        self._now_days = 0.0  # the newest checkpoint seen: the population's "now"
        self.averaged: np.ndarray | None = None  # the served linear form, averaged (:meth:`_average_linear`)
        self.average_examples = average_examples  # 0: serve the last iterate
        self.average_positives = average_positives  # 0: a window of average_examples, whatever the order rate
        self.rehearsal = Rehearsal(rehearsal, seed)
        self.calibrators = {name: PlattCalibrator() for name in self.learners}
        self.metrics = {name: PrequentialMetrics(window) for name in self.learners}
        self.drift = drift.ADWIN()
        self.drifts: list[int] = []
        self.examples = 0
        self.positives = 0
        self.feature_sums = np.zeros(len(MODEL_FEATURES))
        self.feature_range = np.array([[np.inf] * len(MODEL_FEATURES), [-np.inf] * len(MODEL_FEATURES)])

    def __setstate__(self, state: dict) -> None:
        """Checkpoints from earlier versions resume: fresh calibrators where there were none, a fresh
        learner (and metrics) where the learner's kind changed; what is kept per feature (sums, range, the
        averaged model, the remembered rows) moved to today's feature list by name, a new feature's sum and
        weight 0, its range unbounded (river learners take new features as they come)."""
        self.__dict__.update(state)
        self.__dict__.setdefault("calibrators", {name: PlattCalibrator() for name in self.learners})
        self.__dict__.setdefault("rehearsal", Rehearsal(REHEARSAL_SIZE, 42))
        for name, value in (("step_days", 7.0), ("buyers", bgnbd.BuyerSample()), ("population", None),
                            ("_fitted_at", (0, 0)), ("_now_days", 0.0), ("averaged", None),
                            ("average_examples", AVERAGED_EXAMPLES), ("average_positives", AVERAGED_POSITIVES)):
            self.__dict__.setdefault(name, value)
        for name, learner in make_learners().items():
            if type(self.learners.get(name)) is not type(learner):
                self.learners[name], self.calibrators[name] = learner, PlattCalibrator()
                self.metrics[name] = PrequentialMetrics(self.metrics[name].window)
        if len(self.feature_sums) != len(MODEL_FEATURES):
            self.feature_sums = np.array(as_current(self.feature_sums, model=True))
        # Learnt before the range was kept: an unbounded range, so its snapshots score unclipped (:meth:`snapshot`
        # exports a range only when it is finite).
        self.__dict__.setdefault("feature_range", np.array([[-np.inf] * len(MODEL_FEATURES),
                                                            [np.inf] * len(MODEL_FEATURES)]))
        if self.feature_range.shape[1] != len(MODEL_FEATURES):
            low, high = self.feature_range
            self.feature_range = np.array([as_current(low, True, -np.inf), as_current(high, True, np.inf)])
        if self.averaged is not None and len(self.averaged) != len(MODEL_FEATURES) + 1:
            self.averaged = np.array(as_current(self.averaged[:-1], model=True) + [self.averaged[-1]])
        self.rehearsal.upgrade_rows()

    def predict(self, name: str, x: dict[str, float]) -> float:
        """Learner ``name``'s calibrated probability of an order within the step (``x``: :data:`FEATURES`)."""
        model_x = dict(zip(MODEL_FEATURES, self._model_row([x[f] for f in FEATURES])))
        return self.calibrators[name](_positive(self.learners[name].predict_proba_one(model_x)))

    def _model_row(self, row: list[float]) -> list[float]:
        """A row of :data:`FEATURES` with the population columns under the current fit."""
        return list(row) + population_columns(row, self.population, self.step_days)

    def observe_buyer(self, buyer: str, at_ms: int, x: dict[str, float]) -> None:
        """Remember the buyer's orders, silence and tenure at ``at_ms`` (an example's checkpoint) for the
        population fit, and refit BG/NBD when due: first at 200 sampled buyers, then every 10,000 examples or
        when the sample doubled. Deterministic: a replay of the same examples fits the same parameters."""
        at_days = at_ms / 86_400_000
        self._now_days = max(self._now_days, at_days)
        age = max(math.expm1(x["log_tenure_days"]), 0.0)
        self.buyers.observe(buyer, at_days, max(round(math.expm1(x["log_orders"])) - 1, 0),
                            min(max(age - math.expm1(x["log_silence_days"]), 0.0), age), age)
        fitted_examples, fitted_buyers = self._fitted_at
        sampled = len(self.buyers)
        if sampled >= 200 and (self.population is None or self.examples - fitted_examples >= 10_000
                               or sampled >= 2 * fitted_buyers):
            repeats, last_order_age, age_now = self.buyers.summaries(self._now_days)
            self.population = bgnbd.fit(repeats, last_order_age, age_now, start=self.population)
            self._fitted_at = (self.examples, sampled)

    def learn(self, x: dict[str, float], purchased: bool, weight: float = 1.0, buyer: str | None = None,
              at_ms: int | None = None) -> dict[str, float]:
        """Predict the example (``x``: :data:`FEATURES`) with every learner (calibrated), then learn it,
        counting ``weight`` times (a thinned example stands for several:
        :meth:`~online_models.hazard.HazardConfig.thinning_weight`); returns the predictions. ``buyer`` and
        ``at_ms`` (its checkpoint) feed the population fit (:meth:`observe_buyer`)."""
        if buyer is not None and at_ms is not None:
            self.observe_buyer(buyer, at_ms, x)
        wire = [x[name] for name in FEATURES]
        row = self._model_row(wire)
        x = dict(zip(MODEL_FEATURES, row))
        served = self.served()
        predictions = {}
        for name, learner in self.learners.items():
            raw = _positive(learner.predict_proba_one(x))
            predictions[name] = p = self.calibrators[name](raw)
            self.metrics[name].update(p, int(purchased), weight)
            self.calibrators[name].learn(raw, purchased, weight)
            _learn(learner, x, purchased, weight)
        self._rehearse(wire, purchased, weight)
        if "logistic" in self.learners and self.average_examples:
            self._average_linear()
        self.drift.update(abs(int(purchased) - predictions[served]))
        if self.drift.drift_detected:
            self.drifts.append(self.examples)
        self.examples += 1
        self.positives += purchased
        values = np.asarray(row)  # once, not per use: this runs for every example
        self.feature_sums += values
        np.minimum(self.feature_range[0], values, out=self.feature_range[0])
        np.maximum(self.feature_range[1], values, out=self.feature_range[1])
        return predictions

    def _rehearse(self, row: list[float], purchased: bool, weight: float) -> None:
        """The linear learner also relearns one remembered example per new one (experience replay), then
        the new one is remembered. Why: one stochastic pass is far from the batch optimum on rare columns (the
        hinges), and its error compounds over 13 composed steps; measured, four cutoffs pooled: worst
        90-day decile 0.040 with rehearsal, 0.070 without, ROC AUC unchanged. The tree does not rehearse:
        its Hoeffding bound assumes each example is seen once. Metrics and calibration stay prequential."""
        remembered = self.rehearsal.draw()
        if remembered is not None and "logistic" in self.learners:
            remembered_row, remembered_label, remembered_weight = remembered
            _learn(self.learners["logistic"], dict(zip(MODEL_FEATURES, self._model_row(remembered_row))),
                   remembered_label, remembered_weight)
        self.rehearsal.remember(row, purchased, weight)

    def _average_linear(self) -> None:
        """Keep a moving average (over the last ~:data:`AVERAGED_EXAMPLES`) of the calibrated logistic learner's
        weights and intercept (on its scaled features, the calibration folded in). Why: a stochastic learner's
        weights, its intercept above all (plain SGD), wander from example to example, and any one moment's
        snapshot carries that noise into every composed ``churn_p``: measured on the sparse profile, the 90-day
        calibration of single snapshots varied from 0.02 to 0.11 between cutoffs a few weeks apart (averaged
        over 2,500 examples: 0.023 to 0.040; docs/churn.md). Averaging the iterates (Polyak) keeps the signal
        and cancels the wander."""
        current = _calibrated_linear(self.learners["logistic"], self.calibrators["logistic"])
        if self.averaged is None or len(self.averaged) != len(current):
            self.averaged = current
        else:
            self.averaged += (current - self.averaged) / min(self.examples + 1, self.average_window())

    def average_window(self) -> int:
        """Examples the served linear model is averaged over: :data:`AVERAGED_EXAMPLES`, or as many as hold
        ``average_positives`` orders at the rate seen so far, whichever is more, but no more than a tenth of the
        examples seen. Why: a rare-event learner's wander follows the few positives, not the many examples;
        measured (bench/churn_cutoff.py): a fixed 2,500 suits a busy shop (dense, 17 % of examples an order) but
        on sparse histories (1.6 to 2.9 %) the served model ranked 0.005 to 0.006 below batch logistic regression;
        a fixed 10,000 or 20,000 closed that and put the dense calibration past 0.05 (0.052, 0.088). Without the
        cap a small sparse shop (2,000 customers) averaged over 40 % of its history, and lagged (calibration 0.132).

        >>> trainer = ChurnTrainer()
        >>> trainer.examples, trainer.positives = 200_000, 3_000
        >>> trainer.average_window()
        20000
        >>> trainer.examples = 100_000
        >>> trainer.average_window()
        10000
        >>> trainer.positives = 20_000
        >>> trainer.average_window()
        2500
        """
        if not self.average_positives:
            return self.average_examples
        by_positives = self.average_positives * self.examples // max(self.positives, 1)
        return max(self.average_examples, min(by_positives, self.examples // 10))

    def served(self) -> str:
        """The learner with the lower recent log loss (the linear one until both have a window)."""
        losses = {name: metrics.recent_log_loss() for name, metrics in self.metrics.items()}
        if any(loss is None for loss in losses.values()):
            return "logistic"
        return min(losses, key=losses.get)

    def report(self) -> dict:
        return {"examples": self.examples, "positives": self.positives, "served": self.served(),
                "drifts_detected": len(self.drifts), "last_drift_at_example": self.drifts[-1] if self.drifts else None,
                "learners": {name: metrics.report() for name, metrics in self.metrics.items()}}

    def snapshot(self, version: int, created_at_ms: int, served: str | None = None) -> dict:
        """The served model (or the learner named ``served``) as a snapshot dict (JSON-ready)."""
        served = served or self.served()
        means = (self.feature_sums / max(self.examples, 1)).tolist()
        calibrator = self.calibrators[served]
        if served == "logistic":
            model = _linear_form(self.learners["logistic"], calibrator, self.averaged)
            if np.isfinite(self.feature_range).all():
                model["lows"], model["highs"] = self.feature_range.tolist()
        else:
            model = _tree_form(self.learners[served], calibrator)
        population = None if self.population is None else self.population.to_dict()
        return {"version": version, "created_at_ms": created_at_ms, "served": served,
                "features": list(MODEL_FEATURES), "population": population, "step_days": self.step_days,
                "feature_means": means, "model": model, "metrics": self.report()}


def _calibrated_linear(pipeline, calibrator: PlattCalibrator) -> np.ndarray:
    """The calibrated logistic learner's weights on the scaled features, and its intercept (last):
    σ(a·(b + Σ w_i z_i) + c) = σ(Σ (a·w_i) z_i + a·b + c), with z_i the feature scaled by the learner's scaler."""
    weights = pipeline["LogisticRegression"].weights
    slope = calibrator.slope
    form = np.array([slope * weights.get(name, 0.0) for name in MODEL_FEATURES] + [0.0])
    form[-1] = slope * pipeline["LogisticRegression"].intercept + calibrator.offset
    return form


def _linear_form(pipeline, calibrator: PlattCalibrator, averaged: np.ndarray | None = None) -> dict:
    """Scaler and weights with the calibration folded in (:func:`_calibrated_linear`), or ``averaged``: the
    moving average of those forms (on the scaler as it is now; it moves far slower than the weights)."""
    scaler = pipeline["StandardScaler"]
    form = averaged if averaged is not None and len(averaged) == len(MODEL_FEATURES) + 1 else \
        _calibrated_linear(pipeline, calibrator)
    return {"kind": "linear",
            "means": [float(scaler.means.get(name, 0.0)) for name in MODEL_FEATURES],
            "stds": [math.sqrt(scaler.vars.get(name, 0.0)) for name in MODEL_FEATURES],
            "weights": form[:-1].tolist(), "intercept": float(form[-1])}


def _tree_form(model, calibrator: PlattCalibrator) -> dict:
    """A Hoeffding tree as plain arrays: per node the feature index (-1 for a leaf), threshold, children and
    the leaf's probability of an order (its class counts, as river's majority-class leaf predicts)."""
    nodes: list[list] = []

    def visit(node) -> int:
        index = len(nodes)
        nodes.append([-1, 0.0, -1, -1, 0.0])
        if isinstance(node, NumericBinaryBranch):
            left, right = visit(node.children[0]), visit(node.children[1])
            nodes[index] = [MODEL_FEATURES.index(node.feature), float(node.threshold), left, right, 0.0]
        elif isinstance(node, Branch):
            raise ValueError(f"no plain form for {type(node).__name__}")
        elif node is not None:
            total = sum(node.stats.values())
            nodes[index][4] = float(node.stats.get(True, 0.0) / total) if total else 0.0
        return index

    visit(model._root)
    feature, threshold, left, right, positive = (list(column) for column in zip(*nodes))
    return {"kind": "tree", "feature": feature, "threshold": threshold, "left": left, "right": right,
            "positive": positive, "depth": model.height,
            "calibration": [float(calibrator.slope), float(calibrator.offset)]}


class HazardScorer(Protocol):
    version: int

    def hazards(self, rows: np.ndarray) -> np.ndarray: ...

    def contributions(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class LinearHazardScorer:
    """Plain-data logistic hazard: ``h = σ(b + Σ w_i (x_i - μ_i) / σ_i)``, vectorised over rows, each column
    first held within the range the learner has seen (``lows``, ``highs``; none: unclipped).

    Why the range: a silence path runs 13 steps past the customer's present, and a column there can lie beyond
    every example learnt, where a linear model extrapolates its weight without bound. A hinge that has only begun
    to be non-zero is the worst case: ``tenure_over_365d`` in a shop's second year, a variance near 0 and a
    weight divided by it; on the dense profile (seed 8) the base's mean churn_p went from 0.61 in one version
    to 0.43 in the next, a decile off by 0.46 (bench/churn_cutoff.py). Held to the range, a path step beyond
    it is scored as the furthest row the model has learnt from.

    >>> scorer = LinearHazardScorer(1, np.zeros(1), np.full(1, 0.001), np.ones(1), 0.0, np.zeros(1), np.full(1, 0.002))
    >>> [round(float(h), 3) for h in scorer.hazards(np.array([[0.0], [0.002], [0.1]]))]
    [0.5, 0.881, 0.881]
    """

    version: int
    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray
    intercept: float
    lows: np.ndarray | None = None
    highs: np.ndarray | None = None

    def _held(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.lows is None else np.clip(rows, self.lows, self.highs)

    def _scaled(self, rows: np.ndarray) -> np.ndarray:
        safe = np.where(self.stds > 0, self.stds, 1.0)
        return np.where(self.stds > 0, (self._held(rows) - self.means) / safe, 0.0)

    def __post_init__(self) -> None:
        # The scaling folded into the weights: hazards of a whole batch of paths are one matrix product.
        self._weights = np.where(self.stds > 0, self.weights / np.where(self.stds > 0, self.stds, 1.0), 0.0)
        self._intercept = self.intercept - float(self.means @ self._weights)

    def hazards(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self._held(rows) @ self._weights + self._intercept)))

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """Each feature's push on the churn log-odds now (positive raises churn risk), i.e. minus its
        term in the hazard logit: a customer's deviation from the average customer, weighted."""
        return -(self._scaled(rows) * self.weights)


@dataclass
class TreeHazardScorer:
    """Plain-data decision tree, evaluated for all rows at once (one pass per level), then calibrated;
    contributions by occlusion: a feature set to its mean over the examples, the change in log hazard."""

    version: int
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    positive: np.ndarray
    depth: int
    calibration: PlattCalibrator
    feature_means: np.ndarray

    def _leaf_probability(self, rows: np.ndarray) -> np.ndarray:
        node = np.zeros(len(rows), dtype=np.int64)
        for _ in range(self.depth + 1):
            feature = self.feature[node]
            branch = feature >= 0
            if not branch.any():
                break
            goes_left = rows[np.arange(len(rows)), np.maximum(feature, 0)] <= self.threshold[node]
            node = np.where(branch, np.where(goes_left, self.left[node], self.right[node]), node)
        return self.positive[node]

    def hazards(self, rows: np.ndarray) -> np.ndarray:
        return self.calibration.many(self._leaf_probability(rows))

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        count, width = rows.shape
        occluded = np.repeat(rows[:, None, :], width + 1, axis=1)
        occluded[:, np.arange(1, width + 1), np.arange(width)] = self.feature_means
        logits = np.log(np.clip(self.hazards(occluded.reshape(-1, width)), 1e-9, 1 - 1e-9)).reshape(count, width + 1)
        return logits[:, 1:] - logits[:, :1]  # hazard falls when the feature is real: churn rises


@dataclass
class NamedColumnsScorer:
    """A model learned on other columns than the rows of :data:`FEATURES` it scores: :data:`MODEL_FEATURES`
    (the population columns are computed here, under the BG/NBD fit the snapshot was learned with; silence paths
    carry plain rows), or an earlier feature list (its columns are picked by name: a snapshot served before an
    upgrade keeps scoring until the next version). Contributions come back on all the columns, 0 where the
    model has none.

    >>> weights = {"log_silence_days": 1.0, "log_orders": -0.5}
    >>> snapshot = {"version": 3, "features": list(weights), "model": {"kind": "linear", "means": [0.0, 0.0],
    ...             "stds": [1.0, 1.0], "weights": list(weights.values()), "intercept": 0.0}}
    >>> row = np.zeros((1, len(FEATURES)))
    >>> row[0, FEATURES.index("log_silence_days")], row[0, FEATURES.index("log_complaints")] = 2.0, 5.0
    >>> scorer = scorer_from_snapshot(snapshot)
    >>> round(float(scorer.hazards(row)[0]), 4) == round(1 / (1 + math.exp(-2.0)), 4)
    True
    >>> scorer.contributions(row).shape == (1, len(FEATURES))
    True
    """

    inner: HazardScorer
    columns: np.ndarray | None      # positions of the model's columns in the completed rows (None: all, in order)
    population: bgnbd.BgNbdParams | None
    step_days: float
    completed: bool                 # the rows are completed with the population columns

    @property
    def version(self) -> int:
        return self.inner.version

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        if self.completed:
            rows = with_population_columns(rows, self.population, self.step_days)
        return rows if self.columns is None else rows[..., self.columns]

    def hazards(self, rows: np.ndarray) -> np.ndarray:
        return self.inner.hazards(self._rows(rows))

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        inner = self.inner.contributions(self._rows(rows))
        if self.columns is None:
            return inner
        spread = np.zeros(inner.shape[:-1] + (len(MODEL_FEATURES if self.completed else FEATURES),))
        spread[..., self.columns] = inner
        return spread


def scorer_from_snapshot(snapshot: dict) -> HazardScorer:
    """A scorer for a snapshot (plain data: nothing is unpickled). Snapshots from before the population columns
    (``features`` = :data:`FEATURES`) are still served as they are, those of an earlier feature list by name
    (:class:`NamedColumnsScorer`)."""
    features = tuple(snapshot["features"])
    if not set(features) <= set(MODEL_FEATURES) or len(set(features)) != len(features):
        raise ValueError("snapshot built for other features")
    model = snapshot["model"]
    if model["kind"] == "linear":
        held = (np.array(model["lows"]), np.array(model["highs"])) if "lows" in model else (None, None)
        inner = LinearHazardScorer(snapshot["version"], np.array(model["means"]), np.array(model["stds"]),
                                   np.array(model["weights"]), float(model["intercept"]), *held)
    elif model["kind"] == "tree":
        inner = TreeHazardScorer(snapshot["version"], *(np.array(model[name]) for name in
                                                        ("feature", "threshold", "left", "right", "positive")),
                                 int(model["depth"]), PlattCalibrator(*model["calibration"]),
                                 np.array(snapshot["feature_means"]))
    else:
        raise ValueError(f"unknown model kind {model['kind']!r}")
    if len(inner.means if model["kind"] == "linear" else inner.feature_means) != len(features):
        raise ValueError("snapshot's model does not match its features")
    if features == FEATURES:
        return inner
    completed = any(name in POPULATION_FEATURES for name in features)
    columns = None if features == MODEL_FEATURES else np.array(
        [(MODEL_FEATURES if completed else FEATURES).index(name) for name in features])
    population = snapshot.get("population")
    return NamedColumnsScorer(inner, columns, None if population is None else bgnbd.BgNbdParams.from_dict(population),
                              float(snapshot.get("step_days", 7.0)), completed)


def churn_probabilities(scorer: HazardScorer, paths: np.ndarray, config: HazardConfig) -> np.ndarray:
    """P(no order within the horizon) of many customers, with one model evaluation over all their silence
    paths: ``paths`` is customers × steps × features."""
    customers, steps, width = paths.shape
    return no_order_probability(scorer.hazards(paths.reshape(customers * steps, width)).reshape(customers, steps),
                                config)


def prior_churn_probability(orders: int, days_since_first_order: float, days_first_to_last: float,
                            horizon_days: float, prior: ClvPrior = ClvPrior()) -> float:
    """Cold-start churn risk before the model has learned enough: the CLV prior's buyer
    (Poisson rate λ while alive, dropout rate μ, P(alive) from the silence) buys nothing within
    H days with probability ``1 - A + A·(μ + λ·e^{-(λ+μ)H})/(λ+μ)``. It rises with silence.

    >>> fresh = prior_churn_probability(3, 100, 100, 90)
    >>> silent = prior_churn_probability(3, 200, 100, 90)
    >>> 0 < fresh < silent < 1
    True
    """
    rate, alive = rate_and_alive(orders, days_since_first_order, days_first_to_last, prior)
    dropout = 1.0 / prior.mean_lifetime_days
    total = rate + dropout
    no_order_if_alive = (dropout + rate * math.exp(-total * horizon_days)) / total
    return 1.0 - alive + alive * no_order_if_alive


def top_contributions(contributions: np.ndarray, count: int = 3) -> list[list[dict]]:
    """Per row of ``contributions`` (rows × features), the ``count`` largest by magnitude, signed, each
    base feature with its hinge terms summed (:data:`EXPLAINED`, and the population columns as one,
    :data:`MODEL_EXPLAINED`); ties keep the feature order.

    >>> row = np.zeros(len(FEATURES))
    >>> row[[0, 1, FEATURES.index("silence_ratio_over_2"), 2]] = [0.1, -2.5, 0.5, 0.7]
    >>> top_contributions(row[None, :], 2)
    [[{'feature': 'silence_ratio', 'contribution': -2.0}, {'feature': 'log_orders', 'contribution': 0.7}]]
    """
    explained, matrix = _EXPLANATIONS[contributions.shape[1]]
    grouped = contributions @ matrix
    ranked = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :count]
    values = np.take_along_axis(grouped, ranked, axis=1).round(4).tolist()
    return [[{"feature": explained[i][0], "contribution": v} for i, v in zip(row, row_values)]
            for row, row_values in zip(ranked.tolist(), values)]


def _explanation_matrix(features: tuple[str, ...], explained: tuple) -> np.ndarray:
    """Columns × explained groups: 1 where a column counts towards a group."""
    matrix = np.zeros((len(features), len(explained)))
    for group, (_, columns) in enumerate(explained):
        matrix[list(columns), group] = 1.0
    return matrix


#: By row width (snapshots from before the population columns are still served): the groups and their matrix.
_EXPLANATIONS = {len(names): (explained, _explanation_matrix(names, explained))
                 for names, explained in ((FEATURES, EXPLAINED), (MODEL_FEATURES, MODEL_EXPLAINED))}
