"""The same code on a 3-master Redis Cluster (streams/keyspace.py, docs/architecture.md): what it serves equals the
single-Redis results, and no script touches keys of two hash slots.

Every node is watched with ``MONITOR`` while this module's tests run (a worker draining a history, erasure and
alert delivery, the API's readers, the trainer's publishing, the store's rules): the last test checks that each
script call declared keys of one slot only, that every command the script ran touched that slot (``MONITOR``
shows them, marked ``lua``) and that every script in ``streams/lua`` was called. The crash test's rebalance run
(tests/test_crash_recovery.py) also runs on the cluster, compared key by key with a single-Redis run.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import uuid
from collections import Counter
from importlib import resources

import pytest
import redis

import tests.test_alerts as alert_tests
import tests.test_crash_recovery as crash_tests
import tests.test_items as item_tests
import tests.test_model_hold as model_tests
import tests.test_rate_limit as rate_tests
import tests.test_redis_store as store_tests
import tests.test_replay as replay_tests
from agents.alert_delivery import SET_IF_STORED
from api.customers import CustomerReader
from streams.redis_store import BatchWrite, RedisStore, redis_client
from tests.conftest import OUTPUT_DIR
from tests.stack import WorkerProcess, prepare_topics

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ALL_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH"}


def command_keys(command: str, args: list[str]) -> list[str]:
    """The keys of one command our scripts run (their first argument, but for these)."""
    if command in ("EVALSHA", "EVAL"):
        return args[2:2 + int(args[1])]
    if command in ("ZINTERSTORE", "ZUNIONSTORE"):
        return [args[0], *args[2:2 + int(args[1])]]
    if command in _ALL_KEYS:
        return args
    return args[:1]


class SlotMonitor:
    """``MONITOR`` on every node, in threads: each script call (its sha, declared keys and the commands it ran)."""

    def __init__(self, ports: list[int]) -> None:
        self.calls: list[tuple[str, list[str], list[tuple[str, list[str]]]]] = []
        self._stop = threading.Event()
        self._ready = [threading.Event() for _ in ports]
        self._threads = [threading.Thread(target=self._watch, args=(port, ready), daemon=True)
                         for port, ready in zip(ports, self._ready)]

    def __enter__(self) -> "SlotMonitor":
        for thread in self._threads:
            thread.start()
        assert all(ready.wait(10) for ready in self._ready), "MONITOR did not start"
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _watch(self, port: int, ready: threading.Event) -> None:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"MONITOR\r\n")
            connection.settimeout(0.2)
            buffer, current = b"", None
            while True:
                try:
                    chunk = connection.recv(1 << 20)
                except TimeoutError:
                    chunk = b""
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    if line == b"+OK":
                        ready.set()
                    else:  # one node's lines in order: a script's commands follow its call
                        current = self._line(line.decode("utf-8", "replace"), current)
                if not chunk and self._stop.is_set():
                    return

    def _line(self, line: str, current):
        if not line.startswith("+") or "[" not in line:
            return current
        source = line[line.index("[") + 1:line.index("]")]
        tokens = [_unescape(token) for token in _TOKEN.findall(line[line.index("]") + 1:])]
        if not tokens:
            return current
        command, args = tokens[0].upper(), tokens[1:]
        if source.endswith(" lua"):
            if current is not None:
                current[2].append((command, command_keys(command, args)))
            return current
        if command in ("EVALSHA", "EVAL"):
            sha = args[0] if command == "EVALSHA" else hashlib.sha1(args[0].encode()).hexdigest()
            call = (sha, command_keys(command, args), [])
            self.calls.append(call)
            return call
        return None


def _unescape(token: str) -> str:
    return re.sub(r"\\(x[0-9a-f]{2}|.)", lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1).startswith("x")
                  else {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), token)


@pytest.fixture(scope="module")
def monitor(redis_cluster):
    with SlotMonitor([node.port for node in redis_cluster.nodes]) as watching:
        yield watching


@pytest.fixture()
async def cluster_async(redis_cluster, monitor):
    client = redis_client(redis_cluster.url, cluster=True)
    yield client
    await client.aclose()


def cluster_stores(redis_cluster):
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    return tuple(RedisStore(redis_client(redis_cluster.url, cluster=True), prefix) for _ in range(2))


async def test_the_stores_rules_hold_on_a_cluster(redis_cluster, monitor):
    for rule in (store_tests.test_a_stale_owner_is_fenced_and_writes_nothing,
                 store_tests.test_a_retried_commit_is_not_applied_twice,
                 store_tests.test_several_partitions_commit_in_one_call_each_on_its_own,
                 store_tests.test_claim_resumes_from_the_stored_offsets,
                 store_tests.test_a_catch_up_batch_larger_than_luas_unpack_limit_commits_whole,
                 store_tests.test_a_retried_batch_of_wake_ups_only_is_not_applied_twice,
                 store_tests.test_the_search_index_follows_moves_and_erasure_in_one_batch,
                 store_tests.test_dropping_expired_kpi_buckets_carries_the_base_in_each_partition):
        stores = cluster_stores(redis_cluster)
        try:
            await rule(stores)
        finally:
            for store in stores:
                await store.close()


async def test_search_merges_every_partitions_page_on_a_cluster(redis_cluster, monitor, cluster_async):
    store, other = cluster_stores(redis_cluster)
    await other.close()
    try:
        for partition in range(4):
            await store.claim([f"crm.purchases:{partition}"])
            write = BatchWrite(partition=partition, offsets={f"crm.purchases:{partition}": 1},
                               states={f"c{partition}-{i}": "{}" for i in range(3)},
                               index={f"c{partition}-{i}": [str(10 * partition + i), "high" if i else "low", str(i),
                                                            "0.5"] for i in range(3)})
            assert await store.commit_batch(write)
        reader = CustomerReader(cluster_async, store.keys)
        page = await reader._search_partitions("value", "-inf", "+inf", 2, 5, ["idx:band:high"])
        assert page == (8, ["c2-2", "c2-1", "c1-2", "c1-1", "c0-2"])  # 8 high (c<p>-1, -2): a page by value
        bands = (await reader.churn_distribution(2))["bands"]
        assert (bands["high"], bands["low"]) == (8, 4)
    finally:
        await store.close()


def test_item_counts_on_a_cluster_equal_a_batch_recount(cluster_settings, cluster_client, monitor, output_dir):
    item_tests.test_served_counts_and_top_neighbours_equal_a_batch_recount(cluster_settings, cluster_client,
                                                                          output_dir)


async def test_holding_the_model_on_a_cluster(cluster_settings, cluster_client, cluster_async):
    await model_tests.test_a_held_version_is_served_until_released_while_the_trainer_keeps_publishing(
        cluster_settings, cluster_client, cluster_async)


async def test_the_rate_limit_on_a_cluster(cluster_settings, cluster_client, cluster_async):
    await rate_tests.test_a_burst_then_the_rate_shared_by_every_limiter_on_one_redis(
        cluster_settings, cluster_client, cluster_async)


def test_erasing_a_customer_deletes_their_alerts_on_a_cluster(cluster_settings, cluster_client, monitor, output_dir):
    alert_tests.erase_alerts_scenario(cluster_settings, cluster_client, output_dir)


def test_replaying_a_file_twice_on_a_cluster_equals_single_redis_key_by_key(
        cluster_settings, cluster_client, settings, redis_client, monitor, tmp_path):
    """The CLI replay of tests/test_replay.py (its cards and counters checked against the file) on the cluster and
    on one Redis: the same keys with the same contents (tests/test_crash_recovery.py's dump)."""
    dumps = []
    for run_settings, client in ((cluster_settings, cluster_client), (settings, redis_client)):
        prepare_topics(run_settings)
        (tmp_path / run_settings.app_id).mkdir()
        worker = WorkerProcess(run_settings, OUTPUT_DIR / "logs" / f"worker-{run_settings.app_id}.log").start()
        try:
            replay_tests.test_replaying_the_same_file_twice_changes_nothing(
                replay_tests.ReplayStack(run_settings, client, worker), tmp_path / run_settings.app_id)
        finally:
            worker.stop()
        dumps.append(crash_tests.redis_dump(client, run_settings))
    assert len(dumps[0]) > 10 and dumps[0] == dumps[1]


def test_every_script_call_touched_one_slot(redis_cluster, monitor):
    """Last in this module: every script call seen so far, each of its declared keys and of the keys its
    commands touched, against the server's ``CLUSTER KEYSLOT``."""
    monitor.__exit__()
    node = redis.Redis(port=redis_cluster.nodes[0].port, decode_responses=True)
    slots: dict[str, int] = {}

    def slot(key: str) -> int:
        if key not in slots:
            slots[key] = node.cluster("keyslot", key)
        return slots[key]

    crossing, commands = [], Counter()
    for sha, declared, ran in monitor.calls:
        wanted = {slot(key) for key in declared}
        commands[sha] += 1
        touched = {slot(key) for _, keys in ran for key in keys}
        if len(wanted) != 1 or not touched <= wanted:
            crossing.append((sha, declared[:4], sorted(touched)[:4]))
    node.close()
    scripts = {name.name: hashlib.sha1(name.read_text().encode()).hexdigest()
               for name in resources.files("streams").joinpath("lua").iterdir() if name.name.endswith(".lua")}
    scripts["SET_IF_STORED (agents/alert_delivery.py)"] = hashlib.sha1(SET_IF_STORED.encode()).hexdigest()
    assert sum(commands.values()) > 1000 and not crossing, crossing[:5]
    assert {name for name, sha in scripts.items() if not commands[sha]} == set(), "scripts never called"
