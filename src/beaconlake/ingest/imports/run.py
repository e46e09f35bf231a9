"""``beaconlake import``: history from Segment / RudderStack and Snowplow archives, through the
collector's own mapping and checks, into the raw lake at the events' original times.

The invariants:

* **Same event, same row.** A line is mapped by the same code as a live request
  (``ingest.protocols``) and checked by the same ``TenantRules``, so an imported event and the
  same event sent live are one event (same id) and convert keeps one of them. A message without
  an id gets one derived from (tenant, file name, line), so importing a file twice adds nothing.
* **Deduplicated against what is there.** Before a chunk is written, its ids are looked up in
  the raw lake files of the chunk's days (the ids of the days last looked at are kept, a bounded
  number of them); a duplicate is counted, not written.
* **Nothing silently dropped.** A line that is not JSON / TSV, cannot be mapped, or fails the
  checks goes to ``lake/rejected`` with its file, line, reason and an excerpt, and is counted
  by reason in the summary.
* **Flat memory.** Files stream line by line and are written in chunks of ``CHUNK_EVENTS``.
* **Replayable.** A chunk's lake files are named after the file and the chunk number, and go
  through delivery's own row building (``rows.segment_rows``) and keys, so a rerun after a crash
  rewrites the same files.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from beaconlake.backends.storage import Storage, open_storage
from beaconlake.config import Settings
from beaconlake.errors import ConfigError
from beaconlake.ingest.collector.enrich import end_user, user_agent
from beaconlake.ingest.collector.validate import Accepted, TenantRules, excerpt
from beaconlake.ingest.imports import readers
from beaconlake.ingest.protocols import segment, snowplow
from beaconlake.ingest.protocols.common import FOREIGN_ID_NAMESPACE, Mapped, Unmappable
from beaconlake.ingest.rows import segment_rows
from beaconlake.lake import layout
from beaconlake.lake.parquet import file_bytes
from beaconlake.lake.records import UNKNOWN_TENANT
from beaconlake.types import LEVELS, Client, Rejection, SpoolRecord
from beaconlake.units import DAY_MS

FORMATS = ("segment", "snowplow")
CHUNK_EVENTS = 20_000
CACHED_DAYS = 16  # days whose lake ids are kept between chunks: archives come roughly in time order
_json = msgspec.json.Encoder()
_record = msgspec.msgpack.Encoder()
EPOCH = date(1970, 1, 1)


@dataclass
class Summary:
    read: int = 0
    imported: int = 0
    duplicate: int = 0
    rejected: Counter = field(default_factory=Counter)  # by reason
    files: int = 0

    def lines(self) -> list[str]:
        out = [f"read {self.read}, imported {self.imported}, duplicate {self.duplicate}, "
               f"rejected {sum(self.rejected.values())} ({self.files} file(s))"]
        out += [f"  rejected {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        return out


@dataclass
class Line:
    tenant: str | None  # None: no tenant claims it
    number: int
    raw: bytes
    mapped: Mapped | Unmappable


class Importer:
    def __init__(self, settings: Settings, fmt: str, tenant: str | None = None, storage: Storage | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.settings = settings
        self.format = fmt
        self.storage = storage or open_storage(settings.storage)
        self.rules = {t.id: TenantRules.compile(t, settings.collector) for t in settings.tenants}
        if tenant is not None and tenant not in self.rules:
            raise ConfigError(f"--tenant {tenant!r} is not a tenant of the config (tenants: {', '.join(self.rules) or 'none'})")
        if fmt == "segment" and tenant is None:
            if len(self.rules) != 1:
                raise ConfigError("--tenant is required: the config has several tenants and a Segment archive does not say whose it is")
            tenant = next(iter(self.rules))
        self.tenant = tenant
        self.by_app_id = {}
        for t in settings.tenants:
            self.by_app_id[t.write_key] = t.id
            self.by_app_id.update((app_id, t.id) for app_id in t.app_ids)
        self.progress = progress or (lambda n: None)
        self.summary = Summary()
        self.seen: OrderedDict[tuple[str, int], set[str]] = OrderedDict()  # (tenant, day) -> ids in the lake

    # -- reading ---------------------------------------------------------------------------

    def run(self, paths: list[Path]) -> Summary:
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
        for path in paths:
            self._file(path)
        return self.summary

    def _file(self, path: Path) -> None:
        source = readers.Source(path)
        tag = hashlib.sha1(f"{self.format}\x00{path.name}\x00{source.size}".encode()).hexdigest()[:12]
        chunk: list[Line] = []
        number = 0
        done = 0
        try:
            for line in self._lines(source):
                chunk.append(line)
                if len(chunk) >= CHUNK_EVENTS:
                    self._write(chunk, f"import-{self.format}-{tag}-{number:06d}", path.name)
                    chunk, number = [], number + 1
                    self.progress(source.tell() - done)
                    done = source.tell()
            if chunk:
                self._write(chunk, f"import-{self.format}-{tag}-{number:06d}", path.name)
            self.progress(source.size - done)
        finally:
            source.close()
        self.summary.files += 1

    def _lines(self, source: readers.Source) -> Iterator[Line]:
        for number, raw in source.lines():
            self.summary.read += 1
            try:
                if self.format == "segment":
                    message = readers.segment_message(raw)
                    tenant = self.tenant
                    # Segment's archives hold the corrected ``timestamp``: the event time, as is
                    if isinstance(message, dict):
                        message = {**message, "originalTimestamp": None, "sentAt": None}
                    mapped = segment.map_message(message, tenant)
                else:
                    params = readers.snowplow_params(raw)
                    tenant = self.by_app_id.get(params.get("aid", ""))
                    if tenant is None or (self.tenant is not None and tenant != self.tenant):
                        yield Line(None, number, raw, Unmappable("unknown_app_id", f"app id {params.get('aid')!r} is not "
                                                                 "claimed by " + (f"tenant {self.tenant!r}" if self.tenant
                                                                                  else "any tenant (tenants.app_ids)")))
                        continue
                    mapped = snowplow.map_event(params, tenant)
            except Unmappable as exc:
                yield Line(self.tenant, number, raw, exc)
                continue
            if "event_id" not in mapped.event:
                mapped.event["event_id"] = str(uuid.uuid5(FOREIGN_ID_NAMESPACE, f"{tenant}\x00import\x00{source.path.name}\x00{number}"))
            yield Line(tenant, number, raw, mapped)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, chunk: list[Line], name: str, file_name: str) -> None:
        by_tenant: dict[str, list[Line]] = {}
        for line in chunk:
            by_tenant.setdefault(line.tenant or UNKNOWN_TENANT, []).append(line)
        frames = []
        for tenant, lines in by_tenant.items():
            frames.append(_record.encode(self._record(tenant, lines, file_name)))
        rows = segment_rows(name, frames, time.time_ns() // 1_000_000)
        raw, rejected = rows.tables()
        level = self.settings.delivery.zstd_level
        for (tenant, lvl, y, m, d), table in sorted(raw.items()):
            self.storage.put(layout.raw_key(tenant, lvl, date(y, m, d), name), file_bytes(table, level))
            self._remember(tenant, table)
            self.summary.imported += table.num_rows
        for (tenant, y, m, d), table in sorted(rejected.items()):
            self.storage.put(layout.rejected_key(tenant, date(y, m, d), name), file_bytes(table, level))
            self.summary.rejected.update(table.column("reason").to_pylist())

    def _record(self, tenant: str, lines: list[Line], file_name: str) -> SpoolRecord:
        now = time.time_ns() // 1_000_000
        rules = self.rules.get(tenant)
        kept: list[msgspec.Raw] = []
        rejected: list[Rejection] = []
        clients: dict[int, Client] = {}
        candidates: list[tuple[Line, bytes, Any]] = []
        for line in lines:
            where = f"{file_name}:{line.number}"
            if isinstance(line.mapped, Unmappable) or rules is None:
                problem = line.mapped if isinstance(line.mapped, Unmappable) else Unmappable("unknown_app_id", "no tenant")
                rejected.append(Rejection(line.number, problem.reason, f"{where}: {problem.error}", excerpt(line.raw)))
                continue
            data = _json.encode(line.mapped.event)
            ev, rej = rules.check_raw(line.number, data, {}, 0)
            if ev is None:
                reason, error = (rej.reason, rej.error) if rej else ("invalid_event", "not a valid event")
                rejected.append(Rejection(line.number, reason, f"{where}, mapped to the canonical event: {error}", excerpt(line.raw)))
                continue
            candidates.append((line, data, ev))
        present = self._present(tenant, [(str(ev.event_id), ev.client_ts) for _, _, ev in candidates])
        batch_ids: set[str] = set()
        for line, data, ev in candidates:
            event_id = str(ev.event_id)
            if event_id in present or event_id in batch_ids:
                self.summary.duplicate += 1
                continue
            batch_ids.add(event_id)
            if line.mapped.end_user:
                clients[len(kept)] = end_user(line.mapped.ip, line.mapped.user_agent, self.settings.collector.anonymize_ip,
                                              line.mapped.device)
            kept.append(msgspec.Raw(data))
        body = _json.encode(Accepted(kept)) if kept else b""
        # sent_at = received_at: no clock-skew correction, the archive's times are the events' times
        return SpoolRecord(tenant, now, now, None, None, user_agent(None), body, None if kept else [], rejected,
                           self.format, clients or None)

    # -- what is there -----------------------------------------------------------------------

    def _present(self, tenant: str, ids: list[tuple[str, int | None]]) -> set[str]:
        """Which of ``ids`` (event id, client_ts) the raw lake already holds."""
        days = {(ts or 0) // DAY_MS for _, ts in ids}
        found: set[str] = set()
        wanted = {event_id for event_id, _ in ids}
        for day in sorted(days):
            found |= wanted & self._day_ids(tenant, day)
        return found

    def _day_ids(self, tenant: str, day: int) -> set[str]:
        key = (tenant, day)
        if key in self.seen:
            self.seen.move_to_end(key)
            return self.seen[key]
        ids: set[str] = set()
        for level in LEVELS:
            for file_key in self.storage.list(layout.raw_prefix(tenant, level, EPOCH + timedelta(days=day))):
                if layout.parse_raw(file_key) is not None:
                    with self.storage.open_input(file_key) as source:  # the event_id column only, read in place
                        table = pq.read_table(source, columns=["event_id"])
                    ids.update(table.column("event_id").to_pylist())
        self.seen[key] = ids
        while len(self.seen) > CACHED_DAYS:
            self.seen.popitem(last=False)
        return ids

    def _remember(self, tenant: str, table: pa.Table) -> None:
        for event_id, ts in zip(table.column("event_id").to_pylist(), table.column("event_ts").to_pylist()):
            cached = self.seen.get((tenant, ts // DAY_MS))
            if cached is not None:
                cached.add(event_id)
