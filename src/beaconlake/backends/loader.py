"""The one way a seam turns ``<seam>.type`` into a backend: a map to its module, imported lazily.

Each ``backends/<seam>/__init__.py`` declares ``LOADERS = {type: (module, attribute, extra)}``:
the backend's module, the name in it that opens one (a class with ``from_settings``, or for
catalogs a function), and the pip extra that installs what the module imports (None: a core
dependency). Nothing imports a backend's module before its type is asked for, so an optional
driver (boto3, redis, psycopg, pyspark) is needed only where it is configured, and a missing one
is one error for every seam, ``NotInstalled``, naming the extra to install. pyiceberg loads its
catalogs and FileIOs the same way. Backend modules import their drivers plainly and never
raise an ImportError of their own: this is where it is turned into advice.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from beaconlake.errors import ConfigError, NotInstalled
from beaconlake.sections import Section, type_of

# (module, attribute, pip extra or None)
Loader = tuple[str, str, str | None]


def load(seam: str, kind: str, loaders: Mapping[str, Loader]) -> Any:
    """The attribute that opens a ``kind`` backend of ``seam``, its module imported now."""
    try:
        module_name, attribute, extra = loaders[kind]
    except KeyError:
        raise ConfigError(f"{seam}.type = {kind!r}: no such backend; use one of {', '.join(sorted(loaders))}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # the module itself, or a package it imports
        raise NotInstalled(seam, kind, exc.name or module_name, extra) from exc
    return getattr(module, attribute)


def backend_for(seam: str, section: Section, loaders: Mapping[str, Loader]) -> Any:
    """What opens the backend ``section`` (tagged by ``type``) configures."""
    return load(seam, type_of(section), loaders)


__all__ = ["Loader", "backend_for", "load"]
