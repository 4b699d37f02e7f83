"""``crmstream demo``: the whole system on one machine, stopped cleanly with Ctrl-C.

Starts what is not configured (an embedded broker when ``CRM_KAFKA_BOOTSTRAP``
is empty, a ``redis-server`` when ``CRM_REDIS_URL`` is empty), creates the
topics, runs N workers and the API as child processes, feeds the simulator
and prints live numbers read back from Redis.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from streams.config import Settings
from streams.keyspace import merged, summed
from api.auth import new_key
from streams.embedded import (
    EmbeddedBroker, EmbeddedRedis, MissingComponent, create_topics, free_port, wait_for_port,
)
from streams.producer import send_to_kafka
from streams.simulate_cli import config_from_args, write_truth
from streams.simulator import simulate
from streams.topics import topic_specs

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


def _child(argv: list[str], settings: Settings, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, env={**os.environ, **settings.to_env()}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _print_progress(client: redis.Redis, settings: Settings, started: float, sent_total: int,
                    last: dict) -> None:
    stats = summed(client, settings.key_space(), "stats:ingest")
    accepted = sum(v for k, v in stats.items() if k.startswith("accepted:"))
    rejected = sum(v for k, v in stats.items() if k.startswith("rejected:"))
    watermarks = [int(v) for v in merged(client, settings.key_space(), "watermark").values()]
    now = time.monotonic()
    rate = (accepted - last.get("accepted", 0)) / max(now - last.get("t", started), 1e-9)
    last.update(accepted=accepted, t=now)
    event_day = time.strftime("%Y-%m-%d", time.gmtime(max(watermarks) / 1000)) if watermarks else "-"
    print(f"[{now - started:6.0f}s] customers {stats.get('customers', 0):>7,}  accepted {accepted:>9,}/{sent_total:,}"
          f"  dead-lettered {rejected:>5,}  {rate:>8,.0f} ev/s  event time {event_day}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    data_dir = Path(settings.data_dir)
    logs = data_dir / "logs"
    stack = contextlib.ExitStack()
    children: list[subprocess.Popen] = []
    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if not settings.kafka_bootstrap:
            broker = stack.enter_context(EmbeddedBroker(logs))
            settings = settings.with_(kafka_bootstrap=broker.bootstrap)
            print(f"embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
        if not settings.redis_url:
            server = stack.enter_context(EmbeddedRedis(logs))
            settings = settings.with_(redis_url=server.url)
            print(f"embedded redis-server on {server.url}")
        asyncio.run(create_topics(settings.kafka_bootstrap, topic_specs(settings)))
        client = (redis.RedisCluster.from_url(settings.redis_url.split(",")[0], decode_responses=True)
                  if settings.redis_cluster or "," in settings.redis_url
                  else redis.Redis.from_url(settings.redis_url, decode_responses=True))

        admin_key = None
        if not settings.api_keys and not settings.api_keys_file:
            admin_key = new_key()
            settings = settings.with_(api_keys=f"{admin_key}:admin")
        for index in range(args.workers):
            worker_settings = settings.with_(worker_web_port=free_port())
            children.append(_child([sys.executable, "-m", "streams.cli", "worker"], worker_settings,
                                   logs / f"worker-{index}.log"))
            print(f"worker {index} metrics: http://127.0.0.1:{worker_settings.worker_web_port}/metrics")
        children.append(_child([sys.executable, "-m", "streams.cli", "api"], settings, logs / "api.log"))
        wait_for_port(settings.api_port, 30, children[-1])
        url = f"http://{settings.api_host}:{settings.api_port}"
        if admin_key:
            print(f"admin API key (generated for this run): {admin_key}")
            print(f"dashboard: {url}/#key={admin_key}")
        else:
            print(f"dashboard: {url}/  (paste an API key from CRM_API_KEYS / CRM_API_KEYS_FILE)")
        print(f"API: {url}/docs (OpenAPI)   metrics: {url}/metrics")
        print(f"logs: {logs.resolve()}   stop with Ctrl-C")

        simulation = simulate(config_from_args(args))
        truth_path = data_dir / f"simulation-seed{args.seed}.truth.json"
        write_truth(simulation, truth_path)
        print(f"simulator: {args.customers} customers, {args.days} days, {len(simulation.events):,} events "
              f"at {args.rate:,.0f} ev/s (ground truth: {truth_path})")
        return _feed_and_watch(simulation, settings, args, client, children, lambda: stop_requested)
    except MissingComponent as exc:
        print(f"cannot start the demo: {exc}", file=sys.stderr)
        return 2
    finally:
        print("stopping ...", flush=True)
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        stack.close()
        print("stopped.")


def _feed_and_watch(simulation, settings: Settings, args: argparse.Namespace, client: redis.Redis,
                    children: list[subprocess.Popen], stop_requested) -> int:
    started = time.monotonic()
    last: dict = {}

    async def main() -> None:
        feeder = asyncio.create_task(send_to_kafka(simulation.events, settings, args.rate))
        try:
            while not stop_requested():
                await asyncio.sleep(2)
                if any(child.poll() is not None for child in children):
                    raise RuntimeError("a worker or the API exited; see the logs")
                _print_progress(client, settings, started, len(simulation.events), last)
                if args.duration and time.monotonic() - started > args.duration:
                    break
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    asyncio.run(main())
    return 0
