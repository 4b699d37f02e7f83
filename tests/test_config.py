"""Settings from the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import SEGMENT_ALGORITHMS, ConfigError, Settings, settings_table_markdown


def test_readme_configuration_table_matches_the_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table_markdown() in readme


def test_environment_values_are_typed_and_round_trip():
    settings = Settings.from_env({"CRM_PARTITIONS": "12", "CRM_TOPIC_PREFIX": "shop.", "CRM_BATCH_SIZE": "250"})
    assert (settings.partitions, settings.topic("purchases"), settings.batch_size) == (12, "shop.purchases", 250)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize("environ, message", [
    ({"CRM_PARTITIONS": "four"}, "CRM_PARTITIONS='four': expected a whole number"),
    ({"CRM_PARTITIONS": "0"}, "CRM_PARTITIONS='0': must be > 0"),
    ({"CRM_HEARTBEAT_INTERVAL_MS": "5000"}, "CRM_HEARTBEAT_INTERVAL_MS=5000: must be at most a third"),
])
def test_bad_settings_are_refused_with_the_variable_named(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


def test_the_segment_algorithms_named_in_settings_are_the_clusterers():
    from online_models.segment_learning import CLUSTERERS

    assert SEGMENT_ALGORITHMS == tuple(CLUSTERERS)


#: One bad value of each kind, and the variable the one-line refusal must name. Run as real commands.
BAD_SETTINGS = [
    ("api", {"CRM_PARTITIONS": "four"}, "CRM_PARTITIONS"),                      # not a number
    ("api", {"CRM_ENGAGEMENT_HALF_LIFE_DAYS": "a month"}, "CRM_ENGAGEMENT_HALF_LIFE_DAYS"),
    ("api", {"CRM_BATCH_SIZE": "0"}, "CRM_BATCH_SIZE"),                        # out of range
    ("api", {"CRM_LATENESS_MS": "-1"}, "CRM_LATENESS_MS"),
    ("api", {"CRM_CHURN_CHANGE_THRESHOLD": "1.5"}, "CRM_CHURN_CHANGE_THRESHOLD"),
    ("api", {"CRM_API_PORT": "70000"}, "CRM_API_PORT"),
    ("api", {"CRM_RFM_WEIGHTS": "0.5,0.5"}, "CRM_RFM_WEIGHTS"),               # malformed list
    ("api", {"CRM_RFM_WEIGHTS": "x,y,z"}, "CRM_RFM_WEIGHTS"),
    ("api", {"CRM_LOG_FORMAT": "xml"}, "CRM_LOG_FORMAT"),                      # not one of the choices
    ("api", {"CRM_SEGMENT_ALGORITHM": "dbscan"}, "CRM_SEGMENT_ALGORITHM"),
    ("api", {"CRM_ALERT_ENTRY_BAND": "extreme"}, "CRM_ALERT_ENTRY_BAND"),
    ("api", {"CRM_REDIS_URL": "localhost:6379"}, "CRM_REDIS_URL"),             # malformed address
    ("api", {"CRM_KAFKA_BOOTSTRAP": "localhost"}, "CRM_KAFKA_BOOTSTRAP"),
    ("api", {"CRM_ALERT_WEBHOOK_URL": "ftp://hooks"}, "CRM_ALERT_WEBHOOK_URL"),
    ("api", {"CRM_REDIS_PREFIX": "crm{1}:"}, "CRM_REDIS_PREFIX"),
    ("api", {"CRM_ITEM_DECAY_LANDMARK": "yesterday"}, "CRM_ITEM_DECAY_LANDMARK"),  # unreadable time
    ("api", {"CRM_HEARTBEAT_INTERVAL_MS": "5000"}, "CRM_HEARTBEAT_INTERVAL_MS"),   # inconsistent pair
    ("api", {"CRM_ALERT_ACTIONS_FILE": "/no/such/actions.json"}, "CRM_ALERT_ACTIONS_FILE"),  # missing file
    ("api", {"CRM_API_KEYS": "short:admin"}, "CRM_API_KEYS"),                 # the case
    ("api", {"CRM_API_KEYS": "a-long-enough-secret-key:root"}, "CRM_API_KEYS"),
    ("api", {"CRM_API_KEYS_FILE": "/no/such/keys.txt"}, "CRM_API_KEYS_FILE"),
    ("api", {"CRM_API_KEYS_FILE": "BAD_KEYS_FILE"}, "CRM_API_KEYS_FILE"),      # malformed line
    ("worker", {"CRM_SESSION_TIMEOUT_MS": "soon"}, "CRM_SESSION_TIMEOUT_MS"),
    ("demo", {"CRM_ALERT_LOW_CSAT": "9"}, "CRM_ALERT_LOW_CSAT"),
    ("simulate", {"CRM_TOPIC_PREFIX": "my topics."}, "CRM_TOPIC_PREFIX"),
]


def test_every_kind_of_bad_setting_stops_a_command_with_one_line_and_status_2(tmp_path):
    bad_keys = tmp_path / "keys.txt"
    bad_keys.write_text("sha256:not-a-digest\n")
    clean = {name: value for name, value in os.environ.items() if not name.startswith("CRM_")}
    runs = []
    for command, environ, variable in BAD_SETTINGS:  # started together: each is a Python start-up
        environ = {name: str(bad_keys) if value == "BAD_KEYS_FILE" else value for name, value in environ.items()}
        runs.append((variable, subprocess.Popen(
            [sys.executable, "-m", "streams.cli", command], env={**clean, "CRM_REDIS_URL": "redis://127.0.0.1:1",
                                                                 **environ},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for variable, run in runs:
        out, err = run.communicate(timeout=120)
        assert (run.returncode, out) == (2, ""), (variable, err)
        assert len(err.strip().splitlines()) == 1 and "configuration: " + variable in err, err
        assert "Traceback" not in err


def test_each_model_setting_reaches_the_field_it_names():
    """The derived settings objects get every CRM_ value in the right field (a positional mix-up once sent
    the segment window into max_step and the sample period into the window)."""
    settings = Settings.from_env({
        "CRM_SEGMENT_ALGORITHM": "denstream", "CRM_SEGMENTS": "6", "CRM_SEGMENT_WARMUP": "777",
        "CRM_SEGMENT_MATCH_DISTANCE": "1.5", "CRM_SEGMENT_HYSTERESIS": "0.2", "CRM_SEGMENT_WINDOW_DAYS": "91",
        "CRM_SEGMENT_SAMPLE_DAYS": "3", "CRM_CHURN_STEP_DAYS": "5", "CRM_HORIZON_DAYS": "60",
        "CRM_RFM_WEIGHTS": "0.5,0.25,0.25"})
    segments = settings.segment_settings()
    assert (segments.algorithm, segments.n_segments, segments.warmup, segments.max_match_distance,
            segments.hysteresis, segments.window_days, segments.sample_days) == ("denstream", 6, 777, 1.5, 0.2, 91, 3)
    assert segments.max_step == type(segments)().max_step  # not a setting: keeps its default
    churn = settings.churn_settings()
    assert (churn.hazard.step_days, churn.hazard.horizon_days) == (5, 60)
    assert churn.rescore_days == settings.churn_rescore_days
    assert churn.near_reorder_rescore_days == settings.churn_rescore_near_reorder_days
    assert settings.profile_settings().rfm_weights == (0.5, 0.25, 0.25)
