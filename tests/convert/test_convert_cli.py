"""The ``convert`` and ``query`` subcommands, from a config file, as ``register`` wires them."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
from rawlake import event, ms, write_raw

from beaconlake import cli
from beaconlake.convert import cli as convert_cli


def config_file(tmp_path, extra: str = "") -> str:
    path = tmp_path / "beaconlake.toml"
    path.write_text(textwrap.dedent("""\
        data_dir = "data"

        [[tenants]]
        id = "shop"
        write_key = "wk_shop_aaaaaaaaaaaaaaaa"
        read_key = "rk_shop_bbbbbbbbbbbbbbbb"
        """) + textwrap.dedent(extra))
    return str(path)


def test_convert_then_query_from_the_command_line(tmp_path, capsys):
    cfg = config_file(tmp_path, """
        [convert]
        session_gap_mins = 10

        [engine]
        type = "duckdb"
        threads = 2
        memory_limit_mb = 512
        """)
    t = ms("2026-03-10T10:00:00")
    write_raw(tmp_path / "data" / "lake", [event("a", t), event("a", t + 15 * 60_000)])
    assert cli.main(["convert", "--config", cfg, "--no-progress"]) == 0
    assert "converted 1 new raw file(s): 2 events in 1 tenant-day(s)" in capsys.readouterr().out
    assert (tmp_path / "data" / "catalog.db").is_file()
    assert cli.main(["query", "--config", cfg, "--format", "json", "SELECT count(*) AS sessions FROM sessions"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"sessions": 2}]  # the 10-minute gap from the config


def test_the_beaconlake_command_has_both_subcommands():
    parser = cli.build_parser()
    args = parser.parse_args(["convert", "--engine", "spark", "--tenant", "shop", "--full"])
    assert (args.func, args.engine, args.tenant, args.full) == (convert_cli.cmd_convert, "spark", ["shop"], True)
    args = parser.parse_args(["query", "SELECT 1", "--format", "csv"])
    assert (args.func, args.sql, args.format) == (convert_cli.cmd_query, "SELECT 1", "csv")


@pytest.mark.parametrize(("extra", "message"), [
    ("[convert]\nsession_gap_mins = 0\n", "convert.session_gap_mins = 0: must be between 1 and 1440 minutes"),
    ("[convert]\nmax_session_hours = 1\nsession_gap_mins = 90\n", "must be shorter than convert.max_session_hours = 1"),
    ("[engine]\ntype = \"presto\"\n", "Invalid value 'presto' - at `$.engine.type`"),
    ("[catalog]\ntype = \"rest\"\nuri = \"ftp://x\"\n", "catalog.uri = 'ftp://x'"),
    ("[convert]\ngap = 3\n", "unknown field `gap`"),
])
def test_bad_config_values_name_the_key_the_value_and_the_limit(tmp_path, capsys, extra, message):
    assert cli.main(["convert", "--config", config_file(tmp_path, extra)]) == 2
    assert message in capsys.readouterr().err


def test_environment_overrides_reach_the_convert_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("BEACONLAKE__CONVERT__LATE_ARRIVAL_HOURS", "5")
    monkeypatch.setenv("BEACONLAKE__ENGINE__TYPE", "spark")
    settings, sections = convert_cli.load(config_file(tmp_path))
    assert sections[0].late_arrival_hours == 5
    assert type(sections[1]).__name__ == "SparkEngineSettings"
    assert settings.tenants[0].id == "shop"


def test_an_unknown_tenant_and_bad_sql_are_errors(tmp_path, capsys):
    cfg = config_file(tmp_path)
    assert cli.main(["convert", "--config", cfg, "--tenant", "nope"]) == 2
    assert "--tenant 'nope': no such tenant in the config (tenants: shop)" in capsys.readouterr().err
    assert cli.main(["query", "--config", cfg, "SELECT FROM WHERE"]) == 2
    assert "does not parse" in capsys.readouterr().err


def test_progress_is_logged_when_not_on_a_terminal(tmp_path, caplog, capsys):
    cfg = config_file(tmp_path)
    write_raw(tmp_path / "data" / "lake", [event("a", ms("2026-03-10T10:00:00"))])
    with caplog.at_level(logging.INFO, logger="beaconlake.convert"):
        assert cli.main(["convert", "--config", cfg]) == 0
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("converted shop")]
    assert "files 1/1, events 1," in line and "events/s" in line


def test_an_engine_asked_for_on_the_command_line_without_its_package_names_the_extra(tmp_path, capsys, monkeypatch):
    from uninstalled import uninstall

    uninstall(monkeypatch, "pyspark", "beaconlake.backends.engine.spark")
    cfg = config_file(tmp_path)
    write_raw(tmp_path / "data" / "lake", [event("a", ms("2026-03-10T10:00:00"))])
    assert cli.main(["convert", "--config", cfg, "--engine", "spark", "--no-progress"]) == 2
    assert ("engine.type = 'spark' needs a package that is not installed (pyspark): pip install 'beaconlake[spark]'"
            in capsys.readouterr().err)
