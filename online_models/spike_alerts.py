"""Aggregate churn alerts: customers entering high risk and leading indicators, counted per event-time bucket,
judged per series.

Each ``score-changes`` message that moves a customer into the high band is an *entry*. Distinct customers
entering are counted per bucket (``bucket_ms`` of event time) for the whole base and for each behaviour
segment (a score change sent again after a crash counts once).

*Leading indicators* come as ``signal`` records on the same topic, one per customer, kind and bucket (the
partition batch tells a customer's first of the bucket from their state): support tickets, low CSAT, NPS
detractors and e-mail unsubscribes, watched for a rise; customers ordering and browsing, watched for a drop
against the series' own baseline (a segment's drop confirmed by the whole base's, :meth:`SpikeMonitor._confirm_drops`);
and the conversion of customers filling carts into orders in the bucket, watched for a drop.
*Relative risk* (``risk_rise``): customers whose risk rose at something they did (a score change with ``cause``
``event``) by at least ``relative_rise`` above the risk their silence path gave the tick before, watched for a
rise: a segment whose risk climbs faster than silence explains, before anyone crosses a band.
Why: the risk series sees a shock only once silence has lasted (weeks for a customer who ordered weekly); what
customers say, and a segment's orders, move within days. A signal record carries its source offset; a record at
or behind the newest offset counted for its input partition was sent again (a batch re-processed after a crash
or a rebalance, with the same content) and is skipped.

A bucket is judged once the event-time frontier has passed it: the slowest input partition's *score progress*
minus a grace ``delay_ms``. Each partition's pipeline batch ends with a progress record (``{"type":
"progress", "partition", "watermark_ms"}``: no later score change of that partition will be older), so the
frontier does not depend on how batches were cut or how partitions interleave: a replay raises the alerts the
live run raised. Until all ``partitions`` have reported, nothing is judged (an input partition without any
traffic holds alerts back, as it holds any event-time window).

Each series has a :class:`~online_models.spike_detection.RateShiftDetector` (conversion: a
:class:`~online_models.spike_detection.ConversionDropDetector`); an alerting series raises one alert per
``cooldown_ms`` (a lasting shock is reported again as it goes on, not every bucket).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, replace

from online_models.purchase_history import DAY_MS
from online_models.spike_detection import ConversionDropDetector, RateShiftDetector, RateVerdict

__all__ = ["SpikeSettings", "SpikeMonitor", "is_entry", "measure_of", "ALL", "RISING_SIGNALS", "FALLING_SIGNALS",
           "SIGNALS", "CARTS", "CONVERSION", "RISK_RISE", "risk_rise_of", "driving_segments"]

HOUR_MS = 3_600_000
_RECENT_ROWS = 2000
_TOP_CUSTOMERS = 5
_ACTIVE_KEPT = 50      # per falling series: the most valuable customers recently counted (who went quiet?)
#: The series of the whole base.
ALL = "all"
#: Leading indicators that announce churn by rising, and those that announce it by falling.
RISING_SIGNALS = ("ticket", "low_csat", "detractor", "unsubscribe")
FALLING_SIGNALS = ("orders", "browsing")
#: Counted, not judged alone: customers filling a cart are the trials of the conversion series.
CARTS = "carts"
SIGNALS = RISING_SIGNALS + FALLING_SIGNALS + (CARTS,)
#: The share of customers filling a cart who then ordered in the bucket (converted / carts per scope), for a drop.
CONVERSION = "conversion"
CONVERTED = "converted"  # customers who filled a cart and then ordered in the bucket: the conversion's successes
#: Customers whose risk rose above their silence path at an event (from score changes, not signal records).
RISK_RISE = "risk_rise"
#: Per-bucket sets of customers already counted (dedup), not series.
_COUNTED = ("customers", "risers")


@dataclass(frozen=True)
class SpikeSettings:
    bucket_ms: int = DAY_MS
    delay_ms: int = HOUR_MS            # grace after every partition's score progress passed a bucket
    partitions: int = 1                # input partitions that must all report progress
    cooldown_ms: int = 7 * DAY_MS
    alpha: float = 0.05
    warmup: int = 30
    shift: float = 2.0
    threshold: float = 10.0
    min_rate: float = 0.2
    top: int = 3
    entry_band: str = "medium"         # what counts: customers entering this band (or above) from below
    signals: bool = True               # judge the leading indicators too
    signal_rise: float = 3.0           # a rising signal's shift (x baseline)
    signal_drop: float = 0.5           # a falling signal's shift
    signal_threshold: float = 10.0
    signal_min_rate: float = 0.5       # floor of a rising signal's baseline per bucket
    signal_min_drop_rate: float = 5.0  # a falling signal's baseline needed to judge a drop at all
    segment_drop_threshold: float = 10.0  # a count's drop within one segment (confirmed by the whole base)
    conversion_drop: float = 0.8       # the conversion's shift (x baseline share)
    trend: float = 0.0                 # Holt's trend weight of every series' baseline (0: a level only)
    rfm_series: bool = False           # series per RFM segment too (population-relative: not replay-exact)
    relative_rise: float = 0.1         # a rise above the silence path that counts in risk_rise (0: no such series)
    relative_min_rate: float = 1.0     # floor of the risk_rise baseline per bucket

    def detector(self, measure: str = "risk", scope: str = ALL) -> RateShiftDetector | ConversionDropDetector:
        if measure == CONVERSION:
            return ConversionDropDetector(**self.detector_settings(measure, scope))
        return RateShiftDetector(**self.detector_settings(measure, scope))

    def restore(self, measure: str, scope: str, data: dict) -> RateShiftDetector | ConversionDropDetector:
        """A detector of ``measure`` from its checkpoint, under these settings."""
        kind = ConversionDropDetector if measure == CONVERSION else RateShiftDetector
        return kind.from_dict(data, **self.detector_settings(measure, scope))

    def detector_settings(self, measure: str = "risk", scope: str = ALL) -> dict:
        """The detector of a series (a count's drop within one segment at ``segment_drop_threshold``; whether such a
        drop alerts is then confirmed against the whole base: :meth:`SpikeMonitor._confirm_drops`)."""
        if measure == CONVERSION:
            return {"alpha": self.alpha, "warmup": self.warmup, "shift": self.conversion_drop,
                    "threshold": self.signal_threshold, "min_trials": self.signal_min_drop_rate}
        if measure in RISING_SIGNALS or measure == RISK_RISE:
            floor = self.relative_min_rate if measure == RISK_RISE else self.signal_min_rate
            return {"alpha": self.alpha, "warmup": self.warmup, "shift": self.signal_rise,
                    "threshold": self.signal_threshold, "min_rate": floor, "beta": self.trend}
        if measure in FALLING_SIGNALS:
            return {"alpha": self.alpha, "warmup": self.warmup, "shift": self.signal_drop,
                    "threshold": self.signal_threshold if scope == ALL else self.segment_drop_threshold,
                    "min_rate": self.signal_min_drop_rate, "beta": self.trend}
        return {"alpha": self.alpha, "warmup": self.warmup, "shift": self.shift, "threshold": self.threshold,
                "min_rate": self.min_rate, "beta": self.trend}


_BAND_ORDER = {"low": 0, "medium": 1, "high": 2}


def is_entry(change: dict, band: str = "high") -> bool:
    """A score change that moves a customer into ``band`` (or above) from below it. A change a new model
    version made (``model_change``: the customer was silent, only the model moved) is not an entry: a new
    snapshot moves many scores at once and is not a shift in the customers.

    >>> is_entry({"band": "high", "previous_band": "medium"}), is_entry({"band": "high", "previous_band": "high"})
    (True, False)
    >>> is_entry({"band": "high", "previous_band": "low"}, band="medium"), is_entry({"band": "medium"}, "high")
    (True, False)
    >>> is_entry({"band": "high", "previous_band": "low", "model_change": True})
    False
    """
    floor = _BAND_ORDER[band]
    return (not change.get("model_change") and _BAND_ORDER.get(change.get("band"), -1) >= floor
            and _BAND_ORDER.get(change.get("previous_band"), -1) < floor)


def _risk_raising(top_features: list | None) -> list[str]:
    """The explained features that pushed the customer's risk up (positive contributions).

    >>> _risk_raising([{"feature": "silence_days", "contribution": 1.2},
    ...                {"feature": "log_orders", "contribution": -0.4}])
    ['silence_days']
    """
    return [str(top["feature"]) for top in top_features or () if (top.get("contribution") or 0) > 0]


def risk_rise_of(change: dict) -> float | None:
    """How far a score change's risk rose above what the customer's silence path gave the tick before, when the
    customer did something since (``cause`` ``event``); None for changes silence or the model made.

    >>> risk_rise_of({"cause": "event", "churn_p": 0.55, "path_churn_p": 0.3})
    0.25
    >>> risk_rise_of({"churn_p": 0.55, "previous_churn_p": 0.3}) is None
    True
    """
    if change.get("cause") != "event" or not isinstance(change.get("path_churn_p"), (int, float)):
        return None
    return round(float(change["churn_p"]) - float(change["path_churn_p"]), 6)


def _scopes_of(change: dict, rfm: bool = False) -> list[str]:
    """The scopes a record counts in: the whole base, its behaviour segment, its RFM segment (if watched)."""
    segment, rfm_segment = change.get("segment_id"), change.get("rfm_segment")
    scopes = [ALL] if segment is None else [ALL, f"segment:{segment}"]
    return scopes + [f"rfm:{_slug(rfm_segment)}"] if rfm and rfm_segment else scopes


def _slug(name: str) -> str:
    """A name as it can stand in an alert id (letters, digits, ``_.-``).

    >>> _slug("Can't Lose Them")
    'Can_t_Lose_Them'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def measure_of(series: str) -> tuple[str, str]:
    """(measure, scope) of a series name: risk entries are named by their scope alone.

    >>> measure_of("all"), measure_of("segment:2"), measure_of("orders:segment:2"), measure_of("ticket:rfm:At_Risk")
    (('risk', 'all'), ('risk', 'segment:2'), ('orders', 'segment:2'), ('ticket', 'rfm:At_Risk'))
    """
    head, _, rest = series.partition(":")
    return (head, rest) if head in SIGNALS or head in (CONVERSION, RISK_RISE) else ("risk", series)


def _segment_of_scope(scope: str) -> int | None:
    return int(scope.split(":", 1)[1]) if scope.startswith("segment:") else None


class SpikeMonitor:
    """Counts entries per bucket and series, closes buckets behind the frontier, returns the alerts.

    >>> monitor = SpikeMonitor(SpikeSettings(bucket_ms=10, delay_ms=0, warmup=3, min_rate=1.0, threshold=3.0))
    >>> def entry(ts, segment=1, customer="c"):
    ...     return {"customer_id": customer, "partition": 0, "as_of_ms": ts, "band": "high",
    ...             "previous_band": "low", "segment_id": segment, "rfm_segment": "Loyal",
    ...             "top_features": [{"feature": "silence_ratio", "contribution": 0.8}]}
    >>> for ts in (1, 12, 25, 33):
    ...     monitor.observe(entry(ts))
    >>> monitor.observe({**entry(5, segment=2), "band": "low"})   # segment 2 is known, and quiet
    >>> monitor.observe({"type": "progress", "partition": 0, "watermark_ms": 40})
    >>> monitor.close_due()
    []
    >>> for ts in (40, 41, 42, 43, 44, 45, 46, 47, 51, 52, 53, 54, 55, 56):
    ...     monitor.observe(entry(ts, segment=2, customer=f"c{ts}"))
    >>> monitor.observe({"type": "progress", "partition": 0, "watermark_ms": 60})
    >>> [(a["series"], a["bucket_start_ms"], a["evidence"]["observed"]) for a in monitor.close_due()]
    [('all', 40, 8), ('segment:2', 40, 8)]
    """

    def __init__(self, settings: SpikeSettings = SpikeSettings()) -> None:
        self.settings = settings
        self.clocks: dict[int, int] = {}           # partition -> newest score time seen
        self.next_bucket: int | None = None        # start of the oldest bucket not judged yet
        self.counts: dict[int, dict[str, dict]] = {}  # bucket start -> series -> {n, features, rfm}
        self.known: dict[str, int] = {}            # series -> first score time seen (judged from then on)
        self.detectors: dict[str, RateShiftDetector] = {}
        self.last_alert_ms: dict[str, int] = {}
        self.late = 0                              # entries whose bucket had already been judged
        self.recent: list[list] = []               # newest judged rows: [bucket start, series, observed, expected]
        self.signal_offsets: dict[str, int] = {}   # input topic-partition -> newest source offset of a signal counted
        self.run_start: dict[str, int] = {}        # series -> bucket where its CUSUM statistic left 0
        self.active: dict[str, dict[str, list]] = {}  # falling series -> customer -> [value, last bucket counted]
        self.drop_runs: dict[str, list[float]] = {}  # a segment's falling series while its statistic is above 0 ->
        #                                    [its expected - observed, the base's expected - observed, base expected]

    # -- input ----------------------------------------------------------------------------------

    def observe(self, change: dict) -> None:
        """A progress record advances its partition's clock; a signal is counted once; a score change is
        counted if it is an entry, or a rise at an event above its silence path (relative risk)."""
        kind = change.get("type")
        if kind == "progress":
            partition, watermark = int(change["partition"]), int(change["watermark_ms"])
            self.clocks[partition] = max(self.clocks.get(partition, watermark), watermark)
            return
        if kind == "signal":
            self._signal(change)
            return
        if kind == "erasure":
            self.forget(str(change["customer_id"]))
            return
        ts = int(change["as_of_ms"])
        relative = self.settings.relative_rise > 0
        for scope in _scopes_of(change):  # known from any change: a quiet segment's baseline is zeros
            for series in (scope, f"{RISK_RISE}:{scope}") if relative else (scope,):
                self.known[series] = min(self.known.get(series, ts), ts)
        rise = risk_rise_of(change) if relative else None
        riser = rise is not None and rise >= self.settings.relative_rise
        entry = is_entry(change, self.settings.entry_band)
        if not (entry or riser):
            return
        bucket = ts - ts % self.settings.bucket_ms
        if self.next_bucket is not None and bucket < self.next_bucket:
            self.late += 1
            return
        by_series = self.counts.setdefault(bucket, {})
        customer = change["customer_id"]
        # once per customer and bucket: else sent again (a batch re-processed), or in again within the bucket
        if entry and customer not in by_series.setdefault("customers", {}):
            by_series["customers"][customer] = 1
            for scope in _scopes_of(change):
                self._count_change(by_series, scope, change)
        if riser and customer not in by_series.setdefault("risers", {}):
            by_series["risers"][customer] = 1
            for scope in _scopes_of(change):
                cell = self._count_change(by_series, f"{RISK_RISE}:{scope}", change)
                cell["customers"] = _most_valuable(cell.get("customers", []) + [[customer, change.get("value_minor")]],
                                                   _TOP_CUSTOMERS)

    def _count_change(self, by_series: dict, series: str, change: dict) -> dict:
        """Count a score change in a series' cell of the bucket, with the features that raised its risk."""
        cell = by_series.setdefault(series, {"n": 0, "features": {}, "rfm": {}, "segments": {}})
        cell["n"] += 1
        for name in _risk_raising(change.get("top_features")):
            cell["features"][name] = cell["features"].get(name, 0) + 1
        self._attribute(cell, change)
        return cell

    def _signal(self, record: dict) -> None:
        """One customer's leading indicator in a bucket (the batch sends one per customer, kind and bucket)."""
        if not self.settings.signals:
            return
        source, offset = str(record["source"]), int(record["offset"])
        if offset <= self.signal_offsets.get(source, -1):
            return  # sent again: a batch re-processed after a crash or a rebalance
        self.signal_offsets[source] = offset
        ts, measure = int(record["as_of_ms"]), str(record["signal"])
        bucket = ts - ts % self.settings.bucket_ms
        scopes = _scopes_of(record, self.settings.rfm_series)
        for scope in scopes:
            for series in (f"{measure}:{scope}",) + ((f"{CONVERSION}:{scope}",) if measure == CARTS else ()):
                self.known[series] = min(self.known.get(series, ts), ts)
        if self.next_bucket is not None and bucket < self.next_bucket:
            self.late += 1
            return
        by_series = self.counts.setdefault(bucket, {})
        value, customer = record.get("value_minor"), str(record["customer_id"])
        for scope in scopes:
            series = f"{measure}:{scope}"
            cell = by_series.setdefault(series, {"n": 0, "rfm": {}, "segments": {}, "customers": []})
            cell["n"] += 1
            if measure == "orders" and record.get("after_cart"):
                converted = by_series.setdefault(f"{CONVERTED}:{scope}", {"n": 0})
                converted["n"] += 1
            self._attribute(cell, record)
            if measure in FALLING_SIGNALS:
                self._note_active(series, customer, value, bucket)
            elif measure in RISING_SIGNALS:
                cell["customers"] = _most_valuable(cell["customers"] + [[customer, value]], _TOP_CUSTOMERS)

    def forget(self, customer: str) -> None:
        """An erased customer: no id of theirs stays in the monitor (counts already made stay: they name no one).

        >>> monitor = SpikeMonitor(SpikeSettings(bucket_ms=10))
        >>> monitor.observe({"type": "signal", "signal": "orders", "customer_id": "c1", "as_of_ms": 3,
        ...                  "source": "purchases-0", "offset": 7, "segment_id": 1, "value_minor": 900})
        >>> monitor.forget("c1")
        >>> "c1" in str(monitor.to_dict())
        False
        """
        for active in self.active.values():
            active.pop(customer, None)
        for cells in self.counts.values():
            for counted in _COUNTED:
                cells.get(counted, {}).pop(customer, None)
            for cell in cells.values():
                if isinstance(cell.get("customers"), list):
                    cell["customers"] = [pair for pair in cell["customers"] if pair[0] != customer]

    @staticmethod
    def _attribute(cell: dict, record: dict) -> None:
        rfm = record.get("rfm_segment") or "none"
        cell["rfm"][rfm] = cell["rfm"].get(rfm, 0) + 1
        segment = record.get("segment_id")
        if segment is not None:
            cell["segments"][str(segment)] = cell["segments"].get(str(segment), 0) + 1

    def _note_active(self, series: str, customer: str, value: float | None, bucket: int) -> None:
        """Keep the most valuable customers a falling series counted, with when: those silent since the drop
        began are the customers an alert names."""
        active = self.active.setdefault(series, {})
        active[customer] = [value, bucket]
        if len(active) > _ACTIVE_KEPT:
            least = min(active, key=lambda c: (active[c][0] or 0.0, active[c][1], c))
            del active[least]

    def frontier_ms(self) -> int | None:
        """Event time before which no more entries are expected (None: nothing seen yet)."""
        if len(self.clocks) < self.settings.partitions:
            return None
        return min(self.clocks.values()) - self.settings.delay_ms

    # -- judging ----------------------------------------------------------------------------------

    def close_due(self) -> list[dict]:
        """Judge every bucket that ends at or before the frontier, oldest first; the alerts they raise."""
        frontier = self.frontier_ms()
        if frontier is None:
            return []
        size = self.settings.bucket_ms
        if self.next_bucket is None:
            if not self.counts:
                return []
            self.next_bucket = min(self.counts)
        alerts: list[dict] = []
        while self.next_bucket + size <= frontier:
            cells = self.counts.pop(self.next_bucket, {})
            for counted in _COUNTED:
                cells.pop(counted, None)
            alerts += self._judge(self.next_bucket, cells)
            self.next_bucket += size
        return alerts

    def _judge(self, start: int, cells: dict[str, dict]) -> list[dict]:
        end = start + self.settings.bucket_ms
        for series, since in self.known.items():
            measure, scope = measure_of(series)
            if series not in self.detectors and measure != CARTS and (since < end or series in cells):
                self.detectors[series] = self.settings.detector(measure, scope)
        verdicts = {}
        for series, detector in sorted(self.detectors.items()):
            measure, scope = measure_of(series)
            if measure == CONVERSION:
                verdict = detector.observe(cells.get(f"{CONVERTED}:{scope}", {}).get("n", 0),
                                           cells.get(f"{CARTS}:{scope}", {}).get("n", 0))
            else:
                verdict = detector.observe(cells.get(series, {}).get("n", 0))
            verdicts[series] = verdict
            if verdict.statistic <= 0:
                self.run_start.pop(series, None)
            else:
                self.run_start.setdefault(series, start)
        self._confirm_drops(verdicts)
        self.recent += [[start, series, v.observed, round(v.expected, 6)] for series, v in verdicts.items()]
        del self.recent[:-_RECENT_ROWS]
        alerts = []
        for series, verdict in verdicts.items():
            if not verdict.alert:
                continue
            last = self.last_alert_ms.get(series)
            if last is not None and end - last < self.settings.cooldown_ms:
                continue
            self.last_alert_ms[series] = end
            alerts.append(self._alert(series, start, end, verdict, cells, verdicts))
        for series, verdict in verdicts.items():
            if verdict.alert:  # the statistic restarts: the run that led to the alert is over
                self.run_start.pop(series, None)
        return alerts

    def _confirm_drops(self, verdicts: dict[str, RateVerdict]) -> None:
        """A segment's drop of orders or browsing stands only if the whole base's count fell too over the same run:
        by at least half the segment's shortfall and by at least twice its own standard deviation (sqrt of its
        expected count). Customers who move to another segment take their activity along, a drop where they left
        that the whole base does not see; customers going quiet are missing from both. An unconfirmed alarm keeps
        its evidence (the statistic goes on) and waits for the whole base.

        >>> monitor = SpikeMonitor(SpikeSettings(bucket_ms=1, warmup=1))
        >>> monitor.detectors["orders:segment:1"] = monitor.settings.detector("orders", "segment:1")
        >>> V = lambda observed, expected, alert=False: RateVerdict(observed, expected, 12.0, 0.0, alert)
        >>> verdicts = {"orders:all": V(30, 30.0), "orders:segment:1": V(2, 10.0, alert=True)}
        >>> monitor._confirm_drops(verdicts)   # moved elsewhere: the whole base is as expected
        >>> verdicts["orders:segment:1"].alert, monitor.detectors["orders:segment:1"].statistic
        (False, 12.0)
        >>> verdicts = {"orders:all": V(10, 30.0), "orders:segment:1": V(2, 10.0, alert=True)}
        >>> monitor._confirm_drops(verdicts)   # gone: the base misses 20 over the run (> 2 sqrt 60, > 16 / 2)
        >>> verdicts["orders:segment:1"].alert, monitor.drop_runs
        (True, {})
        """
        bases = {measure: verdicts.get(f"{measure}:{ALL}") for measure in FALLING_SIGNALS}
        for series, verdict in verdicts.items():
            measure, scope = measure_of(series)
            if measure not in FALLING_SIGNALS or scope == ALL:
                continue
            if verdict.statistic <= 0:
                self.drop_runs.pop(series, None)
                continue
            run = self.drop_runs.setdefault(series, [0.0, 0.0, 0.0])  # over the run: shortfall; base missing, expected
            base = bases[measure]
            run[0] += verdict.expected - verdict.observed
            if base is not None:
                run[1] += base.expected - base.observed
                run[2] += base.expected
            if not verdict.alert:
                continue
            if run[1] >= max(run[0] / 2, 2 * run[2] ** 0.5) and run[2] > 0:
                del self.drop_runs[series]  # confirmed: the alert restarts the statistic, and the run
            else:
                self.detectors[series].statistic = verdict.statistic  # the evidence stays; no alert yet
                verdicts[series] = replace(verdict, alert=False)

    def _alert(self, series: str, start: int, end: int, verdict, cells: dict[str, dict], verdicts) -> dict:
        top = self.settings.top
        cell = cells.get(series, {})
        measure, scope = measure_of(series)
        falling = measure in FALLING_SIGNALS or measure == CONVERSION
        evidence = {
            "observed": verdict.observed, "expected": round(verdict.expected, 6),
            "ratio": round(verdict.observed / verdict.expected, 6) if verdict.expected > 0 else None,
            "statistic": round(verdict.statistic, 6), "z": round(verdict.z, 6),
            "threshold": self.detectors[series].threshold, "top_rfm_segments": _top(cell.get("rfm", {}), top),
        }
        if measure in ("risk", RISK_RISE):
            evidence["top_features"] = _top(cell.get("features", {}), top)
        if measure != "risk":
            run_start = self.run_start.get(series, start)
            evidence["since_ms"] = run_start
            quiet = f"orders:{scope}" if measure == CONVERSION else series
            evidence["top_customers"] = (self._gone_quiet(quiet, run_start) if falling
                                         else [{"customer_id": c, "value_minor": v} for c, v in cell["customers"]])
        if not scope.startswith("segment:"):
            evidence["top_segments"] = driving_segments(measure, verdicts, falling, top)
        strong = verdict.statistic >= 2 * self.detectors[series].threshold
        rule = ("risk_spike" if measure == "risk" else "relative_risk" if measure == RISK_RISE
                else "signal_drop" if falling else "signal_rise")
        return {
            "id": f"spike:{series}:{start}", "kind": "aggregate", "rule": rule,
            "key": f"{rule}:{series}", "severity": "critical" if strong else "warning",
            "ts_ms": end, "series": series, "signal": measure, "scope": scope,
            "segment_id": _segment_of_scope(scope), "rfm_segment": scope[4:] if scope.startswith("rfm:") else None,
            "bucket_start_ms": start, "bucket_end_ms": end, "evidence": evidence,
        }

    def _gone_quiet(self, series: str, since_ms: int) -> list[dict]:
        """The most valuable customers the series counted before ``since_ms`` and not since."""
        quiet = [(value, customer) for customer, (value, last) in self.active.get(series, {}).items()
                 if last < since_ms]
        return [{"customer_id": c, "value_minor": v}
                for v, c in sorted(quiet, key=lambda vc: (-(vc[0] or 0.0), vc[1]))[:_TOP_CUSTOMERS]]

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON data (a checkpoint anyone may read; nothing is unpickled)."""
        return {"settings": asdict(self.settings), "clocks": {str(p): t for p, t in self.clocks.items()},
                "next_bucket": self.next_bucket, "counts": {str(b): c for b, c in self.counts.items()},
                "known": self.known, "detectors": {s: d.to_dict() for s, d in self.detectors.items()},
                "last_alert_ms": self.last_alert_ms, "late": self.late, "recent": self.recent,
                "signal_offsets": self.signal_offsets, "run_start": self.run_start, "active": self.active,
                "drop_runs": self.drop_runs}

    @classmethod
    def from_dict(cls, data: dict, settings: SpikeSettings | None = None) -> "SpikeMonitor":
        """Resume a checkpoint (with ``settings`` if given: thresholds may be changed between runs)."""
        monitor = cls(settings or SpikeSettings(**data["settings"]))
        monitor.clocks = {int(p): int(t) for p, t in data["clocks"].items()}
        monitor.next_bucket = data["next_bucket"]
        monitor.counts = {int(b): c for b, c in data["counts"].items()}
        monitor.known = {s: int(t) for s, t in data["known"].items()}
        monitor.detectors = {s: monitor.settings.restore(*measure_of(s), d) for s, d in data["detectors"].items()}
        monitor.last_alert_ms = {s: int(t) for s, t in data["last_alert_ms"].items()}
        monitor.late = int(data["late"])
        monitor.recent = [list(row) for row in data.get("recent", [])]
        monitor.signal_offsets = {s: int(o) for s, o in data.get("signal_offsets", {}).items()}
        monitor.run_start = {s: int(t) for s, t in data.get("run_start", {}).items()}
        monitor.active = data.get("active", {})
        monitor.drop_runs = {s: [float(v) for v in run] for s, run in data.get("drop_runs", {}).items()}
        return monitor


def driving_segments(measure: str, verdicts: dict, falling: bool, top: int) -> list[dict]:
    """Which segments drive a whole-base alert of ``measure`` (``verdicts``: the bucket's verdict per series): those
    whose own series has gathered the most evidence (their CUSUM statistic), then the largest move against their
    baseline in the bucket. Why the statistic first: a drop builds over days, and one day's largest shortfall named
    a segment that only had a quiet day (every false alarm of the silent and price shocks on seeds 11-20 was such a
    whole-base alert; docs/alerts.md).

    >>> Verdict = lambda observed, expected, statistic: type("V", (), dict(observed=observed, expected=expected,
    ...                                                                  statistic=statistic))
    >>> verdicts = {"orders:segment:1": Verdict(8, 10.0, 0.5), "orders:segment:2": Verdict(9, 10.0, 7.5)}
    >>> [s["segment_id"] for s in driving_segments("orders", verdicts, falling=True, top=3)]
    [2, 1]
    """
    prefix = "segment:" if measure == "risk" else f"{measure}:segment:"
    moves = {name[len(prefix):]: (round(v.statistic, 6), round(v.observed - v.expected, 6))
             for name, v in verdicts.items() if name.startswith(prefix) and (v.observed > 0 or falling)}
    ranked = sorted(moves.items(), key=lambda kv: (-kv[1][0], kv[1][1] if falling else -kv[1][1], kv[0]))
    return [{"segment_id": int(segment), "observed": verdicts[prefix + segment].observed,
             "expected": round(verdicts[prefix + segment].expected, 6), "excess": excess, "statistic": statistic}
            for segment, (statistic, excess) in ranked[:top]]


def _most_valuable(customers: list[list], n: int) -> list[list]:
    """The ``n`` most valuable [customer, value] pairs (None last), ties by id: the same whatever the order seen.

    >>> _most_valuable([["a", 10], ["b", None], ["c", 30], ["a", 10]], 2)
    [['c', 30], ['a', 10]]
    """
    unique = {customer: value for customer, value in customers}
    return [[c, v] for c, v in sorted(unique.items(), key=lambda cv: (-(cv[1] or 0.0), cv[0]))[:n]]


def _top(counts: dict[str, int], n: int) -> list[list]:
    return [[name, count] for name, count in sorted(Counter(counts).items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
