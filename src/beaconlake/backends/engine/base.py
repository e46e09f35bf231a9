"""The engine seam: what runs the convert stage's SQL.

An engine is a SQL executor over Parquet files: it registers files (or Arrow tables) as views,
materializes intermediate results, returns small results as Arrow, and writes a query's result as
Parquet partitioned into folders. The convert stage writes its logic once, as SQL, and asks the
engine's ``Dialect`` for the few functions that are spelled differently, so DuckDB and Spark run
the same statements and produce the same rows.

Rules for the shared SQL (both engines accept them): types are ``STRING``, ``BIGINT``, ``INT``,
``DOUBLE``, ``BOOLEAN``, ``DATE``; ``try_cast``; ``NULLS FIRST`` spelled out wherever order
matters; no ``QUALIFY``; ``NOT EXISTS`` for anti-joins; window frames left at their default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

Part = tuple[tuple[str, ...], str]


class Dialect(ABC):
    """Spellings that differ between engines. Each returns a SQL expression."""

    @abstractmethod
    def hash64(self, value: str) -> str:
        """A 64-bit hash (engine-specific values; only compared within one engine)."""

    @abstractmethod
    def timestamp_ms(self, ms: str) -> str:
        """A UTC timestamp (Iceberg ``timestamptz``) from epoch milliseconds."""

    @abstractmethod
    def epoch_ms(self, ts: str) -> str:
        """Epoch milliseconds (BIGINT) from a timestamp."""

    @abstractmethod
    def date_ms(self, ms: str) -> str:
        """The UTC date of epoch milliseconds."""

    @abstractmethod
    def json_text(self, doc: str, key: str) -> str:
        """Top-level ``key`` of a JSON object text, as text (strings unquoted); NULL when absent."""

    @abstractmethod
    def json_text_list(self, doc: str, key: str) -> str:
        """Top-level ``key`` holding an array, as a list of text; NULL when absent."""

    @abstractmethod
    def last_ignore_nulls(self, expr: str) -> str:
        """A window function call: the last non-null ``expr`` so far (append ``OVER w``)."""

    @abstractmethod
    def min_by(self, value: str, key: str) -> str:
        """Aggregate: ``value`` of the row with the smallest ``key``, even when that value is NULL."""

    @abstractmethod
    def max_by(self, value: str, key: str) -> str:
        """Aggregate: ``value`` of the row with the largest ``key``, even when that value is NULL."""

    @abstractmethod
    def matches(self, text: str, pattern: str) -> str:
        """True when the regular expression ``pattern`` (a SQL string literal) is found in ``text``."""

    @abstractmethod
    def url_decode(self, text: str) -> str:
        """Percent-decoding of ``text``; only called on text that is well-formed percent-encoding."""

    @abstractmethod
    def hex_bigint(self, text: str) -> str:
        """The BIGINT whose hexadecimal digits (at most 15) are ``text``."""

    def bucket_id(self, value: str, n: str) -> str:
        """``convert.buckets.bucket_id`` in SQL: ``n`` plus the first 32 bits of md5(value) modulo ``n``."""
        return f"(({n}) + {self.hex_bigint(f'substr(md5({value}), 1, 8)')} % ({n}))"


@dataclass(frozen=True)
class Capabilities:
    """What an engine is, asked by callers instead of its class."""

    # It runs inside this Python process (DuckDB): its memory is this process's, and opening
    # one is cheap. False: it runs in processes of its own (Spark's JVM, locally or on a cluster).
    in_process: bool


class Engine(ABC):
    name: str
    dialect: Dialect
    capabilities: ClassVar[Capabilities]

    @classmethod
    def from_settings(cls, settings: Any, data_dir: str, storage: Any = None, **kwargs: Any) -> Engine:
        """The engine its ``[engine]`` section (of this backend's type) describes; relative paths
        in it are under ``data_dir``. ``storage``: the ``[storage]`` section, for an engine that
        reaches the store itself (Spark's S3A). By default the constructor takes the others."""
        return cls(settings, data_dir, **kwargs)  # type: ignore[call-arg]

    @abstractmethod
    def read_parquet(self, view: str, paths: list[str], schema: pa.Schema, key_offset: int | None = None) -> None:
        """Register ``view`` over these Parquet files. Only ``schema``'s columns are exposed, with
        its types; a column missing from a file reads as NULL. No paths: an empty view.

        With ``key_offset``, the view also has ``_row_key`` (BIGINT): ``(key_offset + the file's
        position in paths) << 32 | the row's number in its file``, so rows read through two views
        whose path lists line up (a day's files are a slice of the batch's) can be joined back."""

    def reaches(self, uri: str) -> bool:
        """Whether this engine reads and writes ``uri`` (a file's or a folder's) itself, wherever it
        runs: then it is given table and lake files where they are, not copies on this machine.
        By default only local paths (``file://`` or none)."""
        return "://" not in uri or uri.startswith("file://")

    @abstractmethod
    def register_arrow(self, view: str, table: pa.Table) -> None:
        """Register an Arrow table as ``view``."""

    @abstractmethod
    def materialize(self, name: str, sql: str) -> int:
        """Compute ``sql`` once and keep it as ``name`` for later statements; returns its rows."""

    @abstractmethod
    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` and return its (small) result."""

    @abstractmethod
    def write_parquet(
        self, sql: str, folder: str, partition_by: list[str], target_file_mb: int, parts: list[Part] | None = None,
        bucket: str | None = None,
    ) -> list[str]:
        """Write the rows of ``sql`` as zstd Parquet under ``folder``, in a folder per distinct
        value of ``partition_by`` (``col=value/...``; the columns stay in the files), files rolling
        over near ``target_file_mb``. ``parts``, when given, split the same rows by partition:
        (the partition's values, in ``partition_by`` order, and a query for its rows). An engine
        may write those one by one instead (DuckDB does: a plain write per partition, with no
        buffering of the whole result by partition). ``bucket``: a column of the rows that splits
        each partition further into ``bucket=<value>`` folders, and is left out of the files.
        ``folder`` is a local path, or a URI the engine ``reaches`` (the table's own data folder).
        Returns the absolute paths written (URIs when ``folder`` is one)."""

    def unreadable(self, path: str, schema: pa.Schema) -> str | None:
        """Why this engine cannot read every value of ``schema``'s columns in the Parquet file at
        ``path``, or None when it can (a whole read, for finding the file that failed a batch)."""
        view = "_probe"
        # a hash of every value, so no engine can skip decoding a column
        values = "concat_ws('|', " + ", ".join(f"coalesce(CAST({f.name} AS STRING), '')" for f in schema) + ")"
        try:
            self.read_parquet(view, [path], schema)
            self.query(f"SELECT count(*) AS n, max({self.dialect.hash64(values)}) AS h FROM {view}")
        except Exception as exc:  # engines raise errors of every kind: each is this file's verdict
            lines = str(exc).strip().splitlines()
            return (lines[0] if lines else type(exc).__name__)[:500]
        finally:
            self.drop(view)
        return None

    @abstractmethod
    def drop(self, *names: str) -> None:
        """Forget views or materialized results; unknown names are ignored."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
