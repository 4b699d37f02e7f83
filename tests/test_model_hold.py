"""Holding the served churn model (a rollback) against a real Redis: the trainer's publishing and the
operator's hold are atomic with each other, the held version survives retention, and a restarted trainer
never reuses a version number."""
from __future__ import annotations

import orjson

from agents.churn_trainer import RETAINED_VERSIONS, TrainerProcess
from api.models import ModelOps
from streams.redis_store import RedisStore


async def test_a_held_version_is_served_until_released_while_the_trainer_keeps_publishing(settings, redis_client,
                                                                                        redis_async):
    prefix = settings.redis_prefix
    trainer = TrainerProcess(RedisStore(redis_async, prefix), settings)
    ops = ModelOps(redis_async, prefix)

    async def publish() -> None:
        trainer.version += 1
        await trainer.publish(trainer.trainer.snapshot(trainer.version, 0) | {"trained_until_ms": trainer.version})

    def served() -> int:
        return orjson.loads(redis_client.get(prefix + "model:{churn}:latest"))["version"]

    assert await ops.release_churn("admin") is None  # nothing published yet
    for _ in range(3):
        await publish()
    assert served() == 3
    assert await ops.hold_churn(7, "admin") is None and served() == 3  # never published
    assert await ops.hold_churn(1, "admin") == 1 and served() == 1
    for _ in range(RETAINED_VERSIONS + 2):  # versions 4..15: retained, reported, not served
        await publish()
    status = (await ops.status())["churn"]
    assert served() == 1 and status["version"] == RETAINED_VERSIONS + 5
    assert status["serving"] == {"version": 1, "held": True,
                                 "retained_versions": [1, *range(6, RETAINED_VERSIONS + 6)]}

    await trainer.restore()  # a restarted trainer numbers on from the newest, not from the held one
    assert trainer.version == RETAINED_VERSIONS + 5
    assert await ops.release_churn("admin") == RETAINED_VERSIONS + 5 and served() == RETAINED_VERSIONS + 5
    await publish()
    status = (await ops.status())["churn"]
    assert served() == RETAINED_VERSIONS + 6 and status["serving"]["held"] is False
    assert status["serving"]["retained_versions"] == list(range(7, RETAINED_VERSIONS + 7))  # 1 released
