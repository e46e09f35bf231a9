"""[server] settings: validated with the key, the value and the fix; the connection cap fits under
the open-files limit."""

from __future__ import annotations

import logging

import pytest

from beaconlake import config
from beaconlake.errors import ConfigError
from beaconlake.serve.http.server import Limits
from beaconlake.serve.http.supervisor import RESERVED_FDS, connection_cap


def parse(**server) -> config.Settings:
    return config.parse({"server": server}, __import__("pathlib").Path("."), environ={})


def test_defaults_are_the_documented_ones():
    s = parse().server
    assert (s.keepalive_idle_secs, s.header_read_timeout_secs, s.body_read_timeout_secs) == (5.0, 10.0, 20.0)
    assert (s.max_header_bytes, s.max_connections_per_worker) == (16384, 10_000)
    assert (s.max_drain_bytes, s.drain_timeout_secs, s.shutdown_timeout_secs) == (64 * 1024 * 1024, 10.0, 10.0)
    assert s.send_timeout_secs == 20.0


def test_keepalive_longer_than_the_header_timeout_is_refused_with_both_keys():
    with pytest.raises(ConfigError) as caught:
        parse(keepalive_idle_secs=30, header_read_timeout_secs=10)
    message = str(caught.value)
    assert "server.keepalive_idle_secs=30" in message and "server.header_read_timeout_secs=10" in message


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("max_connections_per_worker", 3, "Expected `int` >= 16 - at `$.server.max_connections_per_worker`"),
    ("max_header_bytes", 100, "Expected `int` >= 1024 - at `$.server.max_header_bytes`"),
    ("body_read_timeout_secs", 0, "Expected `float` > 0.0 - at `$.server.body_read_timeout_secs`"),
    ("drain_timeout_secs", -1, "Expected `float` > 0.0 - at `$.server.drain_timeout_secs`"),
    ("idle_secs", 5, "Object contains unknown field `idle_secs` - at `$.server`"),
])
def test_bad_values_name_the_key_and_the_limit(key, value, fragment):
    with pytest.raises(ConfigError) as caught:
        parse(**{key: value})
    assert fragment in str(caught.value)


def test_environment_overrides_reach_the_server_settings():
    s = config.parse({}, __import__("pathlib").Path("."), environ={"BEACONLAKE__SERVER__BODY_READ_TIMEOUT_SECS": "3"})
    assert s.server.body_read_timeout_secs == 3.0
    assert Limits.from_settings(s).body_read_timeout_secs == 3.0


def test_limits_take_the_collector_body_limit_and_the_spool_retry_after():
    s = config.parse({"collector": {"max_body_bytes": 5000}, "spool": {"retry_after_secs": 7}},
                     __import__("pathlib").Path("."), environ={})
    limits = Limits.from_settings(s, max_connections=123)
    assert (limits.max_body_bytes, limits.retry_after_secs, limits.max_connections) == (5000, 7, 123)


def test_the_connection_cap_stays_under_the_open_files_limit(caplog):
    assert connection_cap(10_000, 1_048_576) == 10_000
    with caplog.at_level(logging.WARNING):
        cap = connection_cap(10_000, 4096)
    assert cap == 4096 - RESERVED_FDS
    assert "server.max_connections_per_worker=10000 does not fit under the open-files limit (4096" in caplog.text
    assert connection_cap(10_000, 300) == 150  # a tiny limit: half of it, never zero
