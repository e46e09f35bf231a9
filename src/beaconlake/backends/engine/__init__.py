"""Engines: ``engine.type`` in the config picks one; backends import lazily."""

from __future__ import annotations

import importlib

from beaconlake.backends.engine.base import Dialect, Engine
from beaconlake.convert.settings import (
    DuckDBEngineSettings,
    EngineSettings,
    SparkEngineSettings,
)
from beaconlake.errors import ConfigError

# type -> (module, class, pip extra that provides what the module imports, or None)
LOADERS: dict[str, tuple[str, str, str | None]] = {
    "duckdb": ("beaconlake.backends.engine.duckdb", "DuckDBEngine", None),
    "spark": ("beaconlake.backends.engine.spark", "SparkEngine", "spark"),
}


def engine_type(settings: EngineSettings) -> str:
    return type(settings).__struct_config__.tag


def open_engine(settings: EngineSettings, data_dir: str, **kwargs) -> Engine:
    kind = engine_type(settings)
    module_name, class_name, extra = LOADERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'beaconlake[{extra}]'" if extra else "reinstall beaconlake"
        raise ConfigError(f"engine.type = {kind!r} needs a package that is not installed: {hint} ({exc})") from exc
    return getattr(module, class_name)(settings, data_dir, **kwargs)


__all__ = ["LOADERS", "Dialect", "DuckDBEngineSettings", "Engine", "SparkEngineSettings", "engine_type", "open_engine"]
