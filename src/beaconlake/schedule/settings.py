"""``[schedule]``: when ``beaconlake up`` runs convert and analyze by itself."""

from __future__ import annotations

import msgspec


class ScheduleSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # false: `beaconlake up` never converts by itself (runs asked for from the dashboard still happen).
    enabled: bool = True
    # A run starts this long after the previous one started (a run that overruns is followed at once).
    convert_interval_mins: float = 5.0
    # The first run after start-up: soon, so a fresh pipeline shows tables without waiting an interval.
    first_run_delay_secs: float = 30.0
    # Runs kept in the history that the Pipeline view and /v1/dashboard/pipeline show.
    keep_runs: int = 200

    def __post_init__(self) -> None:
        # Fractions of a minute are allowed for demos and tests; more than a day is surely a typo.
        if not 0.01 <= self.convert_interval_mins <= 1440:
            raise ValueError(f"schedule.convert_interval_mins = {self.convert_interval_mins!r}: must be between 0.01 and 1440 minutes")
        if not 0 <= self.first_run_delay_secs <= 86_400:
            raise ValueError(f"schedule.first_run_delay_secs = {self.first_run_delay_secs!r}: must be between 0 and 86400 seconds")
        if not 1 <= self.keep_runs <= 100_000:
            raise ValueError(f"schedule.keep_runs = {self.keep_runs!r}: must be between 1 and 100000 runs")
