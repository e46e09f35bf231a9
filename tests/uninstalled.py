"""Test support: a package made absent for one test, as on a machine where it is not installed."""

from __future__ import annotations

import importlib.abc
import sys

import pytest


class _Nowhere(importlib.abc.MetaPathFinder):
    """Finds ``package`` and its modules nowhere: importing them raises what a missing package does."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name, path, target=None):
        if name == self.package or name.startswith(f"{self.package}."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def uninstall(monkeypatch: pytest.MonkeyPatch, package: str, *importers: str) -> None:
    """Make ``package`` not importable until the test ends; ``importers`` (modules that import it)
    are imported afresh. Nothing of the package stays loaded; monkeypatch puts it all back."""
    loaded = [name for name in sys.modules if name == package or name.startswith(f"{package}.")]
    for name in (*importers, *loaded):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Nowhere(package), *sys.meta_path])
