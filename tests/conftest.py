"""Session fixtures: a real Kafka-protocol broker (Tansu) and a real redis-server on free ports."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from streams.embedded import EmbeddedBroker, EmbeddedRedis, EmbeddedRedisCluster
from tests.stack import suite_settings

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"

#: The test files that take minutes, slowest first (``pytest --durations=30``: the alert scenario's two runs
#: ~280 s, segments ~210 s, crash recovery ~170 s, churn ~120 s, ...). ``make test`` hands files to the two
#: xdist workers in collection order (``--no-loadscope-reorder``), so these start first and the small files
#: fill in at the end: by default xdist starts the files with most tests, and the two slowest then ran last,
#: one worker finishing a long file alone.
SLOWEST_FIRST = ("test_alerts.py", "test_segments.py", "test_crash_recovery.py", "test_churn.py",
                 "test_customer_state_replay.py", "test_api.py", "test_items.py", "test_kpis.py",
                 "test_churn_pipeline.py", "test_segmentation.py", "test_demo.py", "test_replay.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest test files first (a stable sort: each file keeps its own order)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def broker() -> EmbeddedBroker:
    with EmbeddedBroker(OUTPUT_DIR / "logs") as running:
        yield running


@pytest.fixture(scope="session")
def redis_server() -> EmbeddedRedis:
    with EmbeddedRedis(OUTPUT_DIR / "logs") as running:
        yield running


@pytest.fixture(scope="session")
def redis_cluster() -> EmbeddedRedisCluster:
    """Three masters on loopback (tests/test_cluster.py and the cluster runs of the crash tests)."""
    with EmbeddedRedisCluster(OUTPUT_DIR / "logs") as running:
        yield running


@pytest.fixture()
def cluster_client(redis_cluster) -> redis.RedisCluster:
    client = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode("127.0.0.1", node.port)
                                               for node in redis_cluster.nodes], decode_responses=True)
    yield client
    client.close()


@pytest.fixture()
def cluster_settings(broker, redis_cluster):
    """The suite's settings on the cluster (``CRM_REDIS_URL`` naming its three nodes)."""
    return suite_settings(broker.bootstrap, redis_cluster.url).with_(redis_cluster=True)


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
