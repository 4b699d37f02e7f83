"""Churn features of a customer at an event time, and along their future silence path.

A churn score is a question about the future ("no order within 90 days?"), asked
at a moment. The features describe the customer *as of* that moment: how long they
have been silent, relative to their own rhythm, and how engaged they still are.
Along a silence path (no further event) they change predictably: silence grows,
engagement known as of then ages, recent orders age out of the trend window;
:func:`silence_paths` computes that, so a hazard model can be composed over the
horizon (:mod:`online_models.hazard`).

Only the order columns are known along a path; future views, clicks or tickets are not,
and a path that lets engagement fade as if it stopped now underestimates how much of
it goes on (a live customer keeps browsing without buying). So engagement enters
*as of* the moment asked about, with its age: path step ``k`` carries the as-of
engagement faded ``k`` steps and ``engagement_age_steps = k``, and each training
example, at a checkpoint of a silent spell, carries the engagement of a checkpoint
``k`` steps earlier in the same spell (``k`` drawn deterministically by
:func:`landmark_lag`), so what the learner sees is what is scored (landmarking, as
in survival analysis). Measured on the simulator, pooled over four cutoffs, batch
logistic regression composed to a worst 90-day decile 0.03 off instead of 0.10 (docs/churn.md).

A logistic hazard is linear in its inputs; the silence, gap and tenure columns get
hinge terms (:data:`HINGES`, knots at business time scales), so the hazard can bend
where the population changes (recent buyers, the customer's own rhythm, the lapsed).

Features that only proxy calendar time (tenure in a shop whose customers arrive in
cohorts) extrapolate badly to the future; tenure enters as ``log1p`` and the
cutoff benchmark (bench/churn_cutoff.py) reports the effect of dropping it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from online_models import bgnbd
from online_models.customer_state import CustomerState
from online_models.engagement import COMPLAINT
from online_models.purchase_history import DAY_MS

__all__ = ["FEATURES", "HINGES", "EXPLAINED", "POPULATION_FEATURES", "MODEL_FEATURES", "MODEL_EXPLAINED",
           "EARLIER_FEATURES", "as_current", "upgrade_anchor",
           "with_population_columns", "population_columns", "feature_row", "features_at", "engagement_anchor",
           "example_row", "landmark_lag", "silence_paths", "anchored_paths", "BaseRows", "PRIOR_GAP_DAYS"]

#: Assumed days between orders for customers with a single order (no rhythm of their own yet).
PRIOR_GAP_DAYS = 60.0
_TREND_WINDOW_DAYS = 90.0

_BASE_FEATURES = (
    "log_silence_days",      # days since the last order
    "silence_ratio",         # silence / own mean gap between orders (capped)
    "log_orders",
    "log_mean_gap_days",
    "gap_cv",                # spread of the gaps / their mean
    "order_trend",           # orders in the last 90 days vs the customer's lifetime rate (log ratio)
    "log_aov",               # net spend per order, major units
    "refund_ratio",          # refunded / gross spend
    "log_tenure_days",       # days since the first order
    "log_views",             # decayed product and page views          } engagement: as of the moment
    "log_carts",             # decayed add-to-cart                     } asked about (or an earlier
    "log_email_clicks",      # decayed e-mail clicks                   } checkpoint), faded to the row's
    "open_tickets",          #                                         } time
    "csat_centered",         # last CSAT - 3 (0 when never answered)   }
    "nps_centered",          # (last NPS - 5) / 5 (0 when never answered)
    "log_complaints",        # decayed tickets, low CSAT and detractor NPS answers                        }
    "spend_trend",           # spend in the last 90 days vs the customer's lifetime rate (log ratio, in orders)
    "engagement_age_steps",  # how many steps old the engagement columns are
)

#: Hinge terms ``max(0, x - knot)`` of a column: (column, name, knots).
HINGES = (
    (0, "silence_over_{}d", ((7, math.log1p(7)), (30, math.log1p(30)), (90, math.log1p(90)))),
    (1, "silence_ratio_over_{}", ((1, 1.0), (2, 2.0), (4, 4.0))),
    (3, "mean_gap_over_{}d", ((14, math.log1p(14)), (45, math.log1p(45)))),
    (8, "tenure_over_{}d", ((90, math.log1p(90)), (365, math.log1p(365)))),
)
_HINGE_COLUMNS = [(column, knot) for column, _, knots in HINGES for _, knot in knots]

FEATURES = _BASE_FEATURES + tuple(name.format(label) for _, name, knots in HINGES for label, _ in knots)

#: What an explanation names: each base feature with its hinge columns (the engagement age is not a
#: property of the customer and is left out).
EXPLAINED = tuple(
    (name, (column,) + tuple(len(_BASE_FEATURES) + i for i, (c, _) in enumerate(_HINGE_COLUMNS) if c == column))
    for column, name in enumerate(_BASE_FEATURES) if name != "engagement_age_steps")

#: Columns the model adds to a row from the population's BG/NBD fit (:func:`with_population_columns`); rows
#: on the wire (examples, silence paths) carry :data:`FEATURES` only, the fit's parameters come with the model.
POPULATION_FEATURES = (
    "bgnbd_log_p_alive",     # log P(alive) given orders, last order's age and age (BG/NBD, population fit)
    "bgnbd_log_rate",        # log of the posterior order rate while alive, per day
    "bgnbd_step_logit",      # logit of P(an order within the next step) under BG/NBD
)
MODEL_FEATURES = FEATURES + POPULATION_FEATURES
MODEL_EXPLAINED = EXPLAINED + (("bgnbd_p_alive", tuple(range(len(FEATURES), len(MODEL_FEATURES)))),)

_ENGAGEMENT = slice(9, 16)   # the engagement columns
_ENGAGEMENT_WIDTH = _ENGAGEMENT.stop - _ENGAGEMENT.start
_AGE = _BASE_FEATURES.index("engagement_age_steps")
_SPEND_TREND = _BASE_FEATURES.index("spend_trend")

#: Feature lists of earlier versions, oldest first. Rows made with one of them still arrive after an upgrade
#: (examples in flight, the checkpoints a customer's state remembers, a trainer's checkpoint, served snapshots)
#: and are read by name (:func:`as_current`); a column they lack is 0, what a customer without it has.
EARLIER_FEATURES = (tuple(name for name in FEATURES if name != "log_complaints"),)
_KNOWN_LISTS = {len(names): names for listed in (*EARLIER_FEATURES, FEATURES)
                for names in (listed, listed + POPULATION_FEATURES)}


def as_current(values: Sequence[float], model: bool = False, fill: float = 0.0) -> list[float]:
    """``values`` of a row of the current or an earlier feature list (told apart by their number), as a row of
    :data:`FEATURES` (``model``: :data:`MODEL_FEATURES`), ``fill`` where the row has no such column.

    >>> old = [1.0] * len(EARLIER_FEATURES[0])
    >>> new = as_current(old)
    >>> len(new) == len(FEATURES), new[FEATURES.index("log_complaints")], new[FEATURES.index("spend_trend")]
    (True, 0.0, 1.0)
    >>> as_current([1.0] * 5)
    Traceback (most recent call last):
    ...
    ValueError: a row of 5 features is of no known feature list
    """
    names = _KNOWN_LISTS.get(len(values))
    if names is None:
        raise ValueError(f"a row of {len(values)} features is of no known feature list")
    at = dict(zip(names, values))
    return [at.get(name, fill) for name in (MODEL_FEATURES if model else FEATURES)]


def upgrade_anchor(anchor: Sequence[float]) -> Sequence[float]:
    """An engagement anchor remembered under the earlier feature list, as today's (:func:`as_current`); one of
    today's as it is."""
    if len(anchor) == _ENGAGEMENT_WIDTH:
        return anchor
    at = dict(zip([name for name in FEATURES[_ENGAGEMENT] if name in EARLIER_FEATURES[-1]], anchor))
    return [at.get(name, 0.0) for name in FEATURES[_ENGAGEMENT]]


_SILENCE, _ORDERS, _TENURE = (FEATURES.index(name) for name in ("log_silence_days", "log_orders", "log_tenure_days"))
_P_EDGE = 1e-9


def with_population_columns(rows: np.ndarray, params: bgnbd.BgNbdParams | None, step_days: float) -> np.ndarray:
    """``rows`` (…, :data:`FEATURES`) with the :data:`POPULATION_FEATURES` appended, computed from each row's
    orders, silence and tenure under the population's BG/NBD ``params`` (zeros before there is a fit).

    Why: on sparse histories (most buyers order once or twice) a hazard linear in silence, orders and tenure
    cannot express how the three combine; BG/NBD does, in closed form, and fitted on the shop's own buyers.
    Measured with batch logistic regression on the same examples (docs/churn.md): sparse profile AUC 0.928 →
    0.933, worst decile at the cutoff 0.053 → 0.014.

    >>> row = np.zeros(len(FEATURES))
    >>> row[[_SILENCE, _ORDERS, _TENURE]] = np.log1p([100.0, 3.0, 200.0])   # 3 orders, silent 100 of 200 days
    >>> params = bgnbd.BgNbdParams(r=0.5, alpha=40.0, a=0.8, b=2.5)
    >>> out = with_population_columns(row[None, :], params, 7.0)
    >>> alive = bgnbd.p_alive(params, 2, 100.0, 200.0)     # two repeat orders, the last 100 days old
    >>> out.shape[1] == len(MODEL_FEATURES), bool(np.isclose(np.exp(out[0, len(FEATURES)]), alive))
    (True, True)
    >>> float(with_population_columns(row[None, :], None, 7.0)[0, -1])
    0.0
    """
    extra = np.zeros(rows.shape[:-1] + (len(POPULATION_FEATURES),))
    if params is not None:
        repeats = np.maximum(np.expm1(rows[..., _ORDERS]) - 1.0, 0.0).round()
        age = np.maximum(np.expm1(rows[..., _TENURE]), 0.0)
        last_order_age = np.clip(age - np.expm1(rows[..., _SILENCE]), 0.0, age)
        alive = bgnbd.p_alive(params, repeats.ravel(), last_order_age.ravel(), age.ravel()).reshape(age.shape)
        shape, rate = params.r + repeats, params.alpha + age
        step = np.clip(alive * -np.expm1(shape * np.log(rate / (rate + step_days))), _P_EDGE, 1 - _P_EDGE)
        extra[..., 0] = np.log(np.maximum(alive, _P_EDGE))
        extra[..., 1] = np.log(shape / rate)
        extra[..., 2] = np.log(step / (1 - step))
    return np.concatenate([rows, extra], axis=-1)


def population_columns(row: Sequence[float], params: bgnbd.BgNbdParams | None, step_days: float) -> list[float]:
    """:func:`with_population_columns`'s extra columns of one row, in plain Python: the trainer computes them
    for every example it learns and rehearses, where a numpy call per row cost 94 µs (this: a few µs).

    >>> rows = np.abs(np.random.default_rng(4).normal(2.0, 1.5, size=(50, len(FEATURES))))
    >>> params = bgnbd.BgNbdParams(r=0.5, alpha=40.0, a=0.8, b=2.5)
    >>> plain = [population_columns(row, params, 7.0) for row in rows.tolist()]
    >>> bool(np.allclose(plain, with_population_columns(rows, params, 7.0)[:, len(FEATURES):]))
    True
    """
    if params is None:
        return [0.0] * len(POPULATION_FEATURES)
    repeats = float(round(max(math.expm1(row[_ORDERS]) - 1.0, 0.0)))
    age = max(math.expm1(row[_TENURE]), 0.0)
    last_order_age = min(max(age - math.expm1(row[_SILENCE]), 0.0), age)
    shape, rate = params.r + repeats, params.alpha + age
    alive = 1.0 if repeats == 0 else 1.0 / (1.0 + params.a / (params.b + repeats - 1.0)
                                              * ((params.alpha + age) / (params.alpha + last_order_age)) ** shape)
    step = min(max(alive * -math.expm1(shape * math.log(rate / (rate + step_days))), _P_EDGE), 1 - _P_EDGE)
    return [math.log(max(alive, _P_EDGE)), math.log(shape / rate), math.log(step / (1 - step))]


def engagement_anchor(state: CustomerState, at_ms: int) -> list[float]:
    """The engagement columns at ``at_ms``, rounded: what a checkpoint remembers for later examples."""
    return _anchor_of(_base_row(state, at_ms))


def _anchor_of(base: list[float]) -> list[float]:
    return [round(float(v), 4) for v in base[_ENGAGEMENT]]


def landmark_lag(checkpoint_ms: int, most: int) -> int:
    """How many steps old the engagement of the example at ``checkpoint_ms`` is: uniform in
    ``0..most``, a deterministic function of the checkpoint so that a replay builds the same examples.

    Scores use engagement 0..steps-1 steps old along their path; examples drawn this way cover the
    same ages, at the cost of one example per checkpoint (not one per age).

    >>> sorted({landmark_lag(t * 7 * 86_400_000 + 12_345, 3) for t in range(200)})
    [0, 1, 2, 3]
    >>> landmark_lag(10**12, 0)
    0
    """
    mixed = (checkpoint_ms // 1000 * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return (mixed >> 32) % (most + 1)


def feature_row(state: CustomerState, at_ms: int, anchor: Sequence[float] | None = None, lag_steps: int = 0,
                step_ms: int = 7 * DAY_MS) -> list[float]:
    """The features at ``at_ms`` as a list in :data:`FEATURES` order (what examples store); with an
    ``anchor`` (:func:`engagement_anchor` of ``lag_steps`` steps earlier), engagement as of then, faded.

    >>> state = CustomerState.new(engagement_half_life_ms=7 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_interaction("product_view", DAY_MS)
    >>> then = engagement_anchor(state, DAY_MS)
    >>> state.apply_interaction("product_view", 7 * DAY_MS)
    >>> now, before = feature_row(state, 8 * DAY_MS), feature_row(state, 8 * DAY_MS, then, 1)
    >>> round(math.expm1(now[9]), 3), round(math.expm1(before[9]), 3), before[FEATURES.index("engagement_age_steps")]
    (1.406, 0.5, 1.0)
    """
    return _full_row(state, _base_row(state, at_ms), anchor, lag_steps, step_ms)


def example_row(state: CustomerState, at_ms: int, anchor: Sequence[float] | None, lag_steps: int,
                step_ms: int, rows: "BaseRows | None" = None) -> tuple[list[float], list[float]]:
    """:func:`feature_row` and :func:`engagement_anchor` at ``at_ms`` from one reading of the state (what
    a checkpoint needs: its example's features and what it remembers); ``rows``: the state's
    :class:`BaseRows`, when several checkpoints of one unchanged state are asked for."""
    base = (rows or BaseRows(state))(at_ms)
    return _full_row(state, base, anchor, lag_steps, step_ms), _anchor_of(base)


def _full_row(state: CustomerState, base: list[float], anchor: Sequence[float] | None, lag_steps: int,
              step_ms: int) -> list[float]:
    """One row in plain Python (a checkpoint builds one at a time; numpy's per-call cost was most of it)."""
    row = base + [float(lag_steps)]   # the engagement age closes the base columns
    if anchor is not None:
        row[_ENGAGEMENT] = upgrade_anchor(anchor)
        fade = 2.0 ** (-lag_steps * step_ms / state.engagement.half_life_ms)
        for column in _DECAYED:
            row[column] = math.log1p(math.expm1(row[column]) * fade)
    row += [value if value > 0.0 else 0.0 for value in (row[column] - knot for column, knot in _HINGE_COLUMNS)]
    return row


def _fill_hinges(rows: np.ndarray) -> None:
    """Set the hinge columns (the last axis) from their base columns, in place."""
    for i, (column, knot) in enumerate(_HINGE_COLUMNS):
        rows[..., len(_BASE_FEATURES) + i] = np.maximum(rows[..., column] - knot, 0.0)


def _base_row(state: CustomerState, at_ms: int) -> list[float]:
    return BaseRows(state)(at_ms)


class BaseRows:
    """The base columns of one customer's rows at any event time: what does not depend on the time is read
    from the state once (a silent spell's checkpoints are many rows of one unchanged state).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_order(20 * DAY_MS, 3000, 1)
    >>> rows = BaseRows(state)
    >>> [round(math.expm1(rows(day * DAY_MS)[0])) for day in (20, 50)]   # days of silence
    [0, 30]
    """

    __slots__ = ("decayed", "last_order_ms", "first_order_ms", "recent", "orders", "gross_minor", "per_order",
                 "mean_gap", "orders_columns", "spend_columns", "engagement_columns")

    def __init__(self, state: CustomerState) -> None:
        history, engagement = state.purchases, state.engagement
        self.decayed = engagement.decayed
        self.last_order_ms, self.first_order_ms = history.last_order_ms, history.first_order_ms
        self.recent = list(zip(history.recent_order_ms, history.recent_order_minor))
        self.orders, self.gross_minor = history.orders, history.gross_minor
        self.per_order = history.gross_minor / max(history.orders, 1) if history.gross_minor > 0 else 1.0
        mean_gap = history.mean_gap_days or PRIOR_GAP_DAYS
        self.mean_gap = max(mean_gap, 1.0)
        self.orders_columns = [math.log1p(history.orders), math.log1p(mean_gap),
                               (history.gap_std_days or 0.0) / self.mean_gap]
        self.spend_columns = [math.log1p(max(history.average_order_minor or 0.0, 0.0) / 100),
                              history.refunded_minor / history.gross_minor if history.gross_minor > 0 else 0.0]
        csat, nps = engagement.last_csat, engagement.last_nps
        self.engagement_columns = [float(engagement.open_tickets), 0.0 if csat is None else csat - 3.0,
                                   0.0 if nps is None else (nps - 5.0) / 5.0]

    def __call__(self, at_ms: int) -> list[float]:
        silence_days = max(at_ms - self.last_order_ms, 0) / DAY_MS
        tenure_days = max(at_ms - self.first_order_ms, 0) / DAY_MS
        window_start = at_ms - _TREND_WINDOW_DAYS * DAY_MS
        recent_orders, recent_spend = 0, 0
        for ts, amount in self.recent:
            if window_start < ts <= at_ms:
                recent_orders += 1
                recent_spend += amount
        expected_recent = self.orders * _TREND_WINDOW_DAYS / max(tenure_days, _TREND_WINDOW_DAYS)
        decayed = self.decayed
        spend_trend = (math.log((recent_spend / self.per_order + 0.5) / (expected_recent + 0.5))
                       if self.gross_minor > 0 else 0.0)
        return [
            math.log1p(silence_days),
            min(silence_days / self.mean_gap, 10.0),
            *self.orders_columns,
            math.log((recent_orders + 0.5) / (expected_recent + 0.5)),
            *self.spend_columns,
            math.log1p(tenure_days),
            math.log1p(decayed("product_view", at_ms) + decayed("page_view", at_ms)),
            math.log1p(decayed("add_to_cart", at_ms)),
            math.log1p(decayed("email_click", at_ms)),
            *self.engagement_columns,
            math.log1p(decayed(COMPLAINT, at_ms)),
            spend_trend,
        ]


def _spend_trend(recent_spend_minor, gross_minor, orders, expected_orders):
    """log((spend in the trend window + half an order) / (expected orders in it + half an order)), spend
    counted in the customer's average orders; 0 without spend. Scalars or numpy arrays alike."""
    per_order = np.where(gross_minor > 0, gross_minor / np.maximum(orders, 1), 1.0)
    trend = np.log((recent_spend_minor / per_order + 0.5) / (expected_orders + 0.5))
    return np.where(gross_minor > 0, trend, 0.0)


def features_at(state: CustomerState, at_ms: int) -> dict[str, float]:
    """The customer's features at event time ``at_ms`` (a buyer: at least one order).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_order(20 * DAY_MS, 3000, 1)
    >>> x = features_at(state, 50 * DAY_MS)
    >>> round(math.expm1(x["log_silence_days"])), x["silence_ratio"], round(math.expm1(x["log_mean_gap_days"]))
    (30, 1.5, 20)
    """
    return dict(zip(FEATURES, feature_row(state, at_ms)))


#: The decayed interaction counts among the features, as (column, interaction types summed).
_DECAYED_COUNTS = ((9, ("product_view", "page_view")), (10, ("add_to_cart",)), (11, ("email_click",)),
                   (FEATURES.index("log_complaints"), (COMPLAINT,)))
_DECAYED = tuple(column for column, _ in _DECAYED_COUNTS)


def silence_paths(customers: Sequence[tuple[CustomerState, Sequence[int]]], step_ms: int, steps: int) -> np.ndarray:
    """Feature rows at ``t + k·step_ms`` (k < ``steps``) for each customer and each of its as-of times
    ``t``, if the customer stays silent: an array of (all as-of times) × ``steps`` × features.

    Only time moves along a path, so per customer only the time-independent columns and a few
    parameters are read in Python; the time-dependent columns are computed for all customers at once
    (a batch waking hundreds of silent customers, each for several days, is one numpy pass).

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_order(20 * DAY_MS, 3000, 1)
    >>> state.apply_interaction("product_view", 25 * DAY_MS)
    >>> other = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> other.apply_order(5 * DAY_MS, 900, 2)
    >>> asked = [(state, [10 * DAY_MS, 30 * DAY_MS]), (other, [40 * DAY_MS])]
    >>> paths = silence_paths(asked, 7 * DAY_MS, 3)
    >>> expected = [[feature_row(s, t + 7 * k * DAY_MS, engagement_anchor(s, t), k) for k in range(3)]
    ...             for s, times in asked for t in times]    # engagement as of t, k steps old
    >>> paths.shape, np.allclose(paths, expected, rtol=0, atol=1e-4)
    ((3, 3, 28), True)
    """
    asked = [(state, times) for state, times in customers if len(times)]
    if not asked:
        return np.empty((0, steps, len(FEATURES)))
    counts = [len(times) for _, times in asked]
    per_row = lambda values: np.repeat(np.asarray(values, dtype=float), counts)  # noqa: E731  one per as-of time
    times = (np.concatenate([np.asarray(t, dtype=np.int64) for _, t in asked])[:, None]
             + step_ms * np.arange(steps, dtype=np.int64))
    paths = np.repeat(np.array([feature_row(state, int(t[0])) for state, t in asked]), counts, axis=0)
    paths = np.repeat(paths[:, None, :], steps, axis=1)
    histories = [state.purchases for state, _ in asked]
    last_order = per_row([h.last_order_ms for h in histories])[:, None]
    first_order = per_row([h.first_order_ms for h in histories])[:, None]
    mean_gap = per_row([max(h.mean_gap_days or PRIOR_GAP_DAYS, 1.0) for h in histories])[:, None]
    orders = per_row([h.orders for h in histories])[:, None]
    silence_days = np.maximum(times - last_order, 0) / DAY_MS
    tenure_days = np.maximum(times - first_order, 0) / DAY_MS
    tail = max(len(h.recent_order_ms) for h in histories)
    recent = np.full((len(asked), max(tail, 1)), np.nan)
    amounts = np.zeros((len(asked), max(tail, 1)))
    for row, history in enumerate(histories):
        recent[row, :len(history.recent_order_ms)] = history.recent_order_ms
        amounts[row, :len(history.recent_order_minor)] = history.recent_order_minor
    recent = np.repeat(recent, counts, axis=0)[:, None, :]
    window_start = times - _TREND_WINDOW_DAYS * DAY_MS
    in_window = (recent > window_start[..., None]) & (recent <= times[..., None])
    recent_orders = in_window.sum(axis=2)
    recent_spend = (in_window * np.repeat(amounts, counts, axis=0)[:, None, :]).sum(axis=2)
    gross = per_row([h.gross_minor for h in histories])[:, None]
    expected_recent = orders * _TREND_WINDOW_DAYS / np.maximum(tenure_days, _TREND_WINDOW_DAYS)
    paths[..., 0] = np.log1p(silence_days)
    paths[..., 1] = np.minimum(silence_days / mean_gap, 10.0)
    paths[..., 5] = np.log((recent_orders + 0.5) / (expected_recent + 0.5))
    paths[..., 8] = np.log1p(tenure_days)
    paths[..., _SPEND_TREND] = _spend_trend(recent_spend, gross, orders, expected_recent)
    half_life = per_row([state.engagement.half_life_ms for state, _ in asked])[:, None]
    fade = 2.0 ** (-(step_ms * np.arange(steps)) / half_life)   # engagement as of t, k steps old
    as_of = times[:, :1]
    for column, kinds in _DECAYED_COUNTS:
        total = np.zeros(as_of.shape)
        for kind in kinds:
            counters = [state.engagement.counts.get(kind) for state, _ in asked]
            value = per_row([0.0 if c is None else c.value for c in counters])[:, None]
            reference = per_row([0 if c is None else c.reference_ms for c in counters])[:, None]
            total += value * 2.0 ** (-np.maximum(0, as_of - reference) / half_life)
        paths[..., column] = np.log1p(total * fade)
    paths[..., _AGE] = np.arange(steps)
    _fill_hinges(paths)
    return paths


def anchored_paths(customers: Sequence[tuple[CustomerState, int, Sequence[float], int]], step_ms: int,
                   steps: int) -> np.ndarray:
    """Silence paths at ``at_ms`` (as :func:`silence_paths`) of customers whose engagement is what it was at an
    earlier ``anchor_ms`` (``anchor``: :func:`engagement_anchor` then), faded since: the path a customer was on
    at that earlier tick, asked now, under whatever model scores it. What they did since is left out, so a score
    minus its anchored path is what their events added (relative risk). The order columns are as of now: only
    for customers without a purchase since the anchor.

    >>> state = CustomerState.new(engagement_half_life_ms=30 * DAY_MS)
    >>> state.apply_order(0, 5000, 1); state.apply_interaction("product_view", 3 * DAY_MS)
    >>> anchor = engagement_anchor(state, 10 * DAY_MS)
    >>> state.apply_interaction("support_ticket", 12 * DAY_MS)
    >>> later = anchored_paths([(state, 20 * DAY_MS, anchor, 10 * DAY_MS)], 7 * DAY_MS, 3)
    >>> expected = [feature_row(state, (20 + 7 * k) * DAY_MS, anchor, 0) for k in range(3)]
    >>> for k, row in enumerate(expected):   # the anchor's engagement, (10 + 7k) days old
    ...     row[_ENGAGEMENT] = [math.log1p(math.expm1(v) * 2 ** (-(10 + 7 * k) / 30)) if c + 9 in _DECAYED else v
    ...                         for c, v in enumerate(anchor)]
    ...     row[_AGE] = (10 + 7 * k) / 7
    >>> bool(np.allclose(later[0], expected)), float(later[0, 0, FEATURES.index("open_tickets")])
    (True, 0.0)
    """
    paths = silence_paths([(state, [at_ms]) for state, at_ms, _, _ in customers], step_ms, steps)
    offsets = step_ms * np.arange(steps)
    for row, (state, at_ms, anchor, anchor_ms) in enumerate(customers):
        values = np.asarray(upgrade_anchor(anchor), dtype=float)
        fade = 2.0 ** (-(at_ms - anchor_ms + offsets) / state.engagement.half_life_ms)
        paths[row, :, _ENGAGEMENT] = values
        for column in _DECAYED:
            paths[row, :, column] = np.log1p(np.expm1(values[column - _ENGAGEMENT.start]) * fade)
        paths[row, :, _AGE] = (at_ms - anchor_ms + offsets) / step_ms
    return paths
