"""``crmstream simulate``: write the simulated history to JSONL or send it to Kafka."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import date
from pathlib import Path

import orjson

from streams.config import Settings
from streams.producer import send_to_kafka
from streams.simulator import PROFILES, Simulation, SimulationConfig, iter_jsonl_records, simulate

__all__ = ["run_simulate", "write_jsonl", "config_from_args"]

logger = logging.getLogger(__name__)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    start = date.fromisoformat(args.start) if getattr(args, "start", None) else SimulationConfig.start
    profile = PROFILES[getattr(args, "profile", None) or "dense"]
    return profile(customers=args.customers, days=args.days, seed=args.seed, start=start)


def write_truth(simulation: Simulation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(simulation.truth(), option=orjson.OPT_INDENT_2))


def write_jsonl(simulation: Simulation, path: Path) -> Path:
    """Events as ``{"topic", "event"}`` lines; the ground truth goes to ``<path>.truth.json``."""
    with open(path, "wb") as out:
        for record in iter_jsonl_records(simulation):
            out.write(orjson.dumps(record) + b"\n")
    truth_path = path.with_name(path.name + ".truth.json")
    write_truth(simulation, truth_path)
    return truth_path


def run_simulate(args: argparse.Namespace) -> int:
    settings = None if args.out else Settings.from_env()  # checked before a long simulation, not after
    if settings is not None and not settings.kafka_bootstrap:
        print("CRM_KAFKA_BOOTSTRAP is not set: give --out FILE, or run `crmstream demo`", file=sys.stderr)
        return 2
    simulation = simulate(config_from_args(args))
    if settings is None:
        truth = write_jsonl(simulation, Path(args.out))
        print(f"wrote {len(simulation.events)} events to {args.out}, ground truth to {truth}")
        return 0
    truth = Path(settings.data_dir) / f"simulation-seed{args.seed}.truth.json"
    write_truth(simulation, truth)
    sent = asyncio.run(send_to_kafka(simulation.events, settings, args.rate))
    print(f"sent {sent} events, ground truth in {truth}")
    return 0
