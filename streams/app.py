"""The Faust application: broker settings tuned for fast joins, topics, agents.

Faust's defaults (60 s session timeout, 60 s rebalance timeout) make a worker
restart or a lost worker take minutes to recover on a small cluster; the
values here come from measurements in docs/operations.md.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.config import Settings
from streams.topics import INPUT_TOPICS

__all__ = ["create_app", "create_trainer_app"]


def _faust_app(settings: Settings, app_id: str, web_port: int) -> faust.App:
    if not settings.kafka_bootstrap:
        raise ValueError("CRM_KAFKA_BOOTSTRAP is not set (use `crmstream demo` for an embedded broker)")
    _fetch_max_wait(settings.fetch_max_wait_ms)
    return faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        # Faust makes an (empty: tables are in memory) data folder; keep it out of the working directory.
        datadir=Path(tempfile.gettempdir()) / f"crmstream-faust-{app_id}",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_disable_leader=True,       # no __assignor-__leader topic: nothing uses it
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=settings.rebalance_timeout_ms / 1000,
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        producer_acks=-1,
        web_enabled=web_port > 0,
        web_port=web_port or 6066,
        web_host="127.0.0.1",
    )


def _fetch_max_wait(max_wait_ms: int) -> None:
    """Faust builds its consumer with a fixed ``fetch_max_wait_ms`` of 1,500; the embedded broker answers a fetch
    only at that timeout, not when records arrive, so every hop through Faust (a trainer's topic: workers wait for
    the churn trainer's versions, agents/churn_versions.py) took ~450 ms. The consumer Faust creates gets
    ``CRM_FETCH_MAX_WAIT_MS`` instead (read when it starts)."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    create = getattr(thread._create_worker_consumer, "__wrapped__", thread._create_worker_consumer)

    @functools.wraps(create)
    def create_with_wait(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer
    thread._create_worker_consumer = create_with_wait


def create_app(settings: Settings, loglevel: str = "info") -> faust.App:
    """A worker's Faust app for ``settings``: the pipeline, alerting and the metrics page; the trainers too with
    ``CRM_TRAINERS=inline``, else in a child process the worker starts (agents/trainer_process.py)."""
    from agents.alert_delivery import register_alert_delivery
    from agents.alert_detector import register_alert_detector
    from agents.metrics import register_metrics_page
    from agents.pipeline import register_pipeline
    from agents.trainer_process import register_trainer_process

    app = _faust_app(settings, settings.app_id, settings.worker_web_port)
    if settings.trainers != "inline":
        # Started first: the child imports and joins its group while the pipeline joins its own. After it, the
        # first churn versions came ~3 s later, and a backlog's batches wait for them (bench/scale.py).
        register_trainer_process(app, loglevel)
    register_pipeline(app, settings, input_topics=[settings.topic(name) for name in INPUT_TOPICS])
    if settings.trainers == "inline":
        _register_trainers(app, settings, app.crm_store)
    register_alert_detector(app, settings, app.crm_store)
    register_alert_delivery(app, settings, app.crm_store)
    register_metrics_page(app)
    return app


def create_trainer_app(settings: Settings) -> faust.App:
    """The trainers' own Faust app (``crmstream trainers``), a consumer group of its own."""
    from streams.redis_store import RedisStore

    app = _faust_app(settings, f"{settings.app_id}-trainers", 0)
    _register_trainers(app, settings, RedisStore.from_settings(settings))
    return app


def _register_trainers(app: faust.App, settings: Settings, store) -> None:
    from agents.churn_trainer import register_trainer
    from agents.segment_trainer import register_segment_trainer

    register_trainer(app, settings, store)
    register_segment_trainer(app, settings, store)
