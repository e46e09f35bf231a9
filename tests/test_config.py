import subprocess
import sys
from pathlib import Path

import pytest

from beaconlake import config
from beaconlake.config import LocalStorageSettings, S3StorageSettings
from beaconlake.errors import ConfigError
from beaconlake.starter import write_starter

KEY_W = "wk_aaaaaaaaaaaaaaaaaaaaaaaa"
KEY_R = "rk_bbbbbbbbbbbbbbbbbbbbbbbb"
KEY_A = "ak_cccccccccccccccccccccccc"


def minimal(**extra) -> dict:
    tenant = {"id": "shop", "write_key": KEY_W, "read_key": KEY_R}
    return {"tenants": [tenant], **extra}


def test_starter_config_loads_with_fresh_keys(tmp_path):
    write_starter(tmp_path)
    first = config.load(tmp_path / "beaconlake.toml", environ={})
    (tmp_path / "other").mkdir()
    write_starter(tmp_path / "other")
    second = config.load(tmp_path / "other" / "beaconlake.toml", environ={})
    assert first.tenants[0].id == "demo"
    assert first.tenants[0].write_key != second.tenants[0].write_key
    keys = {first.tenants[0].write_key, first.tenants[0].read_key, first.tenants[0].admin_key}
    assert len(keys) == 3 and first.tenants[0].admin_key != second.tenants[0].admin_key
    # the server's admin key is written commented out: an operator turns it on, with a fresh key
    text = (tmp_path / "beaconlake.toml").read_text()
    assert first.server.admin_key is None and '# admin_key = "sk_' in text
    assert first.tenants[0].sequences[0].steps[1].same == ["props.category"]


def test_init_refuses_to_overwrite(tmp_path):
    write_starter(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        write_starter(tmp_path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    s = config.parse(minimal(data_dir="state"), tmp_path, environ={})
    assert s.data_dir == str(tmp_path / "state")
    assert isinstance(s.storage, LocalStorageSettings)
    assert s.storage.root == str(tmp_path / "state" / "lake")
    assert s.spool_path == tmp_path / "state" / "spool"


def test_every_backend_path_resolves_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = config.parse(minimal(data_dir="state"), tmp_path, environ={})
    # empty: the default under data_dir
    assert (s.storage.root, s.highlevel.path, s.profiles.path) == (
        str(tmp_path / "state" / "lake"), str(tmp_path / "state" / "highlevel.db"), str(tmp_path / "state" / "profiles.db"))
    s = config.parse(minimal(storage={"type": "local", "root": "lk"}, highlevel={"type": "sqlite", "path": "~/hl.db"},
                             profiles={"type": "sqlite", "path": "db/p.db"}),
                     tmp_path, environ={})
    assert (s.storage.root, s.highlevel.path, s.profiles.path) == (
        str(tmp_path / "lk"), str(tmp_path / "home" / "hl.db"), str(tmp_path / "db" / "p.db"))
    # a server backend has no path to resolve
    s = config.parse(minimal(highlevel={"type": "postgres", "dsn": "dbname=x"}), tmp_path, environ={})
    assert s.highlevel.dsn == "dbname=x"


def test_environment_overrides_sections_and_tenants(tmp_path):
    env = {
        "BEACONLAKE__SERVER__PORT": "9090",
        "BEACONLAKE__SPOOL__DURABILITY": "os",
        "BEACONLAKE__TENANTS__SHOP__ALLOWED_ORIGINS": '["https://shop.example"]',
        "UNRELATED": "x",
    }
    s = config.parse(minimal(), tmp_path, environ=env)
    assert s.server.port == 9090
    assert s.spool.durability == "os"
    assert s.tenants[0].allowed_origins == ["https://shop.example"]


def test_environment_can_switch_storage_to_s3(tmp_path):
    env = {"BEACONLAKE__STORAGE__TYPE": "s3", "BEACONLAKE__STORAGE__BUCKET": "lake-bucket"}
    s = config.parse(minimal(), tmp_path, environ=env)
    assert isinstance(s.storage, S3StorageSettings)
    assert s.storage.bucket == "lake-bucket"


@pytest.mark.parametrize(
    ("raw", "env", "message"),
    [
        (minimal(server={"port": 70000}), {}, r"<= 65535 - at `\$.server.port`"),
        (minimal(spool={"durability": "maybe"}), {}, r"Invalid enum value 'maybe' - at `\$.spool.durability`"),
        (minimal(server={"prot": 1}), {}, "unknown field `prot`"),
        (minimal(), {"BEACONLAKE__TENANTS__NOPE__READ_KEY": "x"}, "no tenant with id 'nope'"),
        ({"tenants": [{"id": "a", "write_key": "short", "read_key": KEY_R}]}, {}, r"length >= 16 - at `\$.tenants\[0\].write_key`"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_W}]}, {}, "same key is already used"),
        (minimal() | {"tenants": minimal()["tenants"] * 2}, {}, "declared twice"),
        # admin keys: optional, checked like the others, and no key may be another one
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "admin_key": "ak_short"}]}, {},
         r"length >= 16 - at `\$.tenants\[0\].admin_key`"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "admin_key": "ak_has space in it!!"}]}, {},
         r"matching regex .* - at `\$.tenants\[0\].admin_key`"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "admin_key": KEY_R}]}, {},
         r"tenants.a.admin_key: the same key is already used as tenants.a.read_key"),
        ({"server": {"admin_key": KEY_A}, "tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "admin_key": KEY_A}]},
         {}, r"tenants.a.admin_key: the same key is already used as server.admin_key"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "admin_key": KEY_A},
                      {"id": "b", "write_key": "wk_dddddddddddddddddddd", "read_key": KEY_A}]},
         {}, r"tenants.b.read_key: the same key is already used as tenants.a.admin_key"),
        (minimal(server={"admin_key": "x" * 129}), {}, r"length <= 128 - at `\$.server.admin_key`"),
        # a trailing newline (a TOML "\n" escape) is no part of an id or a key: it would name a lake folder
        ({"tenants": [{"id": "a\n", "write_key": KEY_W, "read_key": KEY_R}]}, {}, r"matching regex .* - at `\$.tenants\[0\].id`"),
        ({"tenants": [{"id": "a", "write_key": KEY_W + "\n", "read_key": KEY_R}]}, {},
         r"matching regex .* - at `\$.tenants\[0\].write_key`"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "allowed_origins": ["shop.example"]}]}, {}, "is not an origin"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R, "schemas": [{"level": "mid", "name": "x"}]}]}, {}, "exactly one of"),
        ({"tenants": [{"id": "a", "write_key": KEY_W, "read_key": KEY_R,
                       "sequences": [{"name": "s", "within_secs": 5, "steps": [{"name": "x", "where": [{"field": "url", "op": "like"}]}]}]}]},
         {}, r"Invalid enum value 'like'"),
        ({"storage": {"type": "ftp"}}, {}, "Invalid value 'ftp' - at `\\$.storage.type`"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path, raw, env, message):
    with pytest.raises(ConfigError, match=message):
        config.parse(raw, tmp_path, environ=env)


def test_missing_and_malformed_files_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="not found; run `beaconlake init`"):
        config.load(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad, environ={})


def test_moved_deployment_folder_keeps_working(tmp_path):
    (tmp_path / "a").mkdir()
    write_starter(tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")
    s = config.load(tmp_path / "b" / "beaconlake.toml", environ={})
    assert Path(s.data_dir) == tmp_path / "b" / "data"


def test_reading_the_config_imports_settings_and_the_core_only():
    # config.py assembles the sections that stages and backend seams define in their settings
    # leaves: loading it must not drag in any stage's logic (nor a backend's driver).
    code = ("import sys, beaconlake.config; "
            "print('\\n'.join(m for m in sys.modules if m.startswith(('beaconlake', 'pyiceberg', 'duckdb', 'pyspark'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    packages = {m for m in loaded if hasattr(sys.modules.get(m), "__path__")}  # their __init__ only
    # below config: a seam's contract (and the window type the counters' contract is written in)
    contracts = {m for m in loaded if m.startswith("beaconlake.backends.") and m.rsplit(".", 1)[1] in ("base", "windows")}
    core = {"beaconlake.config", "beaconlake.errors", "beaconlake.sections", "beaconlake.types", "beaconlake.origins",
            "beaconlake.telemetry", "beaconlake.units", "beaconlake.backends.loader"}
    others = [m for m in loaded if m not in packages | contracts | core and not m.endswith(".settings")]
    assert others == []
    assert "beaconlake.backends.storage.settings" in loaded and "beaconlake.realtime.settings" in loaded


@pytest.mark.parametrize("section", ["highlevel", "profiles"])
@pytest.mark.parametrize("value", [0, -1, 1e400, float("nan"), 3601])
def test_a_postgres_call_timeout_out_of_range_is_refused_naming_it(tmp_path, section, value):
    """inf (``1e400`` in TOML) would make every call unbounded again, and break its timer."""
    with pytest.raises(ConfigError, match=rf"{section}\.timeout_secs = .*between 0\.1 and 3600 seconds"):
        config.parse(minimal(**{section: {"type": "postgres", "dsn": "dbname=x", "timeout_secs": value}}), tmp_path,
                     environ={})
