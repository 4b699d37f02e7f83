"""Aggregate churn alerts: customers entering high risk, counted per event-time bucket, judged per series.

Each ``score-changes`` message that moves a customer into the high band is an *entry*. Distinct customers
entering are counted per bucket (``bucket_ms`` of event time) for the whole base and for each behaviour
segment (a score change sent again after a crash counts once). A bucket is judged once the event-time
frontier has passed it: the slowest input partition's *score progress* minus a grace ``delay_ms``. Each
partition's pipeline batch ends with a progress record (``{"type": "progress", "partition", "watermark_ms"}``:
no later score change of that partition will be older), so the frontier does not depend on how batches
were cut or how partitions interleave: a replay raises the alerts the live run raised. Until all
``partitions`` have reported, nothing is judged (an input partition without any traffic holds alerts back,
as it holds any event-time window).

Each series has a :class:`~online_models.spike_detection.RateShiftDetector`; an alerting series raises
one alert per ``cooldown_ms`` (a lasting shock is reported again as it goes on, not every bucket).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from online_models.spike_detection import RateShiftDetector

__all__ = ["SpikeSettings", "SpikeMonitor", "is_entry", "ALL"]

HOUR_MS = 3_600_000
_RECENT_ROWS = 2000
#: The series of the whole base.
ALL = "all"


@dataclass(frozen=True)
class SpikeSettings:
    bucket_ms: int = HOUR_MS
    delay_ms: int = HOUR_MS            # grace after every partition's score progress passed a bucket
    partitions: int = 1                # input partitions that must all report progress
    cooldown_ms: int = 24 * HOUR_MS
    alpha: float = 0.05
    warmup: int = 48
    shift: float = 2.0
    threshold: float = 10.0
    min_rate: float = 1.0
    top: int = 3
    entry_band: str = "high"           # what counts: customers entering this band (or above) from below

    def detector(self) -> RateShiftDetector:
        return RateShiftDetector(**self.detector_settings())

    def detector_settings(self) -> dict:
        return {"alpha": self.alpha, "warmup": self.warmup, "shift": self.shift, "threshold": self.threshold,
                "min_rate": self.min_rate}


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

    >>> _risk_raising([{"feature": "silence_days", "contribution": 1.2}, {"feature": "log_orders", "contribution": -0.4}])
    ['silence_days']
    """
    return [str(top["feature"]) for top in top_features or () if (top.get("contribution") or 0) > 0]


def _series_of(change: dict) -> list[str]:
    segment = change.get("segment_id")
    return [ALL] if segment is None else [ALL, f"segment:{segment}"]


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

    # -- input ----------------------------------------------------------------------------------

    def observe(self, change: dict) -> None:
        """A progress record advances its partition's clock; a score change is counted if it is an entry."""
        if change.get("type") == "progress":
            partition, watermark = int(change["partition"]), int(change["watermark_ms"])
            self.clocks[partition] = max(self.clocks.get(partition, watermark), watermark)
            return
        ts = int(change["as_of_ms"])
        for series in _series_of(change):  # known from any change: a quiet segment's baseline is zeros
            self.known[series] = min(self.known.get(series, ts), ts)
        if not is_entry(change, self.settings.entry_band):
            return
        bucket = ts - ts % self.settings.bucket_ms
        if self.next_bucket is not None and bucket < self.next_bucket:
            self.late += 1
            return
        by_series = self.counts.setdefault(bucket, {})
        entered = by_series.setdefault("customers", {})
        if change["customer_id"] in entered:
            return  # sent again (a batch re-processed after a crash), or in again within the bucket
        entered[change["customer_id"]] = 1
        for series in _series_of(change):
            cell = by_series.setdefault(series, {"n": 0, "features": {}, "rfm": {}, "segments": {}})
            cell["n"] += 1
            for name in _risk_raising(change.get("top_features")):
                cell["features"][name] = cell["features"].get(name, 0) + 1
            rfm = change.get("rfm_segment") or "none"
            cell["rfm"][rfm] = cell["rfm"].get(rfm, 0) + 1
            segment = change.get("segment_id")
            if segment is not None:
                cell["segments"][str(segment)] = cell["segments"].get(str(segment), 0) + 1

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
            cells.pop("customers", None)
            alerts += self._judge(self.next_bucket, cells)
            self.next_bucket += size
        return alerts

    def _judge(self, start: int, cells: dict[str, dict]) -> list[dict]:
        end = start + self.settings.bucket_ms
        for series, since in self.known.items():
            if series not in self.detectors and (since < end or series in cells):
                self.detectors[series] = self.settings.detector()
        verdicts = {series: detector.observe(cells.get(series, {}).get("n", 0))
                    for series, detector in sorted(self.detectors.items())}
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
        return alerts

    def _alert(self, series: str, start: int, end: int, verdict, cells: dict[str, dict], verdicts) -> dict:
        top = self.settings.top
        cell = cells.get(series, {})
        evidence = {
            "observed": verdict.observed, "expected": round(verdict.expected, 6),
            "statistic": round(verdict.statistic, 6), "z": round(verdict.z, 6),
            "threshold": self.settings.threshold,
            "top_features": _top(cell.get("features", {}), top), "top_rfm_segments": _top(cell.get("rfm", {}), top),
        }
        if series == ALL:  # which segments drive it: the largest excess over their own baseline
            excess = {name.split(":", 1)[1]: round(v.observed - v.expected, 6)
                      for name, v in verdicts.items() if name != ALL and v.observed > 0}
            evidence["top_segments"] = [
                {"segment_id": int(segment), "observed": verdicts[f"segment:{segment}"].observed,
                 "expected": round(verdicts[f"segment:{segment}"].expected, 6), "excess": value}
                for segment, value in sorted(excess.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
        strong = verdict.statistic >= 2 * self.settings.threshold
        return {
            "id": f"spike:{series}:{start}", "kind": "aggregate", "rule": "risk_spike",
            "key": f"risk_spike:{series}", "severity": "critical" if strong else "warning",
            "ts_ms": end, "series": series,
            "segment_id": None if series == ALL else int(series.split(":", 1)[1]),
            "bucket_start_ms": start, "bucket_end_ms": end, "evidence": evidence,
        }

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON data (a checkpoint anyone may read; nothing is unpickled)."""
        return {"settings": asdict(self.settings), "clocks": {str(p): t for p, t in self.clocks.items()},
                "next_bucket": self.next_bucket, "counts": {str(b): c for b, c in self.counts.items()},
                "known": self.known, "detectors": {s: d.to_dict() for s, d in self.detectors.items()},
                "last_alert_ms": self.last_alert_ms, "late": self.late, "recent": self.recent}

    @classmethod
    def from_dict(cls, data: dict, settings: SpikeSettings | None = None) -> "SpikeMonitor":
        """Resume a checkpoint (with ``settings`` if given: thresholds may be changed between runs)."""
        monitor = cls(settings or SpikeSettings(**data["settings"]))
        monitor.clocks = {int(p): int(t) for p, t in data["clocks"].items()}
        monitor.next_bucket = data["next_bucket"]
        monitor.counts = {int(b): c for b, c in data["counts"].items()}
        monitor.known = {s: int(t) for s, t in data["known"].items()}
        monitor.detectors = {s: RateShiftDetector.from_dict(d, **monitor.settings.detector_settings())
                             for s, d in data["detectors"].items()}
        monitor.last_alert_ms = {s: int(t) for s, t in data["last_alert_ms"].items()}
        monitor.late = int(data["late"])
        monitor.recent = [list(row) for row in data.get("recent", [])]
        return monitor


def _top(counts: dict[str, int], n: int) -> list[list]:
    return [[name, count] for name, count in sorted(Counter(counts).items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
