"""The [analyze] and [profiles] sections, and the `beaconlake analyze` command."""

import logging

import pytest
from analyze_lake import SimLake

from beaconlake import config
from beaconlake.backends.profiles.settings import PostgresProfilesSettings, SqliteProfilesSettings
from beaconlake.cli import main
from beaconlake.errors import ConfigError


def parse(tmp_path, env=None, **sections):
    return config.parse(dict(sections), tmp_path, environ=env or {})


def test_defaults(tmp_path):
    s = parse(tmp_path)
    goal = s.analyze.goal("shop")
    assert goal.events == ("purchase",) and goal.value_property == "value" and goal.horizon_days == 7
    assert isinstance(s.profiles, SqliteProfilesSettings)
    assert s.profiles.path == str(tmp_path / "data" / "profiles.db")


def test_per_tenant_goal_and_env_override(tmp_path):
    s = parse(tmp_path, env={"BEACONLAKE__ANALYZE__PROPENSITY_HORIZON_DAYS": "14",
                             "BEACONLAKE__PROFILES__TYPE": "postgres", "BEACONLAKE__PROFILES__DSN": "host=db"},
              analyze={"tenants": [{"tenant": "blog", "goal_events": ["signup"], "value_property": "amount"}]})
    assert s.analyze.goal("blog").events == ("signup",) and s.analyze.goal("blog").value_property == "amount"
    assert s.analyze.goal("blog").horizon_days == 14 and s.analyze.goal("shop").events == ("purchase",)
    assert isinstance(s.profiles, PostgresProfilesSettings) and s.profiles.dsn == "host=db"


@pytest.mark.parametrize(("sections", "says"), [
    ({"analyze": {"propensity_horizon_days": 0}}, "analyze.propensity_horizon_days = 0: must be between 1 and 365 days"),
    ({"analyze": {"max_segments": 1}}, "analyze.max_segments = 1: must be between 2 and 30"),
    ({"analyze": {"goal_events": []}}, "analyze.goal_events is empty"),
    ({"analyze": {"goal_events": ["Purchase!"]}}, "'Purchase!' is not an event name"),
    ({"analyze": {"value_property": "a.b"}}, "analyze.value_property = 'a.b'"),
    ({"analyze": {"category_rules": [{"prefix": "tents", "category": "tents"}]}}, "prefix = 'tents' must start with '/'"),
    ({"analyze": {"tenants": [{"tenant": "a"}, {"tenant": "a"}]}}, "tenant 'a' is listed twice"),
    ({"analyze": {"refit_growth": -1}}, "analyze.refit_growth = -1"),
    ({"analyze": {"colour": "red"}}, "colour"),
    ({"profiles": {"type": "elastic"}}, "elastic"),
    ({"profiles": {"type": "postgres", "dsn": ""}}, "profiles.dsn = ''"),
])
def test_bad_values_name_key_value_and_limit(tmp_path, sections, says):
    with pytest.raises(ConfigError, match=None) as err:
        parse(tmp_path, **sections)
    assert says in str(err.value)


@pytest.fixture
def keep_logging():
    """main() points the root logger at this test's captured stderr: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_analyze_command(tmp_path, capsys, keep_logging):
    lake = SimLake(tmp_path, people=30, days=7, seed=11)
    lake.convert()
    cfg = tmp_path / "beaconlake.toml"
    cfg.write_text('data_dir = "data"\n[engine]\ntype = "duckdb"\nthreads = 2\n'
                   '[[tenants]]\nid = "shop"\nwrite_key = "wk_shopshopshopshopshop"\nread_key = "rk_shopshopshopshopshop"\n'
                   '[[tenants]]\nid = "other"\nwrite_key = "wk_otherotherotherother"\nread_key = "rk_otherotherotherother"\n')
    assert main(["analyze", "--config", str(cfg), "--tenant", "shop"]) == 0
    out = capsys.readouterr().out
    assert "shop: " in out and "profile(s) updated" in out and "other:" not in out
    assert main(["analyze", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "shop: 0 profile(s) updated" in out and "other: 0 profile(s) updated" in out
    assert main(["analyze", "--config", str(cfg), "--tenant", "nope"]) == 2
    assert "--tenant 'nope': no such tenant" in capsys.readouterr().err
