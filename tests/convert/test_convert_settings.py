"""The [convert], [engine] and [catalog] sections: defaults, limits, and where the warehouse goes."""

from __future__ import annotations

import pathlib

import pytest

from beaconlake import config
from beaconlake.backends.catalog.settings import SqlCatalogSettings
from beaconlake.backends.engine.settings import DuckDBEngineSettings, SparkEngineSettings
from beaconlake.convert.settings import ConvertSettings
from beaconlake.errors import ConfigError


def settings(raw):
    return config.parse(raw, pathlib.Path("/srv/beaconlake"), environ={})


def test_defaults_are_the_embedded_setup():
    s = settings({})
    assert (s.convert.session_gap_mins, s.convert.max_session_hours, s.convert.late_arrival_hours) == (30, 24, 72)
    assert isinstance(s.engine, DuckDBEngineSettings) and isinstance(s.catalog, SqlCatalogSettings)
    assert s.convert.namespace == "beaconlake"
    assert s.convert.maintenance_enabled and (s.convert.maintenance_interval_hours, s.convert.snapshot_retention_hours,
                                              s.convert.orphan_min_age_hours) == (1.0, 6.0, 24.0)


def test_the_warehouse_defaults_to_the_data_folder_and_resolves_relative_paths(tmp_path):
    assert ConvertSettings().warehouse_uri(str(tmp_path)) == (tmp_path / "warehouse").as_uri()
    assert ConvertSettings(warehouse="tables").warehouse_uri(str(tmp_path)) == (tmp_path / "tables").as_uri()
    assert ConvertSettings(warehouse="s3://bucket/wh").warehouse_uri(str(tmp_path)) == "s3://bucket/wh"


@pytest.mark.parametrize(("raw", "message"), [
    ({"convert": {"max_session_hours": 200}}, "convert.max_session_hours = 200: must be between 1 and 168 hours"),
    ({"convert": {"late_arrival_hours": -1}}, "convert.late_arrival_hours = -1: must be between 0 and 8760 hours"),
    ({"convert": {"target_file_mb": 0}}, "convert.target_file_mb = 0: must be between 1 and 4096 MB"),
    ({"convert": {"namespace": "Bad-Name"}}, "convert.namespace = 'Bad-Name'"),
    ({"convert": {"snapshot_retention_hours": -1}}, "convert.snapshot_retention_hours = -1.0: must be between 0 and 8760 hours"),
    ({"convert": {"orphan_min_age_hours": 0.5}}, "convert.orphan_min_age_hours = 0.5: must be between 1 and 8760 hours"),
    ({"convert": {"maintenance_interval_hours": 1000}}, "convert.maintenance_interval_hours = 1000.0: must be between 0 and 720"),
    ({"engine": {"type": "duckdb", "memory_limit_mb": 10}}, "engine.memory_limit_mb = 10: must be between 256"),
    ({"engine": {"type": "spark", "master": ""}}, "engine.master = ''"),
    ({"convert": {"session_gap_mins": "30"}}, "Expected `int`, got `str` - at `$.convert.session_gap_mins`"),
])
def test_bad_values_name_the_key_the_value_and_the_limit(raw, message):
    with pytest.raises(ConfigError) as info:
        settings(raw)
    assert message in str(info.value)


def test_spark_settings_carry_extra_properties():
    s = settings({"engine": {"type": "spark", "conf": {"spark.executor.memory": "8g"}}})
    assert isinstance(s.engine, SparkEngineSettings) and s.engine.conf == {"spark.executor.memory": "8g"}


def test_the_sections_can_come_from_the_environment():
    s = config.parse({}, pathlib.Path("/srv/beaconlake"), environ={
        "BEACONLAKE__CONVERT__SESSION_GAP_MINS": "45", "BEACONLAKE__ENGINE__TYPE": "spark"})
    assert s.convert.session_gap_mins == 45 and isinstance(s.engine, SparkEngineSettings)
