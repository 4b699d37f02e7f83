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
