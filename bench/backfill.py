"""Backfill a shop's history through one worker, as a new user would: the whole history is produced first, then
one worker drains it. Printed per size: orders/s and events/s drained (first to last applied event), churn
scorings per purchase event and per event (customers scored in a batch, once each: the worker's
``crm_churn_scorings_total``; the share visited by the wheel, not by an event of theirs; and the as-of times scored,
``crm_churn_scored_times_total``, by kind; the score changes reported: each one of a silent customer is a visit of
the wheel), worker CPU µs per event (/proc; its trainers' child process
included), Redis CPU µs per event (``INFO cpu`` before/after), bytes per customer (``INFO memory``).

The sparse profile (streams.simulator.sparse_config) is a real shop's history: most buyers order once or
twice, arrive in cohorts and stay silent for months; the dense profile is the simulator's default traffic.

``--trainers process inline`` runs each size with the trainers in a child process (the default) and in the
worker's event loop, side by side. With ``--py-spy DIR`` the worker and its trainers' process are sampled
by py-spy (``pip install py-spy``) while it drains; the collapsed stacks and a text summary of each process
(the functions taking most samples, self and inclusive) go to DIR.

Usage: python bench/backfill.py [--customers 10000 50000 200000] [--profile sparse] [--days 730]
                                [--timeout-s 3600] [--py-spy bench/profiles] [--catch-up-batch-size 2000 8000]
                                [--label-steps 1 4] [--score-lag-days 0 7]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.churn_trainer import PROGRESS_KEY  # noqa: E402
from streams.embedded import EmbeddedBroker, EmbeddedRedis, free_port  # noqa: E402
from streams.simulator import SimulationConfig, simulate, sparse_config  # noqa: E402
from tests.alert_scenario import end_offset  # noqa: E402
from tests.stack import (  # noqa: E402
    WorkerProcess, accepted_total, event_messages, prepare_topics, produce, read_topic, unique_settings,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LINE = re.compile(r":\d+\)$")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, its running child processes' included (the trainers)."""
    return own_cpu_s(pid) + children_cpu_s(pid)


def own_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_s(pid: int) -> float:
    """The running child processes' CPU seconds (the trainers' process: it shares the 2 cores with the batch)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(process_cpu_s(int(child)) for child in children)


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def metrics_page(port: int) -> list[str]:
    """The lines of the worker's ``/metrics``."""
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines()


def _value(line: str) -> float:
    return float(line.rsplit(" ", 1)[1])


def labelled(lines: list[str], metric: str) -> dict[str, float]:
    """A metric with one label: label value -> sample."""
    return {line.split('"')[1]: _value(line) for line in lines if line.startswith(metric + "{")}


def histogram(lines: list[str], metric: str) -> tuple[int, float, float]:
    """A histogram: how many observations, their mean and their p99 (a bucket's upper bound)."""
    buckets = sorted((float(line.split('le="')[1].split('"')[0]), _value(line))
                     for line in lines if line.startswith(metric + "_bucket{"))
    count = next(_value(line) for line in lines if line.startswith(metric + "_count"))
    total = next(_value(line) for line in lines if line.startswith(metric + "_sum"))
    p99 = next((bound for bound, cumulative in buckets if cumulative >= 0.99 * count), 0.0)
    return int(count), total / max(count, 1), p99


def trained_after(client: redis.Redis, settings, since: float, timeout_s: float = 1800.0) -> tuple[float, int]:
    """Seconds from ``since`` until the churn trainer has read every ``training-examples`` record (its report's
    ``offset``), and how many examples it has learned then. With the newest version served (score lag 0) the
    worker drains without waiting for the trainer, which may still be learning: this is when the backfill's
    model is really there."""
    last = end_offset(settings.kafka_bootstrap, settings.topic("training-examples")) - 1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = client.get(settings.redis_prefix + PROGRESS_KEY)
        report = orjson.loads(report) if report else {}
        if report.get("offset", -1) >= last:
            return time.monotonic() - since, report["learned"]
        time.sleep(0.25)
    raise SystemExit(f"the churn trainer did not reach offset {last} within {timeout_s:.0f} s")


def score_changes(settings) -> tuple[int, int]:
    """Score changes the worker reported (the topic also carries a progress record per partition and batch, and
    the leading-indicator signals: records with a ``type``), and how many of them a new model version made
    (``model_change``: the alert detector does not count those)."""
    changes = [record.value for record in read_topic(settings.kafka_bootstrap, settings.topic("score-changes"))
               if not record.value.startswith(b'{"type":')]
    return len(changes), sum(b'"model_change":true' in value for value in changes)


def start_py_spy(pid: int, out: Path) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw",
                             "--output", str(out), "--nonblocking", "--subprocesses"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def summarise_profile(collapsed: Path, top: int = 40, trainers: bool = False) -> str:
    """The functions most samples were in (inclusive) and on top of (self), from py-spy's collapsed stacks: of the
    worker's own process, or (``trainers``) of its child processes (py-spy's first frame names the process)."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in collapsed.read_text(errors="replace").split("\n"):
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a stack py-spy read torn (--nonblocking): not a sample
            continue
        frames, samples = [_LINE.sub(")", frame) for frame in stack.split(";")], int(count)
        processes = 0
        while processes < len(frames) and frames[processes].startswith("process "):
            processes += 1
        if (processes > 1) != trainers:  # the worker's own stacks have one process frame, its children's two
            continue
        frames = frames[processes:]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total:,} samples at 50 Hz (functions, their lines summed)", "", "inclusive  self  function (file)"]
    lines += [f"{inclusive[f] / total:8.1%} {own[f] / total:6.1%}  {f}" for f, _ in inclusive.most_common(top)]
    lines += ["", "self      function (file)"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def run(broker: EmbeddedBroker, redis_server: EmbeddedRedis, customers: int, profile: str, days: int,
        timeout_s: float, logs: Path, py_spy_dir: Path | None = None, trainers: str = "process",
        catch_up: int | None = None, label_steps: int | None = None, score_lag_days: float | None = None,
        env: dict[str, str] | None = None) -> dict:
    config = sparse_config(customers=customers, days=days) if profile == "sparse" else \
        SimulationConfig(customers=customers, days=days)
    events = simulate(config).events
    topics = Counter(topic for topic, _ in events)
    settings = unique_settings(broker.bootstrap, redis_server.url, env, worker_web_port=free_port(), trainers=trainers,
                               **({} if catch_up is None else {"catch_up_batch_size": catch_up}),
                               **({} if label_steps is None else {"churn_label_steps": label_steps}),
                               **({} if score_lag_days is None else {"churn_score_lag_days": score_lag_days}))
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    prepare_topics(settings)
    produce(settings.kafka_bootstrap, event_messages(settings, events))
    memory_before = int(client.info("memory")["used_memory"])
    worker = WorkerProcess(settings, logs / f"backfill-{profile}-{customers}.log").start()
    sampler = None
    if py_spy_dir is not None:
        py_spy_dir.mkdir(parents=True, exist_ok=True)
        sampler = start_py_spy(worker.process.pid, py_spy_dir / f"worker-{profile}-{customers}.collapsed")
    try:
        first_at = own_first = children_first = redis_first = None
        deadline = time.monotonic() + timeout_s
        while (done := accepted_total(client, settings)) < len(events):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker stopped or timed out at {done:,}/{len(events):,} events")
            if first_at is None and done > 0:
                first_at, first_done = time.monotonic(), done
                own_first, children_first = own_cpu_s(worker.process.pid), children_cpu_s(worker.process.pid)
                redis_first = redis_cpu_s(client)
            time.sleep(0.2)
        drained_s = time.monotonic() - first_at
        drained = len(events) - first_done
        trainers_cpu = children_cpu_s(worker.process.pid) - children_first
        worker_cpu = own_cpu_s(worker.process.pid) - own_first + trainers_cpu  # the trainers' process included
        redis_cpu = redis_cpu_s(client) - redis_first
        metrics = metrics_page(settings.worker_web_port)
        scorings = labelled(metrics, "crm_churn_scorings_total")
        scored_times = labelled(metrics, "crm_churn_scored_times_total")
        batches = histogram(metrics, "crm_batch_seconds")
        loop_lag = histogram(metrics, "crm_event_loop_lag_seconds")
        version_wait_s = next((_value(line) for line in metrics
                               if line.startswith("crm_churn_version_wait_seconds_total ")), 0.0)
        changes, model_changes = score_changes(settings)
        trained_s, learned = trained_after(client, settings, first_at)
    finally:
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
        worker.stop()
    if py_spy_dir is not None:
        collapsed = py_spy_dir / f"worker-{profile}-{customers}.collapsed"
        (py_spy_dir / f"worker-{profile}-{customers}.txt").write_text(summarise_profile(collapsed))
        (py_spy_dir / f"trainers-{profile}-{customers}.txt").write_text(summarise_profile(collapsed, trainers=True))
    memory_after = int(client.info("memory")["used_memory"])
    purchases_share = topics["purchases"] / len(events)
    total_scorings = sum(scorings.values())
    return {
        "profile": profile, "trainers": trainers, "label_steps": settings.churn_label_steps,
        "score_lag_days": settings.churn_score_lag_ms() / 86_400_000,
        "catch_up": settings.catch_up_batch_size, "customers": customers,
        "events": len(events),
        "purchases": topics["purchases"],
        "drained_s": drained_s, "events_per_s": drained / drained_s,
        "orders_per_s": drained * purchases_share / drained_s,
        "scorings_per_purchase": total_scorings / topics["purchases"],
        "scorings_per_event": total_scorings / len(events),
        "changes_per_purchase": changes / topics["purchases"],
        "model_changes_per_purchase": model_changes / topics["purchases"],
        "batches": batches, "loop_lag": loop_lag, "version_wait_s": version_wait_s,
        "trained_s": trained_s, "learned": learned,
        "wake_share": scorings.get("wake", 0) / max(total_scorings, 1),
        "per_purchase": {at: count / topics["purchases"] for at, count in sorted(scorings.items())},
        "times_per_purchase": {at: count / topics["purchases"] for at, count in sorted(scored_times.items())},
        "worker_cpu_us_per_event": worker_cpu / drained * 1e6,
        "trainers_cpu_us_per_event": trainers_cpu / drained * 1e6, "redis_cpu_us_per_event": redis_cpu / drained * 1e6,
        "bytes_per_customer": (memory_after - memory_before) / customers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--profile", choices=("sparse", "dense"), default="sparse")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="give up on a size after this long")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="sample the worker with py-spy")
    parser.add_argument("--trainers", nargs="+", choices=("process", "inline"), default=["process"],
                        help="CRM_TRAINERS of the worker; several: each size is run with each, side by side")
    parser.add_argument("--catch-up-batch-size", type=int, nargs="+", default=[None], metavar="N",
                        help="CRM_CATCH_UP_BATCH_SIZE of the worker (default: the setting's); several: side by side")
    parser.add_argument("--label-steps", type=int, nargs="+", default=[None], metavar="N",
                        help="CRM_CHURN_LABEL_STEPS of the worker (default: the setting's); several: side by side")
    parser.add_argument("--score-lag-days", type=float, nargs="+", default=[None], metavar="D",
                        help="CRM_CHURN_SCORE_LAG_DAYS of the worker (0: newest version; default: the setting's); "
                             "several: side by side")
    parser.add_argument("--env", nargs="+", default=[], metavar="CRM_NAME=VALUE",
                        help="other settings of the worker, as environment variables (every run)")
    args = parser.parse_args()
    logs = ROOT / "bench" / "out"
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        print(f"{'profile':>7} {'trainers':>8} {'catch-up':>8} {'customers':>9} {'events':>9} {'purchases':>9} "
              f"{'drained s':>9} {'events/s':>9} "
              f"{'orders/s':>8} {'scor/purch':>10} {'scor/ev':>7} {'woken':>6} {'worker us/ev':>12} "
              f"{'redis us/ev':>11} {'bytes/cust':>10}", flush=True)
        runs = ((c, t, b, s, g) for c in args.customers for t in args.trainers for b in args.catch_up_batch_size
                for s in args.label_steps for g in args.score_lag_days)
        for customers, trainers, catch_up, label_steps, lag_days in runs:
            r = run(broker, redis_server, customers, args.profile, args.days, args.timeout_s, logs, args.py_spy,
                    trainers, catch_up, label_steps, lag_days, dict(v.split("=", 1) for v in args.env))
            print(f"          CRM_CHURN_LABEL_STEPS={r['label_steps']}, score lag in use {r['score_lag_days']:g} days",
                  flush=True)
            print(f"{r['profile']:>7} {r['trainers']:>8} {r['catch_up']:>8,} {r['customers']:>9,} {r['events']:>9,} "
                  f"{r['purchases']:>9,} "
                  f"{r['drained_s']:>9.1f} {r['events_per_s']:>9,.0f} {r['orders_per_s']:>8,.0f} "
                  f"{r['scorings_per_purchase']:>10.1f} {r['scorings_per_event']:>7.2f} {r['wake_share']:>6.0%} "
                  f"{r['worker_cpu_us_per_event']:>12,.0f} {r['redis_cpu_us_per_event']:>11,.0f} "
                  f"{r['bytes_per_customer']:>10,.0f}", flush=True)
            print("          per purchase: customers scored, by what visited them " + ", ".join(
                f"{at} {value:.2f}" for at, value in r["per_purchase"].items()) + "; as-of times scored " + ", ".join(
                f"{at} {value:.1f}" for at, value in r["times_per_purchase"].items())
                + f"; score changes reported {r['changes_per_purchase']:.2f} (of which model_change "
                f"{r['model_changes_per_purchase']:.2f}); worker CPU of which trainers' process "
                f"{r['trainers_cpu_us_per_event']:,.0f} us/event", flush=True)
            count, mean_s, p99_s = r["batches"]
            print(f"          batches {count:,}: mean {mean_s:.2f} s, p99 <= {p99_s:g} s; event loop lag p99 <= "
                  f"{r['loop_lag'][2]:g} s (the consumer's heartbeats wait that long); waited for the churn version "
                  f"of their event time {r['version_wait_s']:.1f} s; the churn trainer learned its last example "
                  f"({r['learned']:,}) {r['trained_s']:.1f} s after the first event", flush=True)


if __name__ == "__main__":
    main()
