"""How long ownership takes to move: first join, restart, and failover after a SIGKILL.

Ownership is read from Redis: a worker claims a partition by bumping its fence
token, so "owned" means the token changed after the event we time.
Usage: python bench/rebalance.py [--faust-defaults]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402
from tests.stack import WorkerProcess, fence_tokens, prepare_topics, unique_settings, wait_until  # noqa: E402


def tokens(client: redis.Redis, settings) -> dict[str, str]:
    return fence_tokens(client, settings)


def wait_claims(client, settings, before: dict, count: int, timeout_s: float = 240) -> float:
    started = time.monotonic()
    wait_until(lambda: sum(1 for tp, t in tokens(client, settings).items() if before.get(tp) != t) >= count,
               timeout_s, "partitions were not claimed")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--faust-defaults", action="store_true",
                        help="Faust's default timeouts (60 s session / 3 s heartbeat / 60 s rebalance) for comparison")
    args = parser.parse_args()
    timeouts = dict(session_timeout_ms=60_000, heartbeat_interval_ms=3_000, rebalance_timeout_ms=60_000) \
        if args.faust_defaults else {}
    logs = ROOT / "bench" / "out"
    with EmbeddedBroker(logs) as broker, EmbeddedRedis(logs) as redis_server:
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        settings = unique_settings(broker.bootstrap, redis_server.url, partitions=args.partitions, **timeouts)
        print(f"session {settings.session_timeout_ms} ms, heartbeat {settings.heartbeat_interval_ms} ms, "
              f"rebalance {settings.rebalance_timeout_ms} ms, {args.partitions} partitions x 3 topics")
        prepare_topics(settings)
        all_tps = 3 * args.partitions
        log = logs / "rebalance-worker.log"

        before = tokens(client, settings)
        first = WorkerProcess(settings, log).start()
        join_s = wait_claims(client, settings, before, all_tps)
        print(f"first worker owns all partitions after   {join_s:6.1f} s", flush=True)

        first.stop()
        before = tokens(client, settings)
        restarted = WorkerProcess(settings, log).start()
        restart_s = wait_claims(client, settings, before, all_tps)
        print(f"restart (SIGTERM, start again) owns all  {restart_s:6.1f} s", flush=True)

        before = tokens(client, settings)
        second = WorkerProcess(settings, log).start()
        share_s = wait_claims(client, settings, before, all_tps // 2)
        print(f"second worker takes its share after      {share_s:6.1f} s", flush=True)

        time.sleep(3)
        before = tokens(client, settings)
        second.kill()
        failover_s = wait_claims(client, settings, before, all_tps)
        print(f"failover after SIGKILL of one of two     {failover_s:6.1f} s", flush=True)
        restarted.stop()


if __name__ == "__main__":
    main()
