"""Session fixtures: a real Kafka-protocol broker (Tansu) and a real redis-server on free ports."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from streams.embedded import EmbeddedBroker, EmbeddedRedis
from tests.stack import suite_settings

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="session")
def broker() -> EmbeddedBroker:
    with EmbeddedBroker(OUTPUT_DIR / "logs") as running:
        yield running


@pytest.fixture(scope="session")
def redis_server() -> EmbeddedRedis:
    with EmbeddedRedis(OUTPUT_DIR / "logs") as running:
        yield running


@pytest.fixture()
def redis_client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture()
async def redis_async(redis_server) -> aioredis.Redis:
    """The asyncio client that code under test awaits (API readers, trainers), closed after the test."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture()
def settings(broker, redis_server):
    return suite_settings(broker.bootstrap, redis_server.url)


@pytest.fixture()
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR
