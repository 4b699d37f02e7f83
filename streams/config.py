"""Settings read from the environment, in one place.

Every knob of the pipeline is a ``CRM_*`` environment variable so the same
image runs the demo, the tests and production; README lists them in one table
(generated from :data:`SETTINGS_DOC` so the table and the code cannot drift).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

import orjson

from online_models.purchase_history import DAY_MS
from streams.keyspace import KeySpace

__all__ = ["ConfigError", "Settings", "SETTINGS_DOC", "settings_table_markdown"]


class ConfigError(ValueError):
    """A setting that cannot work. The message names the variable and what it needs, in one line."""


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names; ``none`` for the empty list."""
    return () if text.strip().lower() == "none" else tuple(s.strip() for s in text.split(",") if s.strip())


def _weights(text: str) -> tuple[float, ...]:
    return tuple(float(w) for w in text.split(","))


def _flag(text: str) -> bool:
    """A yes/no setting: 1, true, yes, on (any case) or 0, false, no, off."""
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(text)
    return value in ("1", "true", "yes", "on")


def _env_field(env: str, default: Any, cast: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "cast": cast, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Immutable pipeline configuration; build it with :meth:`from_env`."""

    kafka_bootstrap: str = _env_field(
        "CRM_KAFKA_BOOTSTRAP", "", str,
        "Kafka bootstrap servers (`host:port,...`). Empty: `crmstream demo` starts an embedded broker.")
    redis_url: str = _env_field(
        "CRM_REDIS_URL", "", str,
        "Redis URL (`redis://host:port/db`). Empty: `crmstream demo` starts an embedded `redis-server`.")
    redis_cluster: bool = _env_field(
        "CRM_REDIS_CLUSTER", False, _flag,
        "Connect to a Redis Cluster (`CRM_REDIS_URL` names one node, or several: `redis://a:7000,redis://b:7001`; "
        "several nodes imply a cluster). Key layout: docs/architecture.md, one hash slot per input partition.")
    topic_prefix: str = _env_field(
        "CRM_TOPIC_PREFIX", "crm.", str, "Prefix of every topic name (`crm.purchases`, `crm.deadletter`, ...).")
    redis_prefix: str = _env_field(
        "CRM_REDIS_PREFIX", "crm:", str, "Prefix of every Redis key.")
    app_id: str = _env_field(
        "CRM_APP_ID", "crmstream", str,
        "Faust application id = consumer group of the trainer; the input topics use `<id>-pipeline`.")
    partitions: int = _env_field(
        "CRM_PARTITIONS", 4, int, "Partitions of each input topic; the unit of parallelism (max useful workers).")
    batch_size: int = _env_field(
        "CRM_BATCH_SIZE", 500, int, "Max events per processing batch (one `getmany`).")
    batch_latency_ms: int = _env_field(
        "CRM_BATCH_LATENCY_MS", 100, int, "Max time a partial batch waits before it is processed.")
    catch_up_batch_size: int = _env_field(
        "CRM_CATCH_UP_BATCH_SIZE", 8000, int,
        "Max events per batch while the worker is behind (full fetches): fewer state round trips per event.")
    align_max_wait_ms: int = _env_field(
        "CRM_ALIGN_MAX_WAIT_MS", 5000, int,
        "Input partitions are processed in event-time order (record timestamps); this is the longest held records "
        "wait for a lagging partition that delivers nothing. 0: no alignment, records go in fetch order.")
    fetch_max_wait_ms: int = _env_field(
        "CRM_FETCH_MAX_WAIT_MS", 50, int,
        "Longest a Kafka fetch waits on the broker for new records (every consumer: pipeline, trainers, alerts). "
        "Kafka answers as soon as records arrive; the embedded broker (Tansu) only at this timeout, so a larger "
        "value is that much latency per hop there (500: measured 450 ms; 50: 5-10 ms).")
    lateness_ms: int = _env_field(
        "CRM_LATENESS_MS", 6 * 3600 * 1000, int,
        "Allowed lateness: the watermark trails the max event time seen by this much.")
    horizon_days: int = _env_field(
        "CRM_HORIZON_DAYS", 90, int, "Churn horizon: churned = no purchase within this many days.")
    engagement_half_life_days: float = _env_field(
        "CRM_ENGAGEMENT_HALF_LIFE_DAYS", 30.0, float, "Half-life of the decayed interaction counts (event time).")
    rfm_weights: tuple = _env_field(
        "CRM_RFM_WEIGHTS", (1 / 3, 1 / 3, 1 / 3), _weights,
        "Weights `wR,wF,wM` of the value score `V = wR·R + wF·F + wM·M` (must sum to 1).")
    clv_window_days: float = _env_field(
        "CRM_CLV_WINDOW_DAYS", 365.0, float, "Window of the predicted CLV.")
    clv_annual_discount_rate: float = _env_field(
        "CRM_CLV_DISCOUNT_RATE", 0.10, float, "Annual discount rate `r` of the predicted CLV.")
    clv_mean_lifetime_days: float = _env_field(
        "CRM_CLV_MEAN_LIFETIME_DAYS", 365.0, float,
        "Prior mean customer lifetime (dropout rate μ = 1/lifetime) of the CLV prior.")
    clv_prior_days_per_order: float = _env_field(
        "CRM_CLV_PRIOR_DAYS_PER_ORDER", 90.0, float,
        "Prior purchase rate of the CLV prior: one order per this many days (weight of one order).")
    churn_step_days: float = _env_field(
        "CRM_CHURN_STEP_DAYS", 7.0, float,
        "Hazard step: each example asks \"an order within this many days?\" (docs/churn.md).")
    churn_max_silence_days: float = _env_field(
        "CRM_CHURN_MAX_SILENCE_DAYS", 365.0, float,
        "Customers silent longer get no further examples and no re-scoring.")
    churn_thin_every: int = _env_field(
        "CRM_CHURN_THIN_EVERY", 1, int,
        "Past 26 steps of silence, one example in this many is learned, weighted by it (1: all).")
    churn_rescore_days: float = _env_field(
        "CRM_CHURN_RESCORE_DAYS", 1.0, float, "A silent customer is re-scored at least this often (event time).")
    churn_rescore_near_reorder_days: float = _env_field(
        "CRM_CHURN_RESCORE_NEAR_REORDER_DAYS", 0.5, float,
        "Re-scoring interval while a customer's silence is within 0.5-1.5x their mean gap between orders.")
    churn_rescore_slowest_days: float = _env_field(
        "CRM_CHURN_RESCORE_SLOWEST_DAYS", 4.0, float,
        "Deep in a silence the re-scoring interval doubles (at most 1/14 of the silence) up to this.")
    churn_label_steps: int = _env_field(
        "CRM_CHURN_LABEL_STEPS", 1, int,
        "A silent customer's examples are closed this many steps at a time (one wake-up, not one per step): "
        "labels of silence arrive up to this many steps late, and the trainer learns that much later.")
    churn_min_examples: int = _env_field(
        "CRM_CHURN_MIN_EXAMPLES", 2000, int,
        "Labelled examples the trainer needs before its model replaces the cold-start prior.")
    churn_version_days: float = _env_field(
        "CRM_CHURN_VERSION_DAYS", 1.0, float,
        "The trainer cuts a model version each time every partition's progress passes a multiple of this many "
        "days (event time), so a history trains the same versions in every run.")
    churn_score_lag_days: float = _env_field(
        "CRM_CHURN_SCORE_LAG_DAYS", 7.0, float,
        "Scores made at a partition's event time `t` use the model version trained until `t` less this many days "
        "(on the version grid), whatever the wall clock: a batch waits for that version, so a history replayed "
        "twice, or live, scores alike. At least one version period plus the allowed lateness and label delay "
        "(raised to that). 0: the newest version read (not reproducible).")
    churn_version_wait_s: float = _env_field(
        "CRM_CHURN_VERSION_WAIT_S", 120.0, float,
        "Longest a batch waits for the version of its event time (the trainer down or a partition stalled); "
        "past it the batch is scored with the newest version before that time, logged and counted.")
    churn_idle_partition_s: float = _env_field(
        "CRM_CHURN_IDLE_PARTITION_S", 60.0, float,
        "A partition whose progress has not moved for this long (wall clock) while others' has stops holding "
        "the trainer back (its later examples are learned as they come).")
    churn_change_threshold: float = _env_field(
        "CRM_CHURN_CHANGE_THRESHOLD", 0.1, float,
        "A `score-changes` event is emitted when churn_p moves more than this from the last reported score "
        "(or its band changes).")
    model_signing_key: str = _env_field(
        "CRM_MODEL_SIGNING_KEY", "", str,
        "HMAC key of the trainer's pickled checkpoints (snapshots are plain data). Empty: the trainer keeps "
        "no checkpoint and starts afresh when its partition moves.")
    kpi_retention_days: int = _env_field(
        "CRM_KPI_RETENTION_DAYS", 730, int, "KPI buckets older than this (event time) are dropped; 0 = keep all.")
    kpi_prune_interval_s: float = _env_field(
        "CRM_KPI_PRUNE_INTERVAL_S", 60.0, float,
        "How often (wall clock) a worker drops expired KPI buckets; 0 = after every batch.")
    dedup_window_days: int = _env_field(
        "CRM_DEDUP_WINDOW_DAYS", 30, int,
        "Interaction and customer event ids are remembered this long (event time) to drop producer duplicates.")
    purchase_dedup_window_days: int = _env_field(
        "CRM_PURCHASE_DEDUP_WINDOW_DAYS", 0, int,
        "Purchase event ids are remembered this long; 0 = forever, so replaying a history twice changes nothing.")
    item_max_basket: int = _env_field(
        "CRM_ITEM_MAX_BASKET", 30, int,
        "Distinct items of one order that count for co-occurrence (a deterministic sample of larger baskets; "
        "0 = all).")
    item_max_orders_per_customer: int = _env_field(
        "CRM_ITEM_MAX_ORDERS_PER_CUSTOMER", 500, int,
        "A customer's orders beyond this many count for co-occurrence with probability max / n (0 = all).")
    item_view_window_hours: float = _env_field(
        "CRM_ITEM_VIEW_WINDOW_HOURS", 24.0, float,
        "A product view or add-to-cart counts as \"viewed then bought\" for orders up to this much later.")
    item_decay_half_life_days: float = _env_field(
        "CRM_ITEM_DECAY_HALF_LIFE_DAYS", 0.0, float,
        "Half-life of the item counts in event time, so trends move (0 = exact all-time counts; else >= 7).")
    item_decay_landmark: str = _env_field(
        "CRM_ITEM_DECAY_LANDMARK", "2024-01-01T00:00:00Z", str,
        "Reference time of the forward decay; move it (and rebuild) within ~900 half-lives.")
    item_recent_items: int = _env_field(
        "CRM_ITEM_RECENT_ITEMS", 20, int, "Recent distinct items kept per customer for recommendations.")
    item_min_support: float = _env_field(
        "CRM_ITEM_MIN_SUPPORT", 2.0, float, "Default minimum co-occurrences of a pair to be served as neighbours.")
    item_candidates: int = _env_field(
        "CRM_ITEM_CANDIDATES", 500, int,
        "An item's most frequent neighbours that a query scores (exact when an item has fewer).")
    segment_algorithm: str = _env_field(
        "CRM_SEGMENT_ALGORITHM", "kmeans", str,
        "River clusterer of the behaviour segments: `kmeans`, `streamkmeans`, `denstream` or `dbstream` "
        "(docs/segments.md compares them).")
    segment_count: int = _env_field(
        "CRM_SEGMENTS", 4, int, "Behaviour segments the k-means clusterers keep.")
    segment_warmup: int = _env_field(
        "CRM_SEGMENT_WARMUP", 1000, int, "Samples the segment trainer sees before its first snapshot.")
    segment_snapshot_every: int = _env_field(
        "CRM_SEGMENT_SNAPSHOT_EVERY", 5000, int, "The segment trainer publishes a snapshot every this many samples...")
    segment_snapshot_interval_s: float = _env_field(
        "CRM_SEGMENT_SNAPSHOT_INTERVAL_S", 30.0, float, "...or this often (wall clock), whichever comes first.")
    segment_match_distance: float = _env_field(
        "CRM_SEGMENT_MATCH_DISTANCE", 1.0, float,
        "A new centroid keeps an old segment's id only within this scaled distance (else: death and birth).")
    segment_hysteresis: float = _env_field(
        "CRM_SEGMENT_HYSTERESIS", 0.1, float,
        "A customer moves to another segment only when it is nearer by this fraction than their current one.")
    segment_window_days: float = _env_field(
        "CRM_SEGMENT_WINDOW_DAYS", 180.0, float,
        "Order rate window of the segment features: shorter = a changed customer migrates sooner.")
    segment_sample_days: float = _env_field(
        "CRM_SEGMENT_SAMPLE_DAYS", 7.0, float,
        "A customer sends the segment trainer a feature sample at most this often (event time).")
    alert_bucket_minutes: float = _env_field(
        "CRM_ALERT_BUCKET_MINUTES", 1440.0, float,
        "Event-time bucket of the aggregate alerts (a day): customers entering a churn band, and the leading "
        "indicators, are counted per bucket.")
    alert_grace_minutes: float = _env_field(
        "CRM_ALERT_GRACE_MINUTES", 60.0, float,
        "A bucket is judged once every input partition's score progress (its watermark) passes its end by this.")
    alert_entry_band: str = _env_field(
        "CRM_ALERT_ENTRY_BAND", "medium", str,
        "Aggregate alerts count customers entering this churn band (`medium`, or `high` for later, surer signals).")
    alert_threshold: float = _env_field(
        "CRM_ALERT_THRESHOLD", 10.0, float,
        "CUSUM threshold (log-likelihood ratio) of a risk-entry alert: higher = fewer, later alerts.")
    alert_shift: float = _env_field(
        "CRM_ALERT_SHIFT", 2.0, float, "The rate multiple the CUSUM looks for (entries vs. the EWMA baseline).")
    alert_min_rate: float = _env_field(
        "CRM_ALERT_MIN_RATE", 0.2, float, "Floor of a series' baseline entries per bucket (quiet series need a real jump).")
    alert_warmup_buckets: int = _env_field(
        "CRM_ALERT_WARMUP_BUCKETS", 30, int, "Buckets a series learns its baseline before it may alert.")
    alert_baseline_alpha: float = _env_field(
        "CRM_ALERT_BASELINE_ALPHA", 0.05, float, "EWMA weight of a new bucket in a series' baseline rate.")
    alert_baseline_trend: float = _env_field(
        "CRM_ALERT_BASELINE_TREND", 0.0, float,
        "Holt's trend weight of a series' baseline (0: a level only): a shop whose orders or risk entries fall or "
        "grow steadily is then not read as a drop or a rise.")
    alert_cooldown_hours: float = _env_field(
        "CRM_ALERT_COOLDOWN_HOURS", 168.0, float, "An aggregate series alerts at most once per this much event time.")
    alert_signals: bool = _env_field(
        "CRM_ALERT_SIGNALS", True, _flag,
        "Leading indicators: tickets, low CSAT, NPS detractors and unsubscribes (a rise), customers ordering and "
        "browsing (a drop), per segment, judged like the risk entries.")
    alert_signal_rise: float = _env_field(
        "CRM_ALERT_SIGNAL_RISE", 3.0, float, "The rate multiple a rising indicator's CUSUM looks for.")
    alert_signal_drop: float = _env_field(
        "CRM_ALERT_SIGNAL_DROP", 0.5, float, "The rate multiple (below 1) a falling indicator's CUSUM looks for.")
    alert_conversion_drop: float = _env_field(
        "CRM_ALERT_CONVERSION_DROP", 0.8, float,
        "The multiple (below 1) of the baseline share of cart-filling customers who order that the conversion CUSUM "
        "looks for (customers who keep coming but stop buying: a price rise).")
    alert_relative_rise: float = _env_field(
        "CRM_ALERT_RELATIVE_RISE", 0.1, float,
        "Relative risk: a customer whose churn_p rose at least this far above their silence path at something they "
        "did counts in the segment's `risk_rise` series (0: no such series).")
    alert_relative_min_rate: float = _env_field(
        "CRM_ALERT_RELATIVE_MIN_RATE", 1.0, float,
        "Floor of the `risk_rise` baseline per bucket: a live-learning model's rises grow as it learns.")
    alert_signal_threshold: float = _env_field(
        "CRM_ALERT_SIGNAL_THRESHOLD", 10.0, float, "CUSUM threshold of a leading-indicator alert.")
    alert_signal_min_rate: float = _env_field(
        "CRM_ALERT_SIGNAL_MIN_RATE", 0.5, float, "Floor of a rising indicator's baseline per bucket.")
    alert_signal_min_drop_rate: float = _env_field(
        "CRM_ALERT_SIGNAL_MIN_DROP_RATE", 5.0, float,
        "A falling indicator is judged only while its baseline is at least this per bucket (a quieter one cannot "
        "tell a drop from chance).")
    alert_segment_drop_threshold: float = _env_field(
        "CRM_ALERT_SEGMENT_DROP_THRESHOLD", 10.0, float,
        "CUSUM threshold of a drop in orders or browsing within one segment (such a drop alerts only when the whole "
        "base's count fell too: customers moving between segments take their activity along; docs/alerts.md).")
    alert_rfm_series: bool = _env_field(
        "CRM_ALERT_RFM_SERIES", False, _flag,
        "Series per RFM segment too. Off by default: an RFM segment depends on the population as read, so a "
        "replay may not raise the same alerts.")
    alert_customer_cooldown_days: float = _env_field(
        "CRM_ALERT_CUSTOMER_COOLDOWN_DAYS", 7.0, float, "A customer alert rule fires at most once per customer in this window.")
    alert_watched_segments: tuple = _env_field(
        "CRM_ALERT_WATCHED_SEGMENTS", ("Champions", "Loyal"), _names,
        "RFM segments whose customers are valuable (besides the top CLV decile); `none` for none.")
    alert_value_rank: float = _env_field(
        "CRM_ALERT_VALUE_RANK", 0.9, float, "Customers at or above this CLV rank (0.9 = top decile) are valuable.")
    alert_min_value_minor: float = _env_field(
        "CRM_ALERT_MIN_VALUE_MINOR", 0.0, float,
        "Customers worth at least this (predicted CLV if retained, minor units) are valuable too; 0 = off. A rank "
        "or an RFM segment depends on the population as read; this floor does not, so replays raise the same alerts.")
    alert_jump: float = _env_field(
        "CRM_ALERT_JUMP", 0.3, float, "A customer alert fires when churn_p rises by at least this in one reported change.")
    alert_low_csat: int = _env_field(
        "CRM_ALERT_LOW_CSAT", 2, int, "A CSAT at or below this after a support ticket alerts on a valuable customer.")
    alert_ticket_window_days: float = _env_field(
        "CRM_ALERT_TICKET_WINDOW_DAYS", 14.0, float, "How long after a ticket a low CSAT still counts as its outcome.")
    alert_actions_file: str = _env_field(
        "CRM_ALERT_ACTIONS_FILE", "", str,
        "JSON list of retention actions (`name`, `cost_minor`, `uplift`, `value_share`); empty: the built-in catalogue.")
    alert_stream_length: int = _env_field(
        "CRM_ALERT_STREAM_LENGTH", 10000, int, "Alerts kept in the Redis stream the dashboard and API read.")
    alert_webhook_url: str = _env_field(
        "CRM_ALERT_WEBHOOK_URL", "", str, "Alerts are POSTed here as JSON (empty: no webhook).")
    alert_webhook_secret: str = _env_field(
        "CRM_ALERT_WEBHOOK_SECRET", "", str,
        "HMAC-SHA256 key of the `X-Crmstream-Signature` header (`sha256=<hex>` of `<timestamp>.<body>`).")
    alert_webhook_attempts: int = _env_field(
        "CRM_ALERT_WEBHOOK_ATTEMPTS", 5, int, "Delivery attempts before an alert goes to the alert dead-letter topic.")
    alert_webhook_backoff_s: float = _env_field(
        "CRM_ALERT_WEBHOOK_BACKOFF_S", 1.0, float, "First retry delay; doubled after every failed attempt.")
    alert_webhook_timeout_s: float = _env_field(
        "CRM_ALERT_WEBHOOK_TIMEOUT_S", 5.0, float, "Timeout of one webhook request.")
    future_tolerance_ms: int = _env_field(
        "CRM_FUTURE_TOLERANCE_MS", 5 * 60 * 1000, int,
        "Events stamped further than this into the future (vs. the wall clock) are dead-lettered.")
    max_event_bytes: int = _env_field(
        "CRM_MAX_EVENT_BYTES", 64 * 1024, int, "Events larger than this are dead-lettered as `oversize`.")
    session_timeout_ms: int = _env_field(
        "CRM_SESSION_TIMEOUT_MS", 6000, int,
        "Kafka consumer session timeout: how fast a dead worker's partitions move (see docs/operations.md).")
    heartbeat_interval_ms: int = _env_field(
        "CRM_HEARTBEAT_INTERVAL_MS", 1000, int, "Kafka consumer heartbeat interval.")
    rebalance_timeout_ms: int = _env_field(
        "CRM_REBALANCE_TIMEOUT_MS", 10000, int, "How long the group waits for members to re-join in a rebalance.")
    worker_web_port: int = _env_field(
        "CRM_WORKER_WEB_PORT", 0, int, "Faust worker web port (0 = disabled).")
    api_host: str = _env_field("CRM_API_HOST", "127.0.0.1", str, "HTTP API bind address.")
    api_port: int = _env_field("CRM_API_PORT", 8080, int, "HTTP API port.")
    api_workers: int = _env_field(
        "CRM_API_WORKERS", 1, int,
        "API processes sharing the port (each with its own Redis pool; rate limits are shared).")
    api_keys: str = field(default="", repr=False, metadata={
        "env": "CRM_API_KEYS", "cast": str,
        "doc": "API keys and their roles, `<key>:<role>,...` (roles: `support`, `analyst`, `admin`; docs/api.md)."})
    api_keys_file: str = _env_field(
        "CRM_API_KEYS_FILE", "", str,
        "File of hashed API keys, one `sha256:<hex>:<role>[:<name>]` a line (`crmstream api-key` writes them).")
    api_rate_per_s: float = _env_field(
        "CRM_API_RATE_PER_S", 100.0, float,
        "Requests per second each API key may make, across all API processes (429 beyond).")
    api_rate_burst: int = _env_field(
        "CRM_API_RATE_BURST", 200, int, "Requests an API key may make at once above its rate.")
    api_max_body_bytes: int = _env_field(
        "CRM_API_MAX_BODY_BYTES", 16384, int, "Largest request body the API reads (413 beyond).")
    api_erase_wait_s: float = _env_field(
        "CRM_API_ERASE_WAIT_S", 10.0, float,
        "How long `DELETE /customers/{id}` waits for the pipeline to confirm the erasure before answering 202.")
    trainers: str = _env_field(
        "CRM_TRAINERS", "process", str,
        "Where a worker runs the churn and segment trainers: `process` (a child process, `crmstream trainers`: "
        "learning on another core) or `inline` (in the worker's event loop).")
    log_format: str = _env_field(
        "CRM_LOG_FORMAT", "json", str, "Log lines of the worker and API: `json` (one object a line) or `text`.")
    data_dir: str = _env_field(
        "CRM_DATA_DIR", ".crmstream", str, "Where the embedded stack keeps logs and Redis files.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every ``CRM_*`` variable; explicit ``overrides`` win.

        >>> Settings.from_env({"CRM_PARTITIONS": "8"}).partitions
        8
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is not None and raw != "":
                try:
                    values[spec.name] = spec.metadata["cast"](raw)
                except ValueError:
                    raise ConfigError(f"{spec.metadata['env']}={raw!r}: expected {_KIND.get(spec.metadata['cast'], 'another value')}") \
                        from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject settings that would make the pipeline misbehave silently: :class:`ConfigError` naming the
        variable and what it needs, one line for an operator."""
        for names, accepts, need in _RULES:
            for name in names.split():
                value = getattr(self, name)
                if not accepts(value):
                    raise ConfigError(f"{_ENV_OF[name]}={_env_text(value)!r}: {need}")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(f"CRM_HEARTBEAT_INTERVAL_MS={self.heartbeat_interval_ms}: must be at most a third of "
                              f"CRM_SESSION_TIMEOUT_MS ({self.session_timeout_ms})")
        for derive in (self.item_settings, self.spike_settings, self.customer_alert_rules, self.retention_catalogue):
            try:
                derive()
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    def churn_score_lag_ms(self) -> int:
        """The score lag in use (0: off): ``CRM_CHURN_SCORE_LAG_DAYS``, at least one version period plus the
        lateness and label delay, the least that cannot deadlock (docs/churn.md, "Scores by event time": a
        worker that has just entered a version period must find the version it needs closed by what it has
        already reported, its purchases watermark, less the label delay).

        >>> Settings.from_env({}).churn_score_lag_ms() / DAY_MS
        7.0
        >>> round(Settings.from_env({"CRM_CHURN_SCORE_LAG_DAYS": "1"}).churn_score_lag_ms() / DAY_MS, 6)
        1.25
        """
        if not self.churn_score_lag_days:
            return 0
        floor_ms = self.churn_version_period_ms() + self.lateness_ms + self.churn_label_delay_ms() + 1
        return int(max(self.churn_score_lag_days * DAY_MS, floor_ms))

    def churn_version_period_ms(self) -> int:
        """The grid the churn trainer cuts versions on (``CRM_CHURN_VERSION_DAYS``)."""
        return int(self.churn_version_days * DAY_MS)

    def churn_label_delay_ms(self) -> int:
        """How long after its window ends an example may still be closed: a silent customer's labels are closed
        ``CRM_CHURN_LABEL_STEPS`` at a time, the first of them ``label_steps - 1`` steps after it ended."""
        return (max(self.churn_label_steps, 1) - 1) * int(self.churn_step_days * DAY_MS)

    def key_ring(self):
        """The API's keys (CRM_API_KEYS, CRM_API_KEYS_FILE), checked: only the API reads them, so only it
        refuses to start over them (a worker need not see the API's keys file)."""
        from api.auth import KeyRing

        try:
            return KeyRing.parse(self.api_keys, self.api_keys_file)
        except OSError as exc:
            raise ConfigError(f"CRM_API_KEYS_FILE={self.api_keys_file!r}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def to_env(self) -> dict[str, str]:
        """The ``CRM_*`` variables that reproduce these settings in a child process.

        >>> Settings.from_env({}, partitions=8).to_env()["CRM_PARTITIONS"]
        '8'
        """
        return {spec.metadata["env"]: _env_text(getattr(self, spec.name)) for spec in fields(self)}

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (tests and the embedded stack use it)."""
        return replace(self, **changes)

    def profile_settings(self):
        """What read-time customer profiles need (value weights, CLV prior)."""
        from online_models.clv import ClvPrior
        from online_models.customer_profile import ProfileSettings

        return ProfileSettings(rfm_weights=self.rfm_weights, clv=ClvPrior(
            prior_days=self.clv_prior_days_per_order, mean_lifetime_days=self.clv_mean_lifetime_days,
            window_days=self.clv_window_days, annual_discount_rate=self.clv_annual_discount_rate))

    def churn_settings(self):
        """What the churn life cycle needs (hazard step, horizon, re-scoring, prior)."""
        from online_models.churn_tracking import ChurnSettings
        from online_models.hazard import HazardConfig

        hazard = HazardConfig(step_days=self.churn_step_days, horizon_days=float(self.horizon_days),
                              max_silence_days=self.churn_max_silence_days, thin_every=self.churn_thin_every)
        return ChurnSettings(hazard=hazard, rescore_days=self.churn_rescore_days, prior=self.profile_settings().clv,
                             near_reorder_rescore_days=self.churn_rescore_near_reorder_days,
                             change_threshold=self.churn_change_threshold, label_steps=self.churn_label_steps,
                             slowest_rescore_days=self.churn_rescore_slowest_days)

    def item_settings(self):
        """What co-occurrence counting and item queries need (caps, view window, decay, defaults)."""
        from online_models.cooccurrence import ForwardDecay, ItemSettings
        from schemas.timestamps import parse_event_ts

        hour_ms, day_ms = 3_600_000, 86_400_000
        try:
            landmark_ms = parse_event_ts(self.item_decay_landmark)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"CRM_ITEM_DECAY_LANDMARK={self.item_decay_landmark!r}: {exc}") from None
        return ItemSettings(
            max_basket=self.item_max_basket, max_orders_per_customer=self.item_max_orders_per_customer,
            view_window_ms=int(self.item_view_window_hours * hour_ms),
            decay=ForwardDecay(self.item_decay_half_life_days * day_ms, landmark_ms),
            recent_items=self.item_recent_items, min_support=self.item_min_support,
            candidates=self.item_candidates)

    def segment_settings(self):
        """How behaviour segments are learnt and served."""
        from online_models.segment_training import SegmentSettings

        return SegmentSettings(algorithm=self.segment_algorithm, n_segments=self.segment_count,
                               warmup=self.segment_warmup, max_match_distance=self.segment_match_distance,
                               hysteresis=self.segment_hysteresis, window_days=self.segment_window_days,
                               sample_days=self.segment_sample_days)

    def spike_settings(self):
        """How aggregate alerts count and judge entries into high risk (ranges checked by :meth:`validate`)."""
        from online_models.spike_alerts import SpikeSettings

        minute_ms = 60_000
        settings = SpikeSettings(
            bucket_ms=int(self.alert_bucket_minutes * minute_ms),
            delay_ms=int(self.alert_grace_minutes * minute_ms), partitions=self.partitions,
            cooldown_ms=int(self.alert_cooldown_hours * 60 * minute_ms), alpha=self.alert_baseline_alpha,
            warmup=self.alert_warmup_buckets, shift=self.alert_shift, threshold=self.alert_threshold,
            min_rate=self.alert_min_rate, entry_band=self.alert_entry_band, signals=self.alert_signals,
            signal_rise=self.alert_signal_rise, signal_drop=self.alert_signal_drop,
            signal_threshold=self.alert_signal_threshold, signal_min_rate=self.alert_signal_min_rate,
            signal_min_drop_rate=self.alert_signal_min_drop_rate, conversion_drop=self.alert_conversion_drop,
            trend=self.alert_baseline_trend, rfm_series=self.alert_rfm_series, relative_rise=self.alert_relative_rise,
            relative_min_rate=self.alert_relative_min_rate, segment_drop_threshold=self.alert_segment_drop_threshold)
        for measure, scope in (("risk", "all"), ("ticket", "all"), ("orders", "all"), ("orders", "segment:0"),
                               ("conversion", "all")):
            settings.detector(measure, scope)  # validates the detectors' parameters
        return settings

    def customer_alert_rules(self):
        """Which score changes and survey answers of a customer raise an alert (ranges: :meth:`validate`)."""
        from online_models.customer_alerts import CustomerAlertRules

        return CustomerAlertRules(watched_segments=frozenset(self.alert_watched_segments), jump=self.alert_jump,
                                  value_rank=self.alert_value_rank, min_value_minor=self.alert_min_value_minor,
                                  low_csat=self.alert_low_csat, ticket_window_days=self.alert_ticket_window_days,
                                  cooldown_days=self.alert_customer_cooldown_days)

    def retention_catalogue(self):
        """The retention actions customer alerts rank (CRM_ALERT_ACTIONS_FILE, else the built-in ones)."""
        from online_models.retention_actions import DEFAULT_CATALOGUE, catalogue_from_json

        if not self.alert_actions_file:
            return DEFAULT_CATALOGUE
        try:
            with open(self.alert_actions_file, "rb") as file:
                return catalogue_from_json(orjson.loads(file.read()))
        except (OSError, orjson.JSONDecodeError, TypeError, KeyError) as exc:
            raise ValueError(f"CRM_ALERT_ACTIONS_FILE={self.alert_actions_file!r}: {exc}") from None

    def key_space(self) -> KeySpace:
        """Where the pipeline's Redis keys live (streams/keyspace.py)."""
        return KeySpace(self.redis_prefix, self.partitions)

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("purchases") -> "crm.purchases"``."""
        return f"{self.topic_prefix}{name}"


def _env_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(v if isinstance(v, str) else repr(v) for v in value) if value else "none"
    return str(value)


_ENV_OF = {f.name: f.metadata["env"] for f in fields(Settings)}
_KIND = {int: "a whole number", float: "a number", _flag: "1 or 0 (true/false, yes/no, on/off)",
          _weights: "three comma-separated numbers (wR,wF,wM)"}
_PORT = range(0, 65536)
#: online_models.segment_learning.CLUSTERERS, named here so that checking settings does not import river.
SEGMENT_ALGORITHMS = ("kmeans", "streamkmeans", "denstream", "dbstream")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _host_ports(text: str) -> bool:
    """``host:port,...`` with real ports (or empty: the embedded broker)."""
    for server in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or int(port) not in _PORT:
            return False
    return True


#: (fields, accepts, what they need): every setting is checked before anything starts.
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("partitions batch_size batch_latency_ms catch_up_batch_size horizon_days engagement_half_life_days "
     "clv_window_days clv_mean_lifetime_days clv_prior_days_per_order churn_step_days churn_max_silence_days "
     "churn_thin_every "
     "churn_rescore_days churn_rescore_near_reorder_days churn_rescore_slowest_days churn_label_steps "
     "churn_version_days churn_idle_partition_s churn_version_wait_s "
     "dedup_window_days item_view_window_hours item_recent_items item_candidates segment_count "
     "segment_warmup segment_snapshot_every segment_snapshot_interval_s segment_match_distance segment_window_days "
     "segment_sample_days alert_bucket_minutes alert_shift alert_threshold alert_min_rate alert_jump "
     "alert_signal_threshold alert_signal_min_rate alert_signal_min_drop_rate alert_relative_min_rate "
     "alert_segment_drop_threshold "
     "alert_stream_length alert_webhook_attempts alert_webhook_timeout_s max_event_bytes session_timeout_ms "
     "heartbeat_interval_ms rebalance_timeout_ms api_workers api_rate_per_s api_rate_burst api_max_body_bytes "
     "api_erase_wait_s fetch_max_wait_ms", lambda v: v > 0, "must be > 0"),
    ("align_max_wait_ms lateness_ms clv_annual_discount_rate churn_min_examples kpi_retention_days "
     "kpi_prune_interval_s purchase_dedup_window_days item_max_basket item_max_orders_per_customer "
     "item_decay_half_life_days "
     "item_min_support segment_hysteresis alert_grace_minutes alert_warmup_buckets alert_cooldown_hours "
     "alert_customer_cooldown_days alert_min_value_minor alert_ticket_window_days alert_webhook_backoff_s "
     "future_tolerance_ms churn_score_lag_days", lambda v: v >= 0, "must be >= 0"),
    ("item_decay_half_life_days", lambda v: v == 0 or v >= 7,
     "must be 0 (off) or at least 7 (forward-decay weights overflow after ~1,000 half-lives)"),
    ("churn_change_threshold", lambda v: 0 < v < 1, "must be between 0 and 1"),
    ("alert_baseline_alpha alert_value_rank", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("alert_low_csat", lambda v: 1 <= v <= 5, "must be a CSAT score, 1 to 5"),
    ("alert_signal_rise", lambda v: v > 1, "must be > 1 (a rise)"),
    ("alert_signal_drop alert_conversion_drop", lambda v: 0 < v < 1, "must be between 0 and 1 (a drop)"),
    ("alert_baseline_trend alert_relative_rise", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("rfm_weights", lambda v: len(v) == 3 and min(v) >= 0 and abs(sum(v) - 1) <= 1e-6,
     "must be three non-negative numbers summing to 1"),
    ("api_port worker_web_port", lambda v: v in _PORT, "must be a TCP port, 0 to 65535"),
    ("log_format", lambda v: v in ("json", "text"), "must be json or text"),
    ("trainers", lambda v: v in ("process", "inline"), "must be process or inline"),
    ("alert_entry_band", lambda v: v in ("medium", "high"), "must be medium or high"),
    ("segment_algorithm", lambda v: v in SEGMENT_ALGORITHMS, f"must be one of {', '.join(SEGMENT_ALGORITHMS)}"),
    ("kafka_bootstrap", _host_ports, "must be host:port[,host:port...] (or empty for the embedded broker)"),
    ("redis_url", lambda v: not v or all(u.strip().startswith(("redis://", "rediss://", "unix://"))
                                         for u in v.split(",")),
     "must be a redis://, rediss:// or unix:// URL (or empty for the embedded Redis)"),
    ("alert_webhook_url", lambda v: not v or v.startswith(("http://", "https://")), "must be an http(s):// URL"),
    ("topic_prefix app_id", lambda v: set(v) <= _NAME_CHARS and len(v) <= 100,
     "must be at most 100 characters of A-Z a-z 0-9 . _ - (Kafka names)"),
    ("app_id", bool, "must not be empty"),
    ("redis_prefix", lambda v: v.isprintable() and " " not in v and "{" not in v and "}" not in v and len(v) <= 64,
     "must be at most 64 printable characters without spaces or braces (braces are hash tags)"),
)

SETTINGS_DOC = [(f.metadata["env"], f.default, f.metadata["doc"]) for f in fields(Settings)]


def settings_table_markdown() -> str:
    """The README configuration table."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    rows += [f"| `{env}` | {f'`{_env_text(default)}`' if default != '' else '(empty)'} | {doc} |"
             for env, default, doc in SETTINGS_DOC]
    return "\n".join(rows)
