"""Pure alerting models: next best action, customer rules, the spike baseline and the aggregate monitor,
against pandas recomputations and properties over any interleaving of the input partitions."""
from __future__ import annotations

import itertools

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from online_models.customer_alerts import CooldownGate, CustomerAlertRules, customer_alerts
from online_models.hazard import band_of
from online_models.purchase_history import DAY_MS
from online_models.retention_actions import DEFAULT_CATALOGUE, catalogue_from_json, rank_actions
from online_models.spike_alerts import SpikeMonitor, SpikeSettings
from online_models.spike_detection import RateShiftDetector


@pytest.mark.parametrize("churn_p", [0.0, 0.1, 0.45, 0.9, 1.0])
@pytest.mark.parametrize("clv_minor", [0, 2_500, 40_000, 250_000])
def test_actions_are_ranked_by_expected_utility_recomputed_with_pandas(churn_p, clv_minor):
    catalogue = pd.DataFrame([vars(a) for a in DEFAULT_CATALOGUE])
    catalogue["eu"] = churn_p * catalogue.uplift * clv_minor * catalogue.value_share - catalogue.cost_minor
    expected = catalogue.sort_values(["eu", "cost_minor"], ascending=[False, True])
    ranked = rank_actions(churn_p, clv_minor)
    assert [a["action"] for a in ranked] == list(expected.name)
    assert [a["expected_utility_minor"] for a in ranked] == [round(v) for v in expected.eu]
    assert [a["recommended"] for a in ranked] == list(expected.eu > 0)


@pytest.mark.parametrize("entries, message", [
    ([{"name": "call", "cost_minor": 100, "uplift": 1.5}], "invalid retention action"),
    ([{"name": "call", "cost_minor": -1, "uplift": 0.1}], "invalid retention action"),
    ([{"name": "call", "cost_minor": 1, "uplift": 0.1, "price": 3}], "unknown retention action fields"),
    ([{"name": "a", "cost_minor": 1, "uplift": 0.1}, {"name": "a", "cost_minor": 2, "uplift": 0.2}], "unique"),
])
def test_a_bad_catalogue_is_refused(entries, message):
    with pytest.raises(ValueError, match=message):
        catalogue_from_json(entries)


def test_the_baseline_is_pandas_exponentially_weighted_mean_while_in_control():
    counts = np.random.default_rng(1).poisson(4, size=200)
    detector = RateShiftDetector(alpha=0.1, warmup=1_000)  # the CUSUM never starts: every bucket is learnt
    means = []
    for count in counts:
        detector.observe(int(count))
        means.append(detector.mean)
    assert means == pytest.approx(list(pd.Series(counts, dtype=float).ewm(alpha=0.1, adjust=False).mean()))


def cusum_reference(counts, rate: float, shift: float) -> list[float]:
    """Textbook Poisson CUSUM with a known in-control rate (itertools.accumulate)."""
    step = [c * np.log(shift) - (shift - 1) * rate for c in counts]
    return list(itertools.accumulate(step, lambda s, x: max(0.0, s + x), initial=0.0))[1:]


def test_the_statistic_is_the_textbook_poisson_cusum_once_the_baseline_is_learnt():
    detector = RateShiftDetector(alpha=1e-12, warmup=1, shift=2.0, threshold=1e9)  # baseline stays at 5
    detector.observe(5)
    counts = [4, 9, 12, 3, 0, 0, 7, 11]
    statistics = [detector.observe(c).statistic for c in counts]
    assert statistics == pytest.approx(cusum_reference(counts, rate=5.0, shift=2.0), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_calm_traffic_raises_nothing_for_30_days_and_a_tripled_rate_is_caught_within_8_hours(seed):
    rng = np.random.default_rng(seed)
    detector = RateShiftDetector(alpha=0.05, warmup=48, shift=2.0, threshold=10.0)
    calm = rng.poisson(3, size=30 * 24)
    assert not any(detector.observe(int(c)).alert for c in calm)
    shock = rng.poisson(9, size=12)
    alerts = [detector.observe(int(c)).alert for c in shock]
    assert True in alerts[:8]
    assert sum(alerts) >= 2  # the statistic restarts after an alert; a lasting shock alerts again


def test_customer_rules_match_a_pandas_recomputation():
    rng = np.random.default_rng(7)
    rules = CustomerAlertRules()
    frame = pd.DataFrame({"previous_churn_p": rng.uniform(0, 1, 500), "churn_p": rng.uniform(0, 1, 500),
                          "clv_minor": rng.integers(0, 100_000, 500), "value_rank": rng.uniform(0, 1, 500),
                          "rfm_segment": rng.choice(["Champions", "Loyal", "At risk", "Hibernating"], 500)})
    frame["band"] = frame.churn_p.map(band_of)
    frame["previous_band"] = frame.previous_churn_p.map(band_of)
    valuable = (frame.value_rank >= 0.9) | frame.rfm_segment.isin(rules.watched_segments)
    frame["valuable_at_risk"] = valuable & (frame.band == "high") & (frame.previous_band != "high")
    frame["churn_jump"] = frame.churn_p - frame.previous_churn_p >= rules.jump
    for row in frame.itertuples():
        change = {"customer_id": f"c{row.Index}", "as_of_ms": row.Index, "churn_p": row.churn_p, "band": row.band,
                  "previous_churn_p": row.previous_churn_p, "previous_band": row.previous_band}
        raised = {a["rule"] for a in customer_alerts(change, row.clv_minor, row.value_rank, row.rfm_segment, rules)}
        assert raised == {rule for rule in ("valuable_at_risk", "churn_jump") if getattr(row, rule)}, row


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 60 * DAY_MS)), max_size=60))
def test_the_cooldown_admits_alerts_of_one_key_at_least_a_cooldown_apart(alerts):
    gate = CooldownGate(cooldown_ms=7 * DAY_MS)
    admitted = [(key, ts) for key, ts in sorted(alerts, key=lambda a: a[1]) if gate.admit(key, ts)]
    for key in ("a", "b"):
        times = [ts for k, ts in admitted if k == key]
        assert all(later - earlier >= 7 * DAY_MS for earlier, later in zip(times, times[1:]))
        offered = sorted(ts for k, ts in alerts if k == key)
        assert (not offered) == (not times)  # the first alert of a key always goes through


# -- aggregate spikes: counts, frontier, order independence ----------------------------------------------

HOUR_MS = 3_600_000


def partition_streams(seed: int, partitions: int = 3, customers: int = 60, changes: int = 400, days: int = 12,
                      burst: int = 40):
    """Per partition, score changes in batches (event time roughly increasing, shuffled within a batch),
    each batch followed by a progress record that holds: no later change of the partition is older. The
    last ``burst`` changes are segment 2 customers entering high risk within three hours of day 10."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({
        "customer_id": [f"c{i}" for i in rng.integers(0, customers, changes)],
        "as_of_ms": rng.integers(0, days * 24 * HOUR_MS, changes),
        "band": rng.choice(["low", "medium", "high"], changes, p=[0.5, 0.2, 0.3]),
        "previous_band": rng.choice(["low", "medium", "high", None], changes),
        "segment_id": rng.choice([0, 1, 2], changes)})
    shock = rows.index[-burst:] if burst else []
    rows.loc[shock, "as_of_ms"] = rng.integers(240 * HOUR_MS, 243 * HOUR_MS, len(shock))
    rows.loc[shock, ["band", "previous_band", "segment_id"]] = ["high", "low", 2]
    rows["partition"] = rows.customer_id.map(lambda c: int(c[1:]) % partitions)
    streams = []
    for partition, group in rows.sort_values("as_of_ms").groupby("partition"):
        records = group.to_dict("records")
        batches = np.array_split(np.arange(len(records)), max(1, len(records) // 15))
        stream = []
        for index, batch in enumerate(batches):
            chunk = [records[i] | {"top_features": [{"feature": "silence_ratio", "contribution": 0.5}],
                                   "rfm_segment": "Loyal"} for i in batch]
            rng.shuffle(chunk)
            stream += chunk
            later = [records[i]["as_of_ms"] for b in batches[index + 1:] for i in b]
            stream.append({"type": "progress", "partition": int(partition),
                           "watermark_ms": int(min(later)) if later else days * 24 * HOUR_MS + 2 * HOUR_MS})
        streams.append(stream)
    return rows, streams


def interleave(streams, rng) -> list[dict]:
    """One topic's order: partitions' records interleaved at random, each partition's own order kept."""
    positions, merged = [0] * len(streams), []
    while any(p < len(s) for p, s in zip(positions, streams)):
        live = [i for i, s in enumerate(streams) if positions[i] < len(s)]
        pick = live[int(rng.integers(len(live)))]
        merged.append(streams[pick][positions[pick]])
        positions[pick] += 1
    return merged


#: The partition streams' settings: hourly buckets, customers entering high risk, a day's cool-down.
HOURLY = dict(bucket_ms=HOUR_MS, delay_ms=0, partitions=3, entry_band="high", cooldown_ms=24 * HOUR_MS)


def run_monitor(records, settings: SpikeSettings) -> tuple[list[dict], SpikeMonitor]:
    monitor, alerts = SpikeMonitor(settings), []
    for record in records:
        monitor.observe(record)
        alerts += monitor.close_due()
    return alerts, monitor


def test_bucket_counts_are_distinct_customers_entering_high_per_series_as_pandas_counts_them():
    rows, streams = partition_streams(seed=3)
    # Entries alone: the monitor's recent rows (a bounded window) then hold every bucket of the stream.
    settings = SpikeSettings(**HOURLY, warmup=5, relative_rise=0)
    _, monitor = run_monitor(interleave(streams, np.random.default_rng(0)), settings)
    assert monitor.late == 0
    entries = rows[(rows.band == "high") & (rows.previous_band != "high")].copy()
    entries["bucket"] = entries.as_of_ms // HOUR_MS * HOUR_MS
    first = entries.sort_values("as_of_ms").drop_duplicates(["bucket", "customer_id"])  # one per customer
    expected = {(b, "all"): n for b, n in first.groupby("bucket").size().items()}
    expected |= {(b, f"segment:{s}"): n for (b, s), n in first.groupby(["bucket", "segment_id"]).size().items()}
    judged = {(start, series): observed for start, series, observed, _ in monitor.recent if observed}
    assert judged == expected


@given(st.integers(0, 10_000))
def test_any_interleaving_of_the_partitions_raises_the_same_alerts(seed):
    _, streams = partition_streams(seed=seed % 7)
    settings = SpikeSettings(**HOURLY, warmup=12, min_rate=0.3, threshold=3.0)
    reference, reference_monitor = run_monitor(interleave(streams, np.random.default_rng(1)), settings)
    alerts, monitor = run_monitor(interleave(streams, np.random.default_rng(seed)), settings)
    assert alerts == reference and monitor.recent == reference_monitor.recent
    assert {a["series"] for a in reference} >= {"segment:2"}  # the burst is found whatever the order


def test_nothing_is_judged_until_every_partition_has_reported_progress():
    monitor = SpikeMonitor(SpikeSettings(bucket_ms=10, delay_ms=0, partitions=2, warmup=1, relative_rise=0))
    monitor.observe({"customer_id": "a", "as_of_ms": 3, "band": "high", "previous_band": "low", "segment_id": 1})
    monitor.observe({"type": "progress", "partition": 0, "watermark_ms": 500})
    assert monitor.close_due() == [] and monitor.recent == []
    monitor.observe({"type": "progress", "partition": 1, "watermark_ms": 25})
    monitor.close_due()
    assert [row[:3] for row in monitor.recent] == [[0, "all", 1], [0, "segment:1", 1], [10, "all", 0],
                                                   [10, "segment:1", 0]]


def test_a_checkpoint_resumes_to_the_same_alerts():
    _, streams = partition_streams(seed=5)
    records = interleave(streams, np.random.default_rng(2))
    settings = SpikeSettings(**HOURLY, warmup=12, min_rate=0.3, threshold=3.0)
    straight, _ = run_monitor(records, settings)
    half = len(records) // 2
    first, monitor = run_monitor(records[:half], settings)
    resumed = SpikeMonitor.from_dict(orjson.loads(orjson.dumps(monitor.to_dict())))
    for record in records[half:]:
        resumed.observe(record)
        first += resumed.close_due()
    assert first == straight and straight  # the scenario does alert


def _signal_stream(seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """Signal records of two input partitions (offsets in order per partition), one per customer, kind and day, as
    the partition batch sends them, with a progress record per partition at the end."""
    rng = np.random.default_rng(seed)
    days, n = 60, 3000
    rows = pd.DataFrame({"customer_id": [f"c{i}" for i in rng.integers(0, 400, n)],
                         "signal": rng.choice(["orders", "carts", "ticket", "browsing"], n, p=[0.3, 0.35, 0.05, 0.3]),
                         "as_of_ms": rng.integers(0, days * DAY_MS, n), "segment_id": rng.choice([1, 2], n)})
    rows["day"] = rows.as_of_ms // DAY_MS
    rows = rows.sort_values("as_of_ms").drop_duplicates(["customer_id", "signal", "day"])
    rows["source"] = rows.customer_id.map(lambda c: f"crm.purchases:{int(c[1:]) % 2}")
    rows["offset"] = rows.groupby("source").cumcount()
    carts = rows[rows.signal == "carts"].set_index(["customer_id", "day"]).as_of_ms
    rows["after_cart"] = [signal == "orders" and carts.get((customer, day), ts + 1) <= ts
                          for customer, day, signal, ts in zip(rows.customer_id, rows.day, rows.signal, rows.as_of_ms)]
    records = [{"type": "signal", **r, "rfm_segment": None, "value_minor": 100} for r in
               rows.drop(columns="day").to_dict("records")]
    progress = [{"type": "progress", "partition": p, "watermark_ms": (days + 1) * DAY_MS} for p in (0, 1)]
    return rows, records + progress



def test_signals_are_counted_once_per_customer_as_pandas_counts_them_also_when_records_are_sent_again():
    rows, records = _signal_stream(seed=4)
    settings = SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=2, warmup=5)
    _, monitor = run_monitor(records, settings)
    signals = [r for r in records if r["type"] == "signal"]
    resent = signals[:400] + signals[200:] + records[len(signals):]  # a batch re-processed: records 200-399 again
    _, again = run_monitor(resent, settings)
    assert again.recent == monitor.recent and monitor.late == 0
    judged = {(start, series): observed for start, series, observed, _ in monitor.recent}
    for (day, signal, segment), n in rows.groupby(["day", "signal", "segment_id"]).size().items():
        if signal != "carts":
            assert judged[(day * DAY_MS, f"{signal}:segment:{segment}")] == n
    # conversion judges the customers of a scope who filled a cart and then ordered in the bucket
    conversion = [(start, observed) for start, series, observed, _ in monitor.recent if series == "conversion:all"]
    converted = rows[rows.after_cart].groupby("day").size()
    assert conversion and converted.sum() > 0
    assert all(observed == converted.get(start // DAY_MS, 0) for start, observed in conversion)


def test_a_segment_whose_orders_drop_is_alerted_and_names_the_valuable_customers_gone_quiet():
    rng = np.random.default_rng(1)
    records, offset = [], 0
    for day in range(80):
        active = range(40) if day < 60 else range(20, 40)   # customers c0-c19 stop ordering on day 60
        for customer in active:
            if rng.random() < 0.5:
                offset += 1
                records.append({"type": "signal", "signal": "orders", "customer_id": f"c{customer}",
                                "as_of_ms": day * DAY_MS + 1, "source": "p:0", "offset": offset, "segment_id": 7,
                                "rfm_segment": None, "value_minor": 1000 + (40 - customer)})
        records.append({"type": "progress", "partition": 0, "watermark_ms": (day + 1) * DAY_MS})
    alerts, _ = run_monitor(records, SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=1))
    drops = [a for a in alerts if a["series"] == "orders:segment:7"]
    assert drops and 60 * DAY_MS < drops[0]["bucket_end_ms"] <= 67 * DAY_MS  # a halved rate of 20 a day: days
    alert = drops[0]
    assert alert["rule"] == "signal_drop" and alert["evidence"]["observed"] < alert["evidence"]["expected"]
    assert 59 * DAY_MS <= alert["evidence"]["since_ms"] < alert["bucket_start_ms"]  # the evidence began with the drop
    named = [c["customer_id"] for c in alert["evidence"]["top_customers"]]
    assert named == ["c0", "c1", "c2", "c3", "c4"]  # the most valuable of those who went quiet


@pytest.mark.parametrize("gone_quiet", [False, True])
def test_a_segment_drop_alerts_when_its_customers_go_quiet_not_when_they_move_to_another_segment(gone_quiet):
    """On day 60 half the customers of segment 7 either move to segment 8 and go on ordering (the whole base
    does not move), or stop ordering. Only the second is alerted, against ``segment_drop_threshold``; a monitor
    resumed from a checkpoint mid-way raises the same alerts."""
    rng = np.random.default_rng(1)
    records, offset = [], 0
    for day in range(80):
        for customer in range(40):
            moved = day >= 60 and customer < 20
            if rng.random() < 0.5 and not (moved and gone_quiet):
                offset += 1
                records.append({"type": "signal", "signal": "orders", "customer_id": f"c{customer}",
                                "as_of_ms": day * DAY_MS + 1, "source": "p:0", "offset": offset,
                                "segment_id": 8 if moved else 7, "rfm_segment": None, "value_minor": 1000})
        records.append({"type": "progress", "partition": 0, "watermark_ms": (day + 1) * DAY_MS})
    settings = SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=1, segment_drop_threshold=14.0)
    alerts, _ = run_monitor(records, settings)
    drops = [a for a in alerts if a["rule"] == "signal_drop" and a["series"] == "orders:segment:7"]
    if not gone_quiet:
        assert drops == [] and [a for a in alerts if a["rule"] == "signal_drop"] == []
        return
    assert drops and 60 * DAY_MS < drops[0]["bucket_end_ms"] <= 67 * DAY_MS
    assert drops[0]["evidence"]["threshold"] == 14.0 and drops[0]["evidence"]["statistic"] >= 14.0
    cut = next(i for i, r in enumerate(records) if r.get("watermark_ms") == 62 * DAY_MS)  # within the drop's run
    assert cut < len(records) and drops[0]["bucket_end_ms"] > 62 * DAY_MS
    first, monitor = run_monitor(records[:cut], settings)
    assert monitor.drop_runs["orders:segment:7"][0] > 0  # the run so far, carried through the checkpoint
    resumed = SpikeMonitor.from_dict(orjson.loads(orjson.dumps(monitor.to_dict())))
    assert resumed.detectors["orders:segment:7"].threshold == 14.0 and resumed.detectors["orders:all"].threshold == 10.0
    later = []
    for record in records[cut:]:
        resumed.observe(record)
        later += resumed.close_due()
    assert first + later == alerts


def test_rfm_series_are_judged_only_when_asked_for_and_their_ids_can_be_acknowledged():
    _, records = _signal_stream(seed=6)
    records = [{**r, "rfm_segment": "Can't Lose Them"} if r["type"] == "signal" else r for r in records]
    off = {series for _, series, _, _ in run_monitor(records, SpikeSettings(bucket_ms=DAY_MS, delay_ms=0,
                                                                            partitions=2))[1].recent}
    on = {series for _, series, _, _ in run_monitor(records, SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=2,
                                                                           rfm_series=True))[1].recent}
    assert not any(":rfm:" in series for series in off)
    assert on - off == {"orders:rfm:Can_t_Lose_Them", "browsing:rfm:Can_t_Lose_Them", "ticket:rfm:Can_t_Lose_Them",
                        "conversion:rfm:Can_t_Lose_Them"}


def _risk_changes(seed: int, days: int = 70, shock_day: int = 50) -> list[dict]:
    """Score changes of two segments: a few customers a day whose risk rose at an event (cause ``event``), plus
    changes that silence and a new model made; from ``shock_day`` segment 2's customers rise at events four
    times as often."""
    rng = np.random.default_rng(seed)
    records = []
    for day in range(days):
        for segment in (1, 2):
            rate = 4.0 if segment == 2 and day >= shock_day else 1.0
            for i in range(rng.poisson(rate)):
                customer = f"s{segment}d{day}c{i}"
                ts = day * DAY_MS + int(rng.integers(1, DAY_MS))
                base = {"customer_id": customer, "as_of_ms": ts, "segment_id": segment, "band": "low",
                        "previous_band": "low", "value_minor": int(rng.integers(100, 10_000)),
                        "top_features": [{"feature": "log_complaints", "contribution": 0.8}]}
                records.append({**base, "churn_p": 0.45, "cause": "event", "path_churn_p": 0.2})
                # made by silence or the model, however far they moved: never counted
                records.append({**base, "customer_id": customer + "x", "churn_p": 0.6, "previous_churn_p": 0.2})
                records.append({**base, "customer_id": customer + "m", "churn_p": 0.6, "model_change": True})
        records.append({"type": "progress", "partition": 0, "watermark_ms": (day + 1) * DAY_MS})
    return records


def test_relative_risk_counts_rises_at_events_only_and_alerts_on_the_segment_rising_faster():
    records = _risk_changes(seed=3)
    settings = SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=1)
    alerts, monitor = run_monitor(records, settings)
    frame = pd.DataFrame([r for r in records if r.get("cause") == "event"])
    frame["day"] = frame.as_of_ms // DAY_MS
    judged = {(start, series): observed for start, series, observed, _ in monitor.recent}
    for (day, segment), n in frame.groupby(["day", "segment_id"]).size().items():
        assert judged[(day * DAY_MS, f"risk_rise:segment:{segment}")] == n
    rises = [a for a in alerts if a["rule"] == "relative_risk"]
    assert rises and all(a["bucket_start_ms"] >= 50 * DAY_MS for a in rises)   # nothing before the shift
    first = rises[0]
    assert first["series"] in ("risk_rise:segment:2", "risk_rise:all") and first["bucket_end_ms"] <= 54 * DAY_MS
    assert first["scope"] == "segment:2" or first["evidence"]["top_segments"][0]["segment_id"] == 2
    assert first["evidence"]["top_features"][0][0] == "log_complaints"
    named = {c["customer_id"] for c in first["evidence"]["top_customers"]}
    assert named and all(c.startswith("s2") or first["scope"] == "all" for c in named)
    resent = records[:300] + records[150:]   # a batch re-processed: the same changes again
    assert run_monitor(resent, settings)[1].recent == monitor.recent
    off = run_monitor(records, SpikeSettings(bucket_ms=DAY_MS, delay_ms=0, partitions=1, relative_rise=0))[1]
    assert not any(series.startswith("risk_rise") for _, series, _, _ in off.recent)
