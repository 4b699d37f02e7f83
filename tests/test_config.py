"""Settings from the environment."""
from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import Settings, settings_table_markdown


def test_readme_configuration_table_matches_the_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table_markdown() in readme


def test_environment_values_are_typed_and_round_trip():
    settings = Settings.from_env({"CRM_PARTITIONS": "12", "CRM_TOPIC_PREFIX": "shop.", "CRM_BATCH_SIZE": "250"})
    assert (settings.partitions, settings.topic("purchases"), settings.batch_size) == (12, "shop.purchases", 250)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize("environ, message", [
    ({"CRM_PARTITIONS": "four"}, "CRM_PARTITIONS='four'"),
    ({"CRM_PARTITIONS": "0"}, "partitions must be > 0"),
    ({"CRM_HEARTBEAT_INTERVAL_MS": "5000"}, "heartbeat_interval_ms must be at most a third"),
])
def test_bad_settings_are_refused_with_the_variable_named(environ, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


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
