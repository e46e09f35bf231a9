"""``realtime.sequences_from``: a deployment of several nodes must detect sequences from the lake."""

from pathlib import Path

import pytest
from lakehelp import DEFINITIONS

from beaconlake import config
from beaconlake.errors import ConfigError

TENANT = {"id": "shop", "write_key": "wk_" + "a" * 20, "read_key": "rk_" + "b" * 20, "sequences": DEFINITIONS}


def parse(**sections):
    return config.parse({"tenants": [TENANT], **sections}, Path("/tmp"), environ={})


PG = {"coordination": {"type": "postgres"}}  # a collector or jobs role needs it anyway (config.check_node)


@pytest.mark.parametrize("several", [{"node": {"role": "collector"}, **PG}, {"node": {"role": "jobs"}, **PG}, PG])
def test_several_nodes_with_spool_detection_is_refused_naming_the_setting(several):
    with pytest.raises(ConfigError, match=r'realtime\.sequences_from.*set realtime\.sequences_from = "lake"'):
        parse(**several)
    assert parse(**several, realtime={"sequences_from": "lake"}).realtime.sequences_from == "lake"


def test_one_machine_keeps_spool_detection_and_no_sequences_need_no_choice():
    assert parse().realtime.sequences_from == "spool"
    plain = config.parse({"tenants": [{**TENANT, "sequences": []}], "node": {"role": "collector"}, **PG}, Path("/tmp"),
                         environ={})
    assert plain.realtime.sequences_from == "spool"


@pytest.mark.parametrize(("key", "value"), [("sequences_from", "kafka"), ("lake_lateness_secs", -1),
                                            ("lake_poll_interval_secs", 0)])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        parse(realtime={key: value})


def test_environment_selects_the_lake():
    settings = config.parse({"tenants": [TENANT], "node": {"role": "jobs"}, **PG}, Path("/tmp"),
                            environ={"BEACONLAKE__REALTIME__SEQUENCES_FROM": "lake"})
    assert settings.realtime.sequences_from == "lake"
