"""The same history through two pipelines, batched differently: the churn trainer publishes the same versions
(it learns in event-time order behind every partition's progress, agents/churn_trainer.py), and every customer's
stored score is the same (each record scored with the version of its event time, agents/version_targets.py):
docs/churn.md, "Reproducible scores"."""
from __future__ import annotations

import orjson

from streams.simulator import SimulationConfig, simulate
from tests.conftest import OUTPUT_DIR
from tests.stack import (
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, read_state, read_topic, suite_settings,
    wait_until,
)

CHANGE_FIELDS = ("churn_p", "band", "previous_churn_p", "previous_band", "model_version", "model_change",
                 "previous_model_version", "cause", "path_churn_p", "top_features")
SCORED_WITH = ("served", "model", "feature_means", "population", "trained_until_ms", "features", "step_days")


def test_two_replays_batched_differently_train_the_same_versions_and_scores(broker, redis_server, redis_client):
    simulation = simulate(SimulationConfig(customers=200, days=300, seed=11))
    runs = [suite_settings(broker.bootstrap, redis_server.url, churn_min_examples=500, partitions=4),
            suite_settings(broker.bootstrap, redis_server.url, churn_min_examples=500, partitions=4,
                           batch_size=97, catch_up_batch_size=301)]  # other batches, cut elsewhere
    workers, sent = [], []
    try:
        for settings in runs:
            prepare_topics(settings)
            produce(settings.kafka_bootstrap, event_messages(settings, simulation.events))
            workers.append(WorkerProcess(settings, OUTPUT_DIR / "logs" / f"worker-{settings.app_id}.log").start())
        for settings, worker in zip(runs, workers):
            wait_until(lambda: accepted_total(redis_client, settings) >= len(simulation.events), 240,
                       "history not processed", interval_s=0.5, process=worker.process)
            examples = read_topic(settings.kafka_bootstrap, settings.topic("training-examples"))
            distinct = {e["example_id"]: e for m in examples for e in orjson.loads(m.value).get("examples", [])}
            sent.append(distinct)

            def learned_or_held(settings=settings) -> int:
                report = redis_client.get(settings.redis_prefix + "model:{churn}:progress")
                return -1 if report is None else orjson.loads(report)["learned"] + orjson.loads(report)["held"]
            wait_until(lambda: learned_or_held() == len(distinct), 120, "trainer did not catch up", interval_s=0.5,
                       process=worker.process)
    finally:
        for worker in workers:
            worker.stop()

    # The same examples, features included: a silence checkpoint's features do not depend on where batches were cut
    # (ExampleClock.remember_before).
    differing = [i for i in sent[0].keys() | sent[1].keys() if sent[0].get(i) != sent[1].get(i)]
    assert not differing, f"{len(differing)} of {len(sent[0])} examples differ, e.g. {differing[:3]}"
    versions = [{int(number): orjson.loads(blob) for number, blob in
                 redis_client.hgetall(settings.redis_prefix + "model:{churn}:versions").items()} for settings in runs]
    assert len(versions[0]) >= 5 and versions[0].keys() == versions[1].keys()
    for number in versions[0]:
        first, second = ({key: v[number][key] for key in SCORED_WITH} for v in versions)
        assert first == second, f"version {number} differs"
    # Past the last version each run has learned what its slowest partition's last progress allowed: that bound is
    # conservative and depends on the last batch (the customers it scheduled), so it is not compared.
    progress = [orjson.loads(redis_client.get(s.redis_prefix + "model:{churn}:progress")) for s in runs]
    assert progress[0]["late"] == progress[1]["late"] == 0 and progress[0]["idle_partitions"] == []

    buyers = {e["customer_id"] for topic, e in simulation.events if topic == "purchases"}
    scores = [{cid: read_state(redis_client, settings, cid).churn_score for cid in buyers} for settings in runs]
    differences = [abs(scores[0][cid]["churn_p"] - scores[1][cid]["churn_p"]) for cid in buyers]
    print(f"versions {sorted(versions[0])} identical in both runs; stored churn_p: {sum(d > 0 for d in differences)} "
          f"of {len(buyers)} buyers differ, largest difference {max(differences):.6f}")
    assert max(differences) == 0
    # Not just the probability: the version it was made with, as of when, its explanation, the last report.
    shown = [{cid: {**{key: score[key] for key in ("churn_p", "band", "version", "as_of_ms", "top_features")},
                    "reported": {key: score["reported"].get(key) for key in ("churn_p", "band")}}
              for cid, score in run.items()} for run in scores]
    differing = [cid for cid in buyers if shown[0][cid] != shown[1][cid]]
    assert not differing, f"stored scores differ: {[(shown[0][c], shown[1][c]) for c in differing[:2]]}"
    # What each run reported, tick by tick (the churn fields; the RFM rank beside them reads the population as it
    # was at the batch, which depends on the batches).
    reported = [{(c["customer_id"], c["as_of_ms"]): tuple(c.get(key) for key in CHANGE_FIELDS)
                 for m in read_topic(s.kafka_bootstrap, s.topic("score-changes"))
                 if (c := orjson.loads(m.value)).get("type") is None} for s in runs]  # score changes only
    differing = sorted(reported[0].keys() ^ reported[1].keys() | {k for k in reported[0].keys() & reported[1].keys()
                                                                  if reported[0][k] != reported[1][k]})
    assert len(reported[0]) > 500 and not differing, f"{len(differing)} score changes differ, e.g. " \
        f"{[(k, reported[0].get(k), reported[1].get(k)) for k in differing[:3]]}"
