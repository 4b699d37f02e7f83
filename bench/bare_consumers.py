"""Baselines for bench/throughput.py: consumers that do nothing but receive.

``aiokafka``: a bare consumer that only decodes each value with orjson.
``faust``: a bare Faust agent that only iterates ``stream.take_events`` batches.
Each records the wall time at which every (topic, partition, offset) arrived and
writes them to ``--out`` when it gets SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

import orjson


def dump(received: dict[str, float], path: str) -> None:
    with open(path, "wb") as out:
        out.write(orjson.dumps(received))


def report_progress(received: dict, path: str) -> None:
    with open(path + ".count", "w") as out:
        out.write(str(len(received)))


async def bare_aiokafka(args: argparse.Namespace, received: dict[str, float]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*args.topics, bootstrap_servers=args.bootstrap, group_id=args.group,
                                auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                max_poll_records=args.batch)
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    last_report = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() - last_report > 0.5:
                report_progress(received, args.out)
                last_report = time.monotonic()
            batches = await consumer.getmany(timeout_ms=100, max_records=args.batch)
            now = time.time()
            for tp, records in batches.items():
                for record in records:
                    orjson.loads(record.value)
                    received[f"{tp.topic}:{tp.partition}:{record.offset}"] = now
    finally:
        await consumer.stop()


def bare_faust(args: argparse.Namespace, received: dict[str, float]) -> None:
    import faust

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://", value_serializer="raw",
                    key_serializer="raw", topic_disable_leader=True, consumer_auto_offset_reset="earliest",
                    broker_session_timeout=6.0, broker_heartbeat_interval=1.0, broker_rebalance_timeout=10.0,
                    web_enabled=False)
    source = app.topic(*args.topics, value_serializer="raw", key_serializer="raw")

    @app.agent(source)
    async def iterate(stream):
        async for events in stream.take_events(args.batch, within=0.1):
            now = time.time()
            for event in events:
                message = event.message
                received[f"{message.topic}:{message.partition}:{message.offset}"] = now

    @app.timer(0.5)
    async def progress() -> None:
        report_progress(received, args.out)

    try:
        faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    finally:
        dump(received, args.out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["aiokafka", "faust"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()
    received: dict[str, float] = {}
    if args.mode == "aiokafka":
        asyncio.run(bare_aiokafka(args, received))
        dump(received, args.out)
    else:
        bare_faust(args, received)


if __name__ == "__main__":
    sys.exit(main())
