"""Engines: ``engine.type`` in the config picks one from ``LOADERS``; each imports lazily."""

from __future__ import annotations

from typing import Any

from beaconlake.backends.engine.base import Capabilities, Dialect, Engine
from beaconlake.backends.engine.settings import ENGINE_TYPES, EngineSettings
from beaconlake.backends.loader import Loader, backend_for

LOADERS: dict[str, Loader] = {
    "duckdb": ("beaconlake.backends.engine.duckdb", "DuckDBEngine", None),
    "spark": ("beaconlake.backends.engine.spark", "SparkEngine", "spark"),
}


def open_engine(settings: EngineSettings, data_dir: str, **kwargs: Any) -> Engine:
    """The engine the ``[engine]`` section describes; relative paths in it are under ``data_dir``.
    ``kwargs`` go to the backend (``session=`` hands Spark a running session)."""
    return backend_for("engine", settings, LOADERS).from_settings(settings, data_dir, **kwargs)


__all__ = ["ENGINE_TYPES", "LOADERS", "Capabilities", "Dialect", "Engine", "open_engine"]
