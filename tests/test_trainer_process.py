"""The trainers' child process lives and dies with its worker: started with it, restarted if it dies,
gone when the worker is SIGKILLed (nothing learns, or publishes, for a dead worker)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from tests.conftest import OUTPUT_DIR
from tests.stack import WorkerProcess, prepare_topics, wait_until


def trainer_children(worker_pid: int) -> list[int]:
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"trainers" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.fixture()
def worker(settings):
    settings = settings.with_(trainers="process")
    prepare_topics(settings)
    running = WorkerProcess(settings, OUTPUT_DIR / "logs" / f"worker-{settings.app_id}.log").start()
    yield running
    running.kill()


def test_a_worker_restarts_its_trainers_and_takes_them_down_with_it(worker):
    pid = worker.process.pid
    found: list[int] = []

    def one_trainer() -> bool:
        found[:] = trainer_children(pid)
        return len(found) == 1

    wait_until(one_trainer, 60, "the worker did not start its trainers' process", process=worker.process)
    first = found[0]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: one_trainer() and found[0] != first, 30, "the trainers' process was not restarted",
               process=worker.process)
    second = found[0]
    worker.kill()
    wait_until(lambda: not alive(second), 30, "the trainers' process outlived its SIGKILLed worker")


def test_inline_trainers_start_no_process(settings, redis_server):
    settings = settings.with_(trainers="inline")
    prepare_topics(settings)
    running = WorkerProcess(settings, OUTPUT_DIR / "logs" / f"worker-{settings.app_id}.log").start()
    try:
        running.wait_owning(redis.Redis.from_url(redis_server.url, decode_responses=True), settings.partitions)
        assert trainer_children(running.process.pid) == []
    finally:
        running.kill()
