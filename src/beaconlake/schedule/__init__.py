"""The scheduler of ``beaconlake up``: convert, then analyze, on an interval and on demand."""
