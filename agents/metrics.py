"""Prometheus metrics of a worker, served at ``/metrics`` by Faust's web server (``CRM_WORKER_WEB_PORT``).

One registry per process, not prometheus_client's global one: the API and a worker started in one test
process must not share counters. Names follow Prometheus conventions (``_total`` counters, seconds).
"""
from __future__ import annotations

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["REGISTRY", "EVENTS_IN", "EVENTS_OUT", "DEADLETTERED", "BATCH_SECONDS", "REDIS_SECONDS", "LOOP_LAG_SECONDS",
           "CONSUMER_LAG", "MODEL_VERSION", "CHURN_SCORINGS", "CHURN_SCORED_TIMES",
           "CHURN_VERSION_WAITS", "CHURN_VERSION_WAIT_SECONDS", "register_metrics_page"]

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS_IN = Counter("crm_events_in_total", "Input records processed (applied batches), by input topic",
                    ["topic"], registry=REGISTRY)
EVENTS_OUT = Counter("crm_events_out_total", "Derived records sent, by output topic", ["topic"], registry=REGISTRY)
DEADLETTERED = Counter("crm_deadletter_total", "Records sent to the dead-letter topic, by reason", ["reason"],
                       registry=REGISTRY)
BATCH_SECONDS = Histogram("crm_batch_seconds", "Wall time of one batch, fetch excluded, commit included",
                          buckets=_LATENCY_BUCKETS, registry=REGISTRY)
LOOP_LAG_SECONDS = Histogram("crm_event_loop_lag_seconds", "How late a timer of the worker's event loop fired: what "
                             "the consumer's heartbeats waited (over the session timeout, the group evicts the worker)",
                             buckets=_LATENCY_BUCKETS, registry=REGISTRY)
REDIS_SECONDS = Histogram("crm_redis_seconds", "Redis round trips of the batch path, by operation",
                          ["operation"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CONSUMER_LAG = Gauge("crm_consumer_lag", "Records not applied yet: the partition's log end minus the applied offset",
                     ["topic", "partition"], registry=REGISTRY)
CHURN_SCORINGS = Counter("crm_churn_scorings_total", "Customers scored in a batch, each counted once however many "
                         "as-of times it was scored at: visited for an event of theirs (event) or by the event-time "
                         "wheel (wake)", ["at"], registry=REGISTRY)
CHURN_SCORED_TIMES = Counter("crm_churn_scored_times_total", "As-of times scored (silence paths evaluated): report "
                             "ticks (tick), as of a customer's newest event (event), a look-ahead over future ticks "
                             "(plan)", ["at"], registry=REGISTRY)
CHURN_VERSION_WAITS = Counter("crm_churn_version_waits_total", "Batches that waited for the churn model version "
                              "of their event time (waited), gave up after CRM_CHURN_VERSION_WAIT_S (timed_out), "
                              "or stopped: the worker's own partitions held it back (own_partitions_behind)",
                              ["outcome"], registry=REGISTRY)
CHURN_VERSION_WAIT_SECONDS = Counter("crm_churn_version_wait_seconds_total", "Seconds batches waited for the churn "
                                     "model version of their event time (the trainer on the backfill's path)",
                                     registry=REGISTRY)
MODEL_VERSION = Gauge("crm_model_version", "Version of the model snapshot this worker scores with",
                      ["model"], registry=REGISTRY)


def register_metrics_page(app: faust.App) -> None:
    """``GET /metrics`` on the worker's web server, in Prometheus' text format."""

    @app.page("/metrics")
    async def metrics(view, request):  # noqa: ANN001 - Faust's view signature
        return view.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])
