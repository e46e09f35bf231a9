"""The one seam pattern of ``backends/<seam>/``: a ``LOADERS`` map per seam from every type its
settings accept to the backend, one shared loader that imports a backend only when its type is
asked for and turns a missing package into ``NotInstalled`` naming the pip extra, and the
differences between backends declared as ``capabilities`` on the contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from uninstalled import uninstall

from beaconlake.backends import catalog, counters, engine, highlevel, profiles, storage
from beaconlake.backends.catalog.settings import CatalogSettings, GlueCatalogSettings
from beaconlake.backends.counters.settings import CountersSettings, RedisCountersSettings
from beaconlake.backends.engine.settings import EngineSettings, SparkEngineSettings
from beaconlake.backends.highlevel.settings import HighLevelSettings, PostgresHighLevelSettings
from beaconlake.backends.loader import load
from beaconlake.backends.profiles.settings import PostgresProfilesSettings, ProfilesSettings
from beaconlake.backends.storage.settings import AzureStorageSettings, S3StorageSettings, StorageSettings
from beaconlake.errors import ConfigError, NotInstalled
from beaconlake.sections import types_of

# seam -> (its package, its settings union, its contract)
SEAMS = {
    "storage": (storage, StorageSettings, storage.Storage),
    "counters": (counters, CountersSettings, counters.Counters),
    "highlevel": (highlevel, HighLevelSettings, highlevel.HighLevelIndex),
    "profiles": (profiles, ProfilesSettings, profiles.ProfileStore),
    "engine": (engine, EngineSettings, engine.Engine),
    "catalog": (catalog, CatalogSettings, catalog.CatalogBackend),
}


def open_backend(seam: str, section, tmp_path: Path):
    """Each seam's ``open_*`` with the plain values it takes."""
    if seam == "counters":
        return counters.open_counters(section, role="test", state_dir=tmp_path, retention_ms=3_600_000)
    if seam == "engine":
        return engine.open_engine(section, str(tmp_path))
    if seam == "catalog":
        return catalog.open_catalog(section, str(tmp_path), (tmp_path / "wh").as_uri())
    return {"storage": storage.open_storage, "highlevel": highlevel.open_highlevel,
            "profiles": profiles.open_profiles}[seam](section)


@pytest.mark.parametrize("seam", SEAMS)
def test_every_type_the_config_accepts_has_a_loader(seam):
    package, union, _ = SEAMS[seam]
    assert set(package.LOADERS) == set(types_of(union))


@pytest.mark.parametrize("seam", SEAMS)
def test_every_backend_keeps_the_contract_and_declares_its_capabilities(seam):
    package, _, contract = SEAMS[seam]
    for kind in package.LOADERS:
        backend = load(seam, kind, package.LOADERS)
        assert issubclass(backend, contract), (seam, kind)
        assert isinstance(backend.capabilities, package.Capabilities), (seam, kind)


def test_a_loader_entry_whose_module_is_missing_raises_not_installed_naming_the_extra():
    loaders = {"x": ("beaconlake.backends.no_such_backend", "Backend", "x-extra")}
    with pytest.raises(NotInstalled) as info:
        load("counters", "x", loaders)
    assert str(info.value) == ("counters.type = 'x' needs a package that is not installed "
                               "(beaconlake.backends.no_such_backend): pip install 'beaconlake[x-extra]'")
    assert isinstance(info.value, ConfigError)  # the CLI answers it like any config error: exit 2, the message
    assert (info.value.seam, info.value.kind, info.value.extra) == ("counters", "x", "x-extra")


def test_a_missing_core_module_says_to_reinstall():
    with pytest.raises(NotInstalled, match=r"\(beaconlake.backends.gone\): reinstall beaconlake"):
        load("storage", "local", {"local": ("beaconlake.backends.gone", "LocalStorage", None)})


def test_a_type_without_a_loader_names_the_types_there_are():
    with pytest.raises(ConfigError, match=r"storage.type = 'ftp': no such backend; use one of azure, local, s3"):
        load("storage", "ftp", storage.LOADERS)


# seam, a section of a backend with an optional driver, the driver's top-level package, the extra
DRIVERS = [
    ("storage", S3StorageSettings(bucket="bucket"), "boto3", "s3"),
    ("storage", AzureStorageSettings(account_name="acct", container="lake", account_key="a2V5"), "azure", "azure"),
    ("counters", RedisCountersSettings(), "redis", "redis"),
    ("highlevel", PostgresHighLevelSettings(dsn="host=db"), "psycopg", "postgres"),
    ("profiles", PostgresProfilesSettings(dsn="host=db"), "psycopg", "postgres"),
    ("engine", SparkEngineSettings(), "pyspark", "spark"),
    ("catalog", GlueCatalogSettings(), "boto3", "glue"),
]


@pytest.mark.parametrize(("seam", "section", "driver", "extra"), DRIVERS, ids=[f"{d[0]}-{d[3]}" for d in DRIVERS])
def test_opening_a_backend_whose_driver_is_not_installed_names_the_extra(monkeypatch, tmp_path, seam, section,
                                                                         driver, extra):
    package = SEAMS[seam][0]
    kind = section.__struct_config__.tag
    # pgconn: the PostgreSQL backends reach psycopg through it, and an earlier test imported it
    uninstall(monkeypatch, driver, package.LOADERS[kind][0], "pyiceberg.catalog.glue", "beaconlake.backends.pgconn")
    with pytest.raises(NotInstalled) as info:
        open_backend(seam, section, tmp_path)
    assert str(info.value) == (f"{seam}.type = {kind!r} needs a package that is not installed ({driver}): "
                               f"pip install 'beaconlake[{extra}]'")


CORE = {"beaconlake.errors", "beaconlake.sections", "beaconlake.types", "beaconlake.units", "beaconlake.telemetry",
        "beaconlake.logs", "beaconlake.locks", "beaconlake.files"}
# backends/ modules of no one seam: the loader, and the PostgreSQL connection that comes back
# after the server does (the high-level index and the profile store both hold one)
SHARED = {"beaconlake.backends.loader", "beaconlake.backends.pgconn"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("beaconlake")}


@pytest.mark.parametrize("seam", SEAMS)
def test_a_backend_imports_only_the_core_its_own_seam_and_the_loader(seam):
    folder = Path(SEAMS[seam][0].__file__).parent
    for path in folder.glob("*.py"):
        for name in _imports(path):
            own = name == f"beaconlake.backends.{seam}" or name.startswith(f"beaconlake.backends.{seam}.")
            assert own or name in CORE or name in SHARED, f"{path.name} imports {name}"


def test_not_installed_survives_a_trip_between_processes():
    import pickle

    err = pickle.loads(pickle.dumps(NotInstalled("engine", "spark", "pyspark", "spark")))
    assert isinstance(err, NotInstalled) and str(err).endswith("pip install 'beaconlake[spark]'")
