"""Uniform counters for every component, summed across processes for ``/metrics``.

Each process (collector workers, the lake deliverer) keeps its counters in memory and
writes a snapshot to ``<data>/run/metrics/<role>-<pid>.json`` about once a second; whoever
serves ``/metrics`` adds its live counters to the other processes' snapshots. Counters are
monotonic, so a snapshot left by a process that has exited still counts what it did.
"""

from __future__ import annotations

import bisect
import functools
import os
import time
from collections import defaultdict
from pathlib import Path

import msgspec

# Request latency buckets, seconds (Prometheus convention: upper bounds, +Inf implied).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HELP = {
    "beaconlake_events_received_total": ("counter", "Events of the batches the collector judged event by event: accepted + rejected."),
    "beaconlake_events_accepted_total": ("counter", "Events accepted and durable in the spool."),
    "beaconlake_source_events_accepted_total": ("counter", "Events accepted through a protocol adapter, by source "
                                                          "(segment, snowplow); included in beaconlake_events_accepted_total."),
    "beaconlake_events_rejected_total": ("counter", "Events rejected one by one (kept in lake/rejected), by reason."),
    "beaconlake_tenant_events_accepted_total": ("counter", "Events accepted and durable in the spool, by tenant."),
    "beaconlake_tenant_events_rejected_total": ("counter", "Rejections kept in lake/rejected (an event, or a "
                                                           "request refused whole), by tenant and reason."),
    "beaconlake_requests_total": ("counter", "HTTP requests to the event endpoint, by status code."),
    "beaconlake_requests_refused_total": ("counter", "Requests to the event endpoint answered without accepting any event, by reason."),
    "beaconlake_spooled_bytes_total": ("counter", "Bytes appended to spool segments."),
    "beaconlake_spool_undelivered_bytes": ("gauge", "Bytes in spool segments not yet delivered to the lake."),
    "beaconlake_events_delivered_total": ("counter", "Events written to the raw lake."),
    "beaconlake_rejections_delivered_total": ("counter", "Rejected events written to lake/rejected."),
    "beaconlake_segments_delivered_total": ("counter", "Spool segments delivered and deleted."),
    "beaconlake_delivery_failures_total": ("counter", "Failed attempts to deliver a spool segment (retried)."),
    "beaconlake_delivery_lag_seconds": ("gauge", "Age of the oldest undelivered spool segment, open or sealed."),
    "beaconlake_events_undeliverable_total": ("counter", "Accepted events (or spool records) that could not become "
                                              "lake rows, kept in lake/rejected as 'undeliverable'."),
    "beaconlake_events_suppressed_total": ("counter", "Events of forgotten people (the erasure suppression list) "
                                           "dropped from the spool before delivery."),
    "beaconlake_pii_scrubbed_total": ("counter", "Personal data taken out of events at the collector, by rule "
                                      "(email, card, phone, query_param, query_param_hash, prop_drop, prop_hash, "
                                      "context_drop, context_hash)."),
    "beaconlake_erasures_carried_out_total": ("counter", "Erasure requests carried out (docs/privacy.md)."),
    "beaconlake_segments_parked_total": ("counter", "Spool segments parked in spool/corrupt, by reason (corrupt, failing)."),
    "beaconlake_spool_parked_segments": ("gauge", "Spool segments in spool/corrupt, waiting for a human."),
    "beaconlake_spool_unreadable_bytes_total": ("counter", "Bytes of parked spool segments that could not be read."),
    "beaconlake_spool_orphans_sealed_total": ("counter", "Segments of dead spool writers sealed by the deliverer."),
    "beaconlake_spool_write_failures_total": ("counter", "Spool writes refused (disk budget) or failed (disk errors)."),
    "beaconlake_destination_failures_total": ("counter", "Best-effort destinations that failed on a batch."),
    "beaconlake_housekeeping_failures_total": (
        "counter", "Steps of a server worker's housekeeping tick that raised, by step (seal, pressure, realtime, "
                   "metrics); the next tick tries again."),
    "beaconlake_convert_quarantined_files_total": (
        "counter", "Raw files scheduled convert runs moved to the lake's quarantine/ as unreadable, by tenant."),
    "beaconlake_schedule_runs_failed_total": ("counter", "Scheduled convert + analyze runs that failed, by stage."),
    "beaconlake_schedule_runs_lease_lost_total": ("counter", "Runs stopped before a commit because this node lost the "
                                                  "run lease to another (fencing), by stage."),
    "beaconlake_request_duration_seconds": ("histogram", "Event endpoint latency, from request to response."),
    "beaconlake_http_connections_closed_total": (
        "counter", "Connections the HTTP server closed on its own, by reason: header_timeout, keepalive_idle, "
                   "body_timeout, send_timeout, drain_timeout, drain_limit, shed (longest idle, at the connection cap), refused "
                   "(at the cap, none idle: 503), shutdown."),
    "beaconlake_http_refused_total": (
        "counter", "Requests the HTTP server answered itself before any route, by status code (400 malformed, "
                   "408 too slow, 411 no length, 413 too large, 417, 431 headers too large, 503 at the cap)."),
    "beaconlake_http_worker_restarts_total": ("counter", "HTTP server worker processes that exited and were restarted."),
}

Labels = tuple[tuple[str, str], ...]


class Snapshot(msgspec.Struct):
    counters: dict[str, dict[str, float]]  # metric -> encoded labels -> value
    gauges: dict[str, dict[str, float]]
    histogram_buckets: list[int]
    histogram_sum: float
    histogram_count: int
    written_at: float


@functools.lru_cache(maxsize=1024)
def _encode(labels: Labels) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels)


class Metrics:
    def __init__(self, run_dir: Path | None = None, role: str = "proc") -> None:
        self.counters: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[str, float]] = defaultdict(dict)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.dir = run_dir / "metrics" if run_dir else None
        self.path = self.dir / f"{role}-{os.getpid()}.json" if self.dir else None
        self._enc = msgspec.json.Encoder()

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        self.counters[name][_encode(tuple(sorted(labels.items()))) if labels else ""] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][_encode(tuple(sorted(labels.items())))] = value

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get(name, {}).get(_encode(tuple(sorted(labels.items()))), 0.0)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            counters={k: dict(v) for k, v in self.counters.items()},
            gauges={k: dict(v) for k, v in self.gauges.items()},
            histogram_buckets=list(self.buckets),
            histogram_sum=self.latency_sum,
            histogram_count=self.latency_count,
            written_at=time.time(),
        )

    def write_snapshot(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(self._enc.encode(self.snapshot()))
        os.replace(tmp, self.path)

    def gather(self) -> Snapshot:
        """This process's live counters plus every other process's last snapshot."""
        total = self.snapshot()
        if self.dir is None or not self.dir.is_dir():
            return total
        dec = msgspec.json.Decoder(Snapshot)
        for path in self.dir.glob("*.json"):
            if path == self.path:
                continue
            try:
                other = dec.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue  # being replaced right now; the next scrape sees it
            for name, series in other.counters.items():
                mine = total.counters.setdefault(name, {})
                for labels, v in series.items():
                    mine[labels] = mine.get(labels, 0.0) + v
            for name, series in other.gauges.items():
                mine = total.gauges.setdefault(name, {})
                for labels, v in series.items():
                    # a gauge this process sets is live; a snapshot's may be a second old, or be the
                    # last word of a process that is gone
                    mine.setdefault(labels, v)
            total.histogram_buckets = [a + b for a, b in zip(total.histogram_buckets, other.histogram_buckets)]
            total.histogram_sum += other.histogram_sum
            total.histogram_count += other.histogram_count
        return total

    def render(self) -> str:
        """Prometheus text exposition format."""
        snap = self.gather()
        lines: list[str] = []
        for name, (kind, text) in HELP.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "histogram":
                running = 0
                for bound, n in zip((*LATENCY_BUCKETS, "+Inf"), snap.histogram_buckets):
                    running += n
                    lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
                lines.append(f"{name}_sum {snap.histogram_sum:.6f}")
                lines.append(f"{name}_count {snap.histogram_count}")
                continue
            series = (snap.counters if kind == "counter" else snap.gauges).get(name, {})
            if not series and kind == "counter":
                lines.append(f"{name} 0")
            for labels, v in sorted(series.items()):
                lines.append(f"{name}{{{labels}}} {v:g}" if labels else f"{name} {v:g}")
        return "\n".join(lines) + "\n"
