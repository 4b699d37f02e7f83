"""The same history through the pipeline twice: how far apart are the two runs' churn scores, and why?

Each run gets its own topics, Redis prefix and worker (trainers inline or in their process), the same simulated
history produced before the worker starts (a backfill). After each run has accepted every event and its trainer
has learned every example, the two are compared:

- training examples (by id): only in one run, same id with other features, other label or weight;
- churn models: versions published, examples learned, the final logistic coefficients' largest difference;
- every buyer's stored ``churn_p``: how many differ, the largest difference, split by whether both runs scored the
  customer with the same model version, and where the versions differ, whether it was the same version number.

Usage: python bench/reproducibility.py [--customers 1500] [--days 365] [--profile sparse] [--partitions 4]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedBroker, EmbeddedRedis, free_port  # noqa: E402
from streams.simulator import PROFILES, simulate  # noqa: E402
from tests.stack import (  # noqa: E402
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, read_state, read_topic, unique_settings,
    wait_until,
)


def run_once(broker: EmbeddedBroker, redis_server: EmbeddedRedis, events, buyers, logs: Path, tag: str,
             overrides: dict) -> dict:
    """Process ``events`` with a fresh worker; the examples it sent, its models and every buyer's score."""
    settings = unique_settings(broker.bootstrap, redis_server.url, worker_web_port=free_port(), **overrides)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    started = time.monotonic()
    worker = WorkerProcess(settings, logs / f"reproducibility-{tag}-{settings.app_id}.log").start()
    prefix = settings.redis_prefix
    try:
        wait_until(lambda: accepted_total(client, settings) >= len(events), 1800, "history not processed",
                   interval_s=0.5, process=worker.process)
        examples = {e["example_id"]: e for m in read_topic(settings.kafka_bootstrap,
                                                             settings.topic("training-examples"))
                    for e in orjson.loads(m.value).get("examples", [])}

        def learned() -> int:  # or held: ends after the slowest partition's progress (agents/churn_trainer.py)
            blob = client.get(prefix + "model:{churn}:progress")
            return -1 if blob is None else orjson.loads(blob)["learned"] + orjson.loads(blob)["held"]
        wait_until(lambda: learned() >= len(examples), 600, "trainer did not catch up", interval_s=0.5,
                   process=worker.process)
        time.sleep(2.0)  # the last version reaches the scorers (none re-scores)
    finally:
        worker.stop()
    elapsed = time.monotonic() - started
    versions = {int(v): orjson.loads(blob) for v, blob in client.hgetall(prefix + "model:{churn}:versions").items()}
    scores = {cid: (state.churn_score or {}) for cid in buyers
              if (state := read_state(client, settings, cid))}
    return {"examples": examples, "versions": versions, "scores": scores, "elapsed_s": elapsed,
            "learned": orjson.loads(client.get(prefix + "model:{churn}:progress"))["learned"]}


def coefficients(snapshot: dict) -> list[float]:
    """The served logistic model's weights (wherever the snapshot keeps them), flattened."""
    found: list[float] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in sorted(node):
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, float):
            found.append(node)
    walk({k: v for k, v in snapshot.items() if k not in ("created_at_ms", "metrics")})
    return found


def compare(a: dict, b: dict) -> None:
    ids_a, ids_b = set(a["examples"]), set(b["examples"])
    both = ids_a & ids_b
    features = sum(a["examples"][i]["features"] != b["examples"][i]["features"] for i in both)
    labels = sum(a["examples"][i]["purchased"] != b["examples"][i]["purchased"] for i in both)
    weights = sum(a["examples"][i]["weight"] != b["examples"][i]["weight"] for i in both)
    print(f"examples: run A {len(ids_a):,}, run B {len(ids_b):,}; only in A {len(ids_a - ids_b):,}, only in B "
          f"{len(ids_b - ids_a):,}; same id, other features {features:,}, other label {labels:,}, "
          f"other weight {weights:,}")
    last_a, last_b = max(a["versions"], default=0), max(b["versions"], default=0)
    print(f"models: run A v{last_a} ({a['learned']:,} examples learned, {a['elapsed_s']:.0f} s), run B v{last_b} "
          f"({b['learned']:,}, {b['elapsed_s']:.0f} s)")
    if last_a and last_b:
        ca, cb = coefficients(a["versions"][last_a]), coefficients(b["versions"][last_b])
        if len(ca) == len(cb):
            largest = max(abs(x - y) for x, y in zip(ca, cb))
            print(f"  final models' numbers: {len(ca):,}, largest difference {largest:.6f}")
    buyers = sorted(set(a["scores"]) & set(b["scores"]))
    diffs = [(abs(a["scores"][c].get("churn_p", -1) - b["scores"][c].get("churn_p", -1)), c) for c in buyers]
    same_version = [d for d, c in diffs if a["scores"][c].get("version") == b["scores"][c].get("version")]
    other_version = [d for d, c in diffs if a["scores"][c].get("version") != b["scores"][c].get("version")]
    differing = [d for d, _ in diffs if d > 0]
    print(f"churn_p of {len(buyers):,} buyers: {len(differing):,} differ, largest difference "
          f"{max(differing, default=0.0):.6f}")
    for name, run in (("A", a), ("B", b)):
        used = Counter(str(run["scores"][c].get("version")) for c in buyers)
        print(f"  run {name} scored with versions: " + ", ".join(f"{v} {n:,}" for v, n in sorted(used.items())))
    print(f"  scored with the same version number in both runs: {len(same_version):,} "
          f"({sum(d > 0 for d in same_version):,} differ, largest {max(same_version, default=0.0):.6f}); "
          f"with another version: {len(other_version):,} (largest {max(other_version, default=0.0):.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="sparse")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--trainers", choices=("process", "inline"), default="inline")
    args = parser.parse_args()
    simulation = simulate(PROFILES[args.profile](customers=args.customers, days=args.days))
    buyers = sorted({e["customer_id"] for topic, e in simulation.events if topic == "purchases"})
    print(f"{args.profile} history: {args.customers:,} customers, {args.days} days, {len(simulation.events):,} events, "
          f"{len(buyers):,} buyers; {args.partitions} partitions, trainers {args.trainers}", flush=True)
    logs = ROOT / "bench" / "out"
    overrides = {"partitions": args.partitions, "trainers": args.trainers}
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        first = run_once(broker, redis_server, simulation.events, buyers, logs, "a", overrides)
        second = run_once(broker, redis_server, simulation.events, buyers, logs, "b", overrides)
    compare(first, second)


if __name__ == "__main__":
    main()
