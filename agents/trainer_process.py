"""The global trainers in a process of their own, started and watched by the worker.

Why: learning is a third of a worker's CPU on a backlog (bench/profiles/), and in one process it runs
between the partition batches, on one core. As a child process (``crmstream trainers``: a Faust app
of its own, group ``<CRM_APP_ID>-trainers``, holding only the two single-partition trainer agents) it
learns on another core while the worker folds the next batch. Nothing else changes: the trainers read
the same topics, restore from the same checkpoints and publish the same snapshots to Redis, and with
several workers one child holds each trainer partition, as one worker did.

The child gets SIGTERM when the worker dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so no trainer
outlives its worker; if the child dies, the worker starts another.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import subprocess
import sys

import faust
import mode

__all__ = ["register_trainer_process", "trainer_command"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def trainer_command(loglevel: str = "info") -> list[str]:
    return [sys.executable, "-m", "streams.cli", "trainers", "--loglevel", loglevel]


class TrainerChild(mode.Service):
    """Starts ``crmstream trainers`` with the worker, restarts it if it exits, stops it with the worker."""

    def __init__(self, command: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.process: subprocess.Popen | None = None

    def _spawn(self) -> None:
        # The settings travel in the inherited environment; stdout/stderr are the worker's.
        self.process = subprocess.Popen(self.command, preexec_fn=_die_with_parent)
        logger.info("trainers started in process %d", self.process.pid)

    async def on_start(self) -> None:
        self._spawn()

    async def on_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)  # a Faust worker's own shutdown takes seconds
            except subprocess.TimeoutExpired:
                self.process.kill()

    @mode.Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            await self.sleep(1.0)
            if self.process is not None and self.process.poll() is not None and not self.should_stop:
                logger.warning("trainers process exited with %s; starting another", self.process.returncode)
                self._spawn()


def register_trainer_process(app: faust.App, loglevel: str = "info") -> None:
    app.add_dependency(TrainerChild(trainer_command(loglevel)))
