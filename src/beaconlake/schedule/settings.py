"""``[schedule]``: when ``beaconlake up`` runs convert and analyze by itself."""

from __future__ import annotations

from beaconlake.sections import Section, check_range


class ScheduleSettings(Section):
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
        check_range("schedule.convert_interval_mins", self.convert_interval_mins, 0.01, 1440, "minutes")
        check_range("schedule.first_run_delay_secs", self.first_run_delay_secs, 0, 86_400, "seconds")
        check_range("schedule.keep_runs", self.keep_runs, 1, 100_000, "runs")
