"""Iceberg catalogs: ``catalog.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

import importlib

from beaconlake.backends.catalog.base import Catalog, CatalogError
from beaconlake.convert.settings import CatalogSettings
from beaconlake.errors import ConfigError

# type -> (module, pip extra that provides what the module imports, or None)
LOADERS: dict[str, tuple[str, str | None]] = {
    "sql": ("beaconlake.backends.catalog.sql", None),
    "rest": ("beaconlake.backends.catalog.rest", None),
    "glue": ("beaconlake.backends.catalog.glue", "glue"),
}


def open_catalog(settings: CatalogSettings, data_dir: str, warehouse: str) -> Catalog:
    kind = type(settings).__struct_config__.tag
    module_name, extra = LOADERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'beaconlake[{extra}]'" if extra else "reinstall beaconlake"
        raise ConfigError(f"catalog.type = {kind!r} needs a package that is not installed ({exc.name}): {hint}") from exc
    try:
        return module.open_catalog(settings, data_dir, warehouse)
    except Exception as exc:  # pyiceberg raises connection, auth and driver errors of every kind
        where = getattr(settings, "uri", None) or settings.name
        raise CatalogError(f"catalog.type = {kind!r}: cannot open {where}: {exc}") from exc


__all__ = ["LOADERS", "Catalog", "CatalogError", "open_catalog"]
