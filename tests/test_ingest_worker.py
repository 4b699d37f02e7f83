"""Ingest against the real parts: Tansu broker, redis-server and a `crmstream worker` process."""
from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter

import orjson
import pytest

from streams.keyspace import summed
from tests.events_factory import customer, interaction, purchase
from tests.stack import WorkerProcess, prepare_topics, produce, read_state, read_topic, wait_until
from tests.test_schemas import HOSTILE


def read_at(bootstrap: str, coordinates: list[tuple[str, int, int]]) -> list[bytes | None]:
    """The values stored at (topic, partition, offset), to check dead letters point at their source."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            values = []
            for topic, partition, offset in coordinates:
                tp = TopicPartition(topic, partition)
                consumer.assign([tp])
                consumer.seek(tp, offset)
                record = await asyncio.wait_for(consumer.getone(tp), 10)
                assert record.offset == offset
                values.append(record.value)
            return values
        finally:
            await consumer.stop()

    return asyncio.run(run())


def hostile_corpus(settings) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(topic, key, value, expected reason), the unit-test corpus plus cases needing the real clock."""
    corpus = []
    for contract, payload, key, reason in HOSTILE:
        if reason == "future_timestamp":
            payload = interaction(ts=int(time.time() * 1000) + 3_600_000)
        value = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        corpus.append((settings.topic(contract), key, value, reason))
    corpus.append((settings.topic("interactions"), b"c1",
                   orjson.dumps(interaction(text="x" * 1500)), "oversize"))
    corpus.append((settings.topic("purchases"), b"c1", None, "bad_json"))
    return corpus


def stats(redis_client, settings) -> dict[str, int]:
    return summed(redis_client, settings.key_space(), "stats:ingest")


@pytest.fixture()
def worker(settings, redis_client, output_dir):
    settings = settings.with_(max_event_bytes=1024)
    prepare_topics(settings)
    process = WorkerProcess(settings, output_dir / "logs" / f"worker-{settings.app_id}.log").start()
    process.wait_owning(redis_client, settings.partitions)
    yield process
    process.stop()


def test_hostile_input_goes_to_deadletter_and_good_events_keep_flowing(worker, redis_client, broker):
    settings = worker.settings
    good_before = [purchase(f"c{i}") for i in range(20)] + [interaction(f"c{i}") for i in range(20)]
    good_after = [interaction(f"c{i}", type="product_view", sku="sku-2") for i in range(30)]
    corpus = hostile_corpus(settings)
    duplicate = good_before[0]
    messages = [(settings.topic("purchases" if "order_id" in e else "interactions"), e["customer_id"].encode(),
                 orjson.dumps(e)) for e in good_before]
    messages += [(topic, key, value) for topic, key, value, _ in corpus]
    messages += [(settings.topic("interactions"), e["customer_id"].encode(), orjson.dumps(e)) for e in good_after]
    messages.append((settings.topic("purchases"), b"c0", orjson.dumps(duplicate)))
    produce(broker.bootstrap, messages)

    expected_rejections = Counter(reason for *_, reason in corpus)
    wait_until(lambda: stats(redis_client, settings).get("accepted:interactions") == 50
               and sum(v for k, v in stats(redis_client, settings).items() if k.startswith("rejected:")) == len(corpus),
               60, "worker did not process the whole stream")

    counters = stats(redis_client, settings)
    assert counters["accepted:purchases"] == 20
    assert counters["accepted:interactions"] == 50
    assert counters["duplicates"] == 1
    assert {k.removeprefix("rejected:"): v for k, v in counters.items() if k.startswith("rejected:")} \
        == dict(expected_rejections)

    letters = read_topic(broker.bootstrap, settings.topic("deadletter"), len(corpus))
    assert len(letters) == len(corpus)
    sent = {(topic, value, reason) for topic, _, value, reason in corpus}
    received = set()
    for record in letters:
        letter = orjson.loads(record.value)
        raw = None if letter["value_b64"] is None else base64.b64decode(letter["value_b64"])
        source = letter["source"]
        received.add((source["topic"], raw, letter["reason"]))
        assert record.key == f"{source['topic']}:{source['partition']}:{source['offset']}".encode()
        assert letter["detail"]
    assert received == sent
    sources = [orjson.loads(r.value) for r in letters]
    stored = read_at(broker.bootstrap, [(s["source"]["topic"], s["source"]["partition"], s["source"]["offset"])
                                        for s in sources])
    assert stored == [None if s["value_b64"] is None else base64.b64decode(s["value_b64"]) for s in sources]

    # The worker is alive and still applying good events after the hostile ones.
    assert worker.process.poll() is None
    assert read_state(redis_client, settings, "c7").activity.events["interactions"] == 2


def test_erasure_removes_every_key_and_is_confirmed(worker, redis_client, broker):
    settings = worker.settings
    events = [customer("gone", type="signup", attributes={"email": "x@example.com"}),
              purchase("gone"), interaction("gone", type="product_view", sku="s1"), purchase("stays")]
    produce(broker.bootstrap, [(settings.topic("customers" if "attributes" in e else
                                                "purchases" if "order_id" in e else "interactions"),
                                e["customer_id"].encode(), orjson.dumps(e)) for e in events])
    wait_until(lambda: redis_client.exists(settings.key_space().customer("gone")), 30, "customer never stored")
    produce(broker.bootstrap, [(settings.topic("customers"), b"gone", orjson.dumps(customer("gone", type="erase")))])
    wait_until(lambda: stats(redis_client, settings).get("erasures") == 1, 30, "erasure not applied")

    assert list(redis_client.scan_iter(match="*gone*")) == []
    assert redis_client.exists(settings.key_space().customer("stays"))
    confirmations = read_topic(broker.bootstrap, settings.topic("erasures"), 1)
    assert [orjson.loads(r.value)["customer_id"] for r in confirmations] == ["gone"]
