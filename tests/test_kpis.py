"""KPIs of a simulated history, from the real pipeline, against the same formulas computed in pandas."""
from __future__ import annotations

import asyncio

import pandas as pd
import pytest
import redis.asyncio as aioredis

from api.kpis import read_kpis
from online_models.kpis import bucket_of
from online_models.rfm import SEGMENT_NAMES
from online_models.purchase_history import DAY_MS
from schemas.money import to_minor_units
from streams.keyspace import summed
from streams.simulator import SimulationConfig, simulate
from tests.stack import (
    WorkerProcess, accepted_total, event_messages, prepare_topics, process_history, produce, wait_until,
)

HORIZON_DAYS = 30  # shorter than the default so that churn and reactivation both happen in 240 days


def event_frame(events) -> pd.DataFrame:
    rows = []
    for topic, e in events:
        row = {"customer_id": e["customer_id"], "topic": topic, "ts": e["ts"], "day": e["ts"] // DAY_MS,
               "kind": e.get("kind"), "survey": e.get("survey"), "score": e.get("score"), "amount": 0}
        if topic == "purchases":
            row["amount"] = sum(i["qty"] * to_minor_units(i["unit_price"], e["currency"]) for i in e["items"])
        rows.append(row)
    return pd.DataFrame(rows)


def pandas_kpis(frame: pd.DataFrame, granularity: str, as_of_day: int) -> pd.DataFrame:
    frame = frame.assign(bucket=frame["day"].map(lambda d: bucket_of(granularity, d)))
    orders = frame[frame.kind == "order"]
    first_order = orders.groupby("customer_id")["ts"].min()
    bucket_start = {b: pd.Timestamp(b if granularity != "month" else b + "-01").value // 10**6 for b in
                    frame["bucket"].unique()}
    by_bucket = frame.groupby("bucket")
    kpis = pd.DataFrame({
        "active": by_bucket["customer_id"].nunique(),
        "interactions": frame[frame.topic == "interactions"].groupby("bucket").size(),
        "orders": orders.groupby("bucket").size(),
        "revenue_minor": orders.groupby("bucket")["amount"].sum(),
        "refunds_minor": frame[frame.kind == "refund"].groupby("bucket")["amount"].sum(),
        "buyers": orders.groupby("bucket")["customer_id"].nunique(),
        "repeat_buyers": orders[orders.apply(lambda r: first_order[r.customer_id] < bucket_start[r.bucket], axis=1)]
        .groupby("bucket")["customer_id"].nunique(),
        "csat_answers": frame[frame.survey == "csat"].groupby("bucket").size(),
        "csat_satisfied": frame[(frame.survey == "csat") & (frame.score >= 4)].groupby("bucket").size(),
        "nps_answers": frame[frame.survey == "nps"].groupby("bucket").size(),
        "nps_promoters": frame[(frame.survey == "nps") & (frame.score >= 9)].groupby("bucket").size(),
        "nps_detractors": frame[(frame.survey == "nps") & (frame.score <= 6)].groupby("bucket").size(),
    }).fillna(0).astype(int)
    # churn: a horizon without an order after an order; closed (followed by a reactivation) or open
    changes = []
    for customer_id, stamps in orders.sort_values("ts").groupby("customer_id")["ts"]:
        stamps = list(stamps)
        changes.append((stamps[0] // DAY_MS, "new_buyers"))
        for previous, following in zip(stamps, stamps[1:]):
            if following - previous > HORIZON_DAYS * DAY_MS:
                changes += [((previous + HORIZON_DAYS * DAY_MS) // DAY_MS, "churned"), (following // DAY_MS,
                                                                                      "reactivated")]
        open_churn_day = stamps[-1] // DAY_MS + HORIZON_DAYS
        if open_churn_day < as_of_day:
            changes.append((open_churn_day, "churned"))
    churn = pd.DataFrame(changes, columns=["day", "what"])
    churn["bucket"] = churn["day"].map(lambda d: bucket_of(granularity, d))
    for what in ("new_buyers", "churned", "reactivated"):
        kpis[what] = churn[churn.what == what].groupby("bucket").size().reindex(kpis.index).fillna(0).astype(int)
    base_change = churn.assign(sign=churn.what.map({"new_buyers": 1, "reactivated": 1, "churned": -1}))
    kpis["alive_at_start"] = [int(base_change[base_change.day < bucket_start[b] // DAY_MS]["sign"].sum())
                              for b in kpis.index]
    return kpis


def run_history(settings, broker, redis_client, output_dir, events) -> None:
    process_history(settings, redis_client, events, output_dir / "logs" / f"worker-{settings.app_id}.log")


def read_all_kpis(redis_server, settings) -> dict[str, list[dict]]:
    async def read_all() -> dict:
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        return {g: await read_kpis(client, settings.key_space(), g, HORIZON_DAYS) for g in ("day", "week", "month")}

    return asyncio.run(read_all())


def test_kpis_equal_pandas_for_every_bucket(settings, broker, redis_server, redis_client, output_dir):
    settings = settings.with_(horizon_days=HORIZON_DAYS)
    events = simulate(SimulationConfig(customers=400, days=240, seed=5)).events
    run_history(settings, broker, redis_client, output_dir, events)
    frame = event_frame(events)
    as_of_day = frame["ts"].max() // DAY_MS
    for granularity, rows in read_all_kpis(redis_server, settings).items():
        served = pd.DataFrame(rows).set_index("bucket")
        expected = pandas_kpis(frame, granularity, as_of_day)
        served = served.loc[served.index.isin(expected.index) | (served[expected.columns].sum(axis=1) != 0)]
        assert len({s for segments in served["segments"] for s in segments}) > 5, "segments are not assigned"
        assert sorted(served.index) == sorted(expected.index), granularity
        for column in expected.columns:
            assert served[column].astype(int).to_dict() == expected[column].to_dict(), (granularity, column)
        churn_rate = expected["churned"] / expected["alive_at_start"].where(expected["alive_at_start"] > 0)
        assert served["churn_rate"].astype(float).fillna(-1).to_dict() == pytest.approx(
            churn_rate.fillna(-1).to_dict())
        nps = 100 * (expected.nps_promoters - expected.nps_detractors) / expected.nps_answers.where(
            expected.nps_answers > 0)
        assert served["nps"].astype(float).fillna(-1000).to_dict() == pytest.approx(nps.fillna(-1000).to_dict())
        # Every contribution is attributed to exactly one named segment (or "none"): the split adds up.
        for label, row in served.iterrows():
            assert set(row["segments"]) <= set(SEGMENT_NAMES) | {"none"}
            for metric in ("active", "buyers", "repeat_buyers", "orders", "revenue_minor", "interactions",
                           "new_buyers", "csat_answers", "nps_promoters"):
                assert sum(s.get(metric, 0) for s in row["segments"].values()) == row[metric], (label, metric)


def test_retention_drops_old_buckets_and_keeps_the_customer_base_exact(settings, broker, redis_server,
                                                                       redis_client, output_dir):
    retention_days = 60
    settings = settings.with_(horizon_days=HORIZON_DAYS, kpi_retention_days=retention_days, kpi_prune_interval_s=0)
    events = simulate(SimulationConfig(customers=300, days=200, seed=9)).events
    frame = event_frame(events)
    as_of_day = int(frame["ts"].max() // DAY_MS)
    oldest_kept = bucket_of("day", as_of_day - retention_days - 2)
    keys = settings.key_space()

    def pruned() -> bool:
        """Pruning follows each batch as a chore: a reactivation in the last batch can re-open the bucket of
        its churn day months back until the prune after it has run."""
        return all(keys.name_of(key)[len("kpi:day:"):] >= oldest_kept
                   for key in redis_client.scan_iter(keys.pattern("kpi:day:*")))

    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    worker = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}.log").start()
    try:
        wait_until(lambda: accepted_total(redis_client, settings) >= len(events) and pruned(), 180,
                   "history not processed and pruned", interval_s=0.5, process=worker.process)
    finally:
        worker.stop()
    served = pd.DataFrame(read_all_kpis(redis_server, settings)["day"]).set_index("bucket")
    expected = pandas_kpis(frame, "day", as_of_day)
    oldest_served = min(served.index)
    assert bucket_of("day", as_of_day - retention_days - 2) <= oldest_served <= \
        bucket_of("day", as_of_day - retention_days + 2)
    assert "alive" in summed(redis_client, keys, "kpi:base")
    kept = [day for day in expected.index if day > bucket_of("day", as_of_day - retention_days + 2)]
    assert len(kept) > 40
    for column in ("active", "orders", "revenue_minor", "churned", "alive_at_start"):
        assert served.loc[kept, column].astype(int).to_dict() == expected.loc[kept, column].to_dict(), column
