"""A data folder with a simulated raw lake, converted and analyzed: for the analyze stage's tests."""

from __future__ import annotations

from collections import defaultdict

from beaconlake import config
from beaconlake.analyze.run import analyze
from beaconlake.convert.run import convert
from beaconlake.simulate import visits, write_raw_lake

DAY_MS = 86_400_000
START_MS = 1_761_955_200_000  # 2025-11-01T00:00:00Z, a Saturday
READ_KEY = "rk_shopshopshopshopshop"
OTHER_READ_KEY = "rk_otherotherotherother"


def make_settings(root, **sections):
    raw = {
        "data_dir": str(root / "data"),
        "tenants": [
            {"id": "shop", "write_key": "wk_shopshopshopshopshop", "read_key": READ_KEY},
            {"id": "other", "write_key": "wk_otherotherotherother", "read_key": OTHER_READ_KEY},
        ],
        "spool": {"min_free_disk_bytes": 0},
        "engine": {"type": "duckdb", "threads": 2, "memory_limit_mb": 1024},
        **sections,
    }
    return config.parse(raw, root, environ={})


class SimLake:
    """Simulated people delivered to the raw lake, converted, analyzed."""

    def __init__(self, root, people: int, days: int, seed: int, **sections) -> None:
        self.settings = make_settings(root, **sections)
        self.people, self.seed = people, seed
        self.persona_of: dict[str, str] = {}
        self.add(days, START_MS)

    def add(self, days: int, start_ms: int, only: set[int] | None = None) -> int:
        """Simulate ``days`` more days from ``start_ms`` (only people whose index is in ``only``)."""
        chosen = []
        for v in visits(self.people, days, self.seed, start_ms):
            if only is None or v.person in only:
                chosen.append(v)
                self.persona_of[v.anonymous_id] = v.persona
                if v.user_id:
                    self.persona_of[v.user_id] = v.persona
        return write_raw_lake(self.settings, chosen)

    def convert(self):
        return convert(self.settings, progress=False)

    def analyze(self, **kwargs):
        return analyze(self.settings, **kwargs)

    def profiles(self):
        from beaconlake.backends.profiles import open_profiles

        return open_profiles(self.settings.profiles)


def by_persona(lake: SimLake, docs: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for d in docs:
        out[lake.persona_of[d["person_id"]]].append(d)
    return out
