"""Load test of the profile endpoint: p50/p99 at a fixed request rate, next to a bare Redis HGETALL of the same
customers at the same rate, measured in the same run on the same Redis.

The API runs as its own process (``crmstream api``, as deployed); this process is the client. Requests are
sent open-loop: request i is due at start + i/rate whether or not earlier ones answered, and its latency is
counted from when it was due, so a stall shows up in the percentiles instead of slowing the client down
(no coordinated omission). Keep-alive connections, raw HTTP/1.1: the client's own cost stays small.

The API keeps its default rate limits (100 requests/s per key, shared by every API process through Redis):
the connections carry ``--keys`` support keys (default 16, two connections each: ~62 requests/s a key), as
from a team of support tools, so the limiter does its real work instead of being configured away; a request
it refused would count as failed.

Usage: python bench/api_load.py [--customers 1000] [--rate 1000] [--seconds 20] [--connections 32] [--keys 16]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedBroker, EmbeddedRedis, free_port, wait_for_port  # noqa: E402
from streams.keyspace import KeySpace  # noqa: E402
from streams.simulator import SimulationConfig, simulate  # noqa: E402
from tests.stack import process_history, unique_settings  # noqa: E402


def bench_key(i: int) -> str:
    return f"bench-support-key-{i:03d}-" + "b" * 16


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it go one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        self.reader, self.writer, self.key = reader, writer, key

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {self.key}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self.reader.readexactly(length)
        return status


async def open_loop(call, rate: float, seconds: float, workers: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``call(i, worker)`` at ``rate`` per second for ``seconds`` on ``workers`` lanes; returns latency from
    the due time (ms), service time (ms) and the count of failed calls."""
    total = int(rate * seconds)
    queue: asyncio.Queue[int] = asyncio.Queue()
    latency, service = np.zeros(total), np.zeros(total)
    failures = 0
    start = time.perf_counter() + 0.1

    async def lane(worker: int) -> None:
        nonlocal failures
        while True:
            i = await queue.get()
            if i < 0:
                return
            began = time.perf_counter()
            if not await call(i, worker):
                failures += 1
            done = time.perf_counter()
            latency[i], service[i] = (done - (start + i / rate)) * 1000, (done - began) * 1000

    lanes = [asyncio.create_task(lane(w)) for w in range(workers)]
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
    for _ in lanes:
        queue.put_nowait(-1)
    await asyncio.gather(*lanes)
    return latency, service, failures


def summary(name: str, latency: np.ndarray, service: np.ndarray, failures: int, seconds: float) -> dict:
    slow = np.flatnonzero(latency > 5.0)
    if len(slow):
        print(f"{name}: {len(slow)} requests over 5 ms, due between {slow[0] / len(latency) * seconds:.2f} s and "
              f"{slow[-1] / len(latency) * seconds:.2f} s")
    p = np.percentile(latency, [50, 99, 99.9])
    return {"name": name, "requests": len(latency), "rate": len(latency) / seconds, "p50": p[0], "p99": p[1],
            "p999": p[2], "max": latency.max(), "service_p50": np.percentile(service, 50), "failures": failures}


async def measure(redis_url: str, key_space: KeySpace, api_port: int, ids: list[str], rate: float, seconds: float,
                  connections: int, keys: int) -> list[dict]:
    rng = random.Random(7)
    picks = [rng.choice(ids) for _ in range(int(rate * seconds))]
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=connections)

    async def hgetall(i: int, worker: int) -> bool:
        return bool(await client.hgetall(key_space.customer(picks[i])))

    for i in range(200):
        await hgetall(i % len(picks), 0)
    latency, service, failures = await open_loop(hgetall, rate, seconds, connections)
    results = [summary("bare Redis HGETALL", latency, service, failures, seconds)]
    from api.customers import CustomerReader

    reader = CustomerReader(client, key_space, sketch_ttl_s=0.0)
    began = time.perf_counter()
    for _ in range(20):
        await reader.population_view()
    refresh_ms = (time.perf_counter() - began) / 20 * 1000
    began = time.perf_counter()
    for customer_id in picks[:500]:
        await reader.profile(customer_id)
    print(f"population refresh {refresh_ms:.2f} ms; profile read with a refresh each: "
          f"{(time.perf_counter() - began) / 500 * 1000:.2f} ms")
    await client.aclose()

    # Opened now: uvicorn closes keep-alive connections idle for 5 s.
    http = [Connection(*await asyncio.open_connection("127.0.0.1", api_port), bench_key(i % keys))
            for i in range(connections)]

    async def profile(i: int, worker: int) -> bool:
        return await http[worker].get(f"/customers/{picks[i]}") == 200

    for i in range(400):  # warm the connections and the API's cached population sketches
        await profile(i % len(picks), i % connections)
    latency, service, failures = await open_loop(profile, rate, seconds, connections)
    results.append(summary("GET /customers/{id}", latency, service, failures, seconds))
    for connection in http:
        connection.writer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keys", type=int, default=16, help="support keys the connections use, in turn")
    parser.add_argument("--api-workers", type=int, default=1, help="CRM_API_WORKERS of the API under test")
    args = parser.parse_args()
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    simulation = simulate(SimulationConfig(customers=args.customers, days=365, seed=1))
    with EmbeddedBroker(out) as broker, EmbeddedRedis(out) as redis_server:
        settings = unique_settings(broker.bootstrap, redis_server.url)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        elapsed = process_history(settings, client, simulation.events, out / "api-load-worker.log", 900)
        key_space = settings.key_space()
        ids = [key_space.customer_of(key) for key in client.scan_iter(match=key_space.pattern("c:{*}"), count=1000)
               if key_space.customer_of(key)]
        api_port = free_port()
        keys = ",".join(f"{bench_key(i)}:support" for i in range(args.keys))  # default rate limits
        env = {**os.environ, **settings.to_env(), "CRM_API_PORT": str(api_port), "CRM_API_KEYS": keys,
               "CRM_API_WORKERS": str(args.api_workers)}
        api = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env,
                               stdout=open(out / "api-load-api.log", "ab"), stderr=subprocess.STDOUT)
        try:
            wait_for_port(api_port, 30, api)
            time.sleep(3)  # the port opens before every worker process has imported the app
            gc.collect()
            gc.freeze()  # the simulation's objects stay: full collections must not stall this client
            results = asyncio.run(measure(redis_server.url, key_space, api_port, ids, args.rate,
                                          args.seconds, args.connections, args.keys))
        finally:
            api.terminate()
            api.wait(20)
    print(f"{len(ids):,} customers in Redis ({len(simulation.events):,} events, pipeline {elapsed:.0f} s); "
          f"open loop at {args.rate:,.0f} requests/s for {args.seconds:.0f} s, {args.connections} connections, "
          f"{args.keys} keys, {args.api_workers} API process(es)")
    print(f"{'':24} {'sent/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'service p50':>12} "
          f"{'failed':>7}")
    for r in results:
        print(f"{r['name']:24} {r['rate']:>8,.0f} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['p999']:>9.3f} "
              f"{r['max']:>8.2f} {r['service_p50']:>12.3f} {r['failures']:>7}")
    bare, api_row = results
    print(f"ratio API / bare HGETALL: p50 {api_row['p50'] / bare['p50']:.1f}x, p99 {api_row['p99'] / bare['p99']:.1f}x;"
          f" target p99 <= 5 ms: {'met' if api_row['p99'] <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
