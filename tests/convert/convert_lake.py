"""A data folder with a raw lake, for tests: settings built by hand, convert, read the tables."""

from __future__ import annotations

from convert_engines import make_engine, settings_for

from beaconlake import config
from beaconlake.convert.run import convert, open_store
from beaconlake.backends.catalog.settings import SqlCatalogSettings
from beaconlake.convert.settings import ConvertSettings


class Lake:
    """A data folder with a raw lake, settings built by hand, and helpers to convert and read."""

    def __init__(self, root, engine_kind: str, scratch, tenants=None, convert_cfg=None) -> None:
        self.root = root
        self.kind = engine_kind
        self.scratch = scratch
        raw = {"data_dir": str(root), "tenants": tenants or [tenant("shop")]}
        self.settings = config.parse(raw, root, environ={})
        self.sections = (ConvertSettings(**(convert_cfg or {})), settings_for(engine_kind), SqlCatalogSettings())

    @property
    def lake(self):
        return self.root / "lake"

    def convert(self, **kwargs):
        engine = make_engine(self.kind, self.root, self.scratch)
        try:
            return convert(self.settings, sections=self.sections, engine=engine, progress=False, **kwargs)
        finally:
            engine.close()

    def store(self):
        return open_store(self.settings, self.sections)

    def rows(self, table: str, sort: tuple[str, ...] = ()) -> list[dict]:
        rows = self.store().table(table).scan().to_arrow().to_pylist()
        return sorted(rows, key=lambda r: tuple("" if r[k] is None else r[k] for k in sort)) if sort else rows


def tenant(tid: str, **extra) -> dict:
    return {"id": tid, "write_key": f"wk_{tid}_" + "a" * 16, "read_key": f"rk_{tid}_" + "b" * 16, **extra}
