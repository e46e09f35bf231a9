"""The convert stage: raw lake Parquet -> deduplicated, sessionized Iceberg tables.

``run.convert`` is the incremental job (``beaconlake convert``); ``query.run_query`` runs SQL over
the tables with DuckDB (``beaconlake query``). See docs/convert.md.
"""
