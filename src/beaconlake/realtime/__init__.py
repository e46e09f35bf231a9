"""The realtime stage: mid-level statistics (``stats``) and high-level sequences (``sequences``).

Statistics are folded in every collector worker (a router destination) into mergeable
minute windows; sequence detection, high-level indexing and closing windows to the lake run
in the lake deliverer (``consumer``), the one process that sees every event of one node; with
``realtime.sequences_from = "lake"`` one detector on the active jobs node reads every node's raw
files instead (``lakefeed``). See docs/realtime.md.
"""

from beaconlake.telemetry import HELP

HELP.update(
    {
        "beaconlake_stats_events_total": ("counter", "Events folded into statistics windows."),
        "beaconlake_stats_late_events_total": ("counter", "Events too late for their window (past allowed lateness), left out of statistics."),
        "beaconlake_stats_skipped_values_total": ("counter", "Numeric props out of the statistics' range (not finite, or "
                                                             "beyond 1e100), left out of sum, mean and stddev; their events count."),
        "beaconlake_stats_windows_written_total": ("counter", "Closed statistics rows written to lake/stats."),
        "beaconlake_sequences_matched_total": ("counter", "High-level events emitted by server-side sequence detection."),
        "beaconlake_highlevel_indexed_total": ("counter", "High-level events indexed for search."),
        "beaconlake_realtime_failures_total": ("counter", "Failed passes of the realtime consumer in the deliverer."),
        "beaconlake_sequences_late_events_total": ("counter", "Events a sequence definition reads, found by the lake detector "
                                                              "in raw files that reached the lake after its watermark passed their "
                                                              "time; left out of detection."),
        "beaconlake_sequences_lake_files_read_total": ("counter", "Raw lake files the lake detector read."),
        "beaconlake_sequences_lake_failures_total": ("counter", "Failed steps of the lake detector (it starts again from its checkpoint)."),
        "beaconlake_sequences_watermark_lag_seconds": ("gauge", "How far the lake detector's watermark is behind its clock "
                                                                "(realtime.lake_lateness_secs when it keeps up)."),
    }
)
