"""``beaconlake analyze``: features, segments, traits and propensity into the profile store.

Per tenant, a run finds the people with events the collector received since the last run (the
watermark kept in the profile store), computes their features with SQL over the convert tables,
and updates their profiles; nobody else's profile is touched. The segment model is fitted on the
first run, on ``--full``, and when the tenant has grown by ``analyze.refit_growth`` since the
fit: a refit relabels everyone, so then every profile is updated. Between refits, changed people
are assigned to the nearest existing segment. The propensity model is retrained every run (it
needs every person's history at two cut-offs anyway) and scores the people being updated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from beaconlake.analyze import propensity, segments
from beaconlake.analyze.features import (
    DAY_MS,
    NUMERIC,
    TEXT,
    Query,
    changed_people,
    tenant_clock,
)
from beaconlake.analyze.traits import traits
from beaconlake.backends.engine import Engine, open_engine
from beaconlake.backends.profiles import ProfileStore, Row, open_profiles
from beaconlake.config import Settings
from beaconlake.convert.catalog import TableStore
from beaconlake.convert.run import open_store
from beaconlake.convert.tables import ALL as TABLES
from beaconlake.errors import ConfigError
from beaconlake.units import iso

log = logging.getLogger(__name__)
WATERMARK = "watermark_received_ms"
MODEL = "segment_model"


@dataclass
class TenantSummary:
    tenant: str
    people: int = 0  # people with a profile after the run
    updated: int = 0  # profiles written by the run
    removed: int = 0  # anonymous profiles merged into their user's
    refit: bool = False
    segments: int | None = None
    silhouette: float | None = None
    auc: float | None = None
    propensity: str = ""  # how the propensity model was trained, or why there is none
    seconds: float = 0.0


@dataclass
class AnalyzeSummary:
    tenants: list[TenantSummary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def updated(self) -> int:
        return sum(t.updated for t in self.tenants)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


def connect(engine: Engine, store: TableStore) -> list[str]:
    """Register the convert tables in ``engine`` by name (empty ones for tables not made yet, so
    the SQL runs before the first convert); returns the names found in the catalog."""
    names = []
    existing = _tables(store)
    for tdef in TABLES:
        if tdef.name not in existing:
            engine.register_arrow(tdef.name, tdef.arrow.empty_table())
            continue
        store.register(engine, tdef.name)
        names.append(tdef.name)
    return names


def _tables(store: TableStore) -> set[str]:
    from pyiceberg.exceptions import NoSuchNamespaceError

    try:
        return {ident[-1] for ident in store.catalog.list_tables(store.namespace)}
    except NoSuchNamespaceError:  # nothing converted yet
        return set()


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Decimals (DuckDB's sums) as floats, numbers rounded for the document."""
    out = {}
    for k, v in row.items():
        if v is not None and k in NUMERIC:
            v = float(v)
            v = int(v) if v.is_integer() and abs(v) < 2**53 else round(v, 4)
        out[k] = v
    return out


def daypart(f: dict[str, Any]) -> str | None:
    shares = {p: f.get(f"{p}_share") or 0.0 for p in ("morning", "afternoon", "evening", "night")}
    best = max(shares, key=shares.get)
    return best if shares[best] > 0 else None


class TenantRun:
    def __init__(self, settings: Settings, engine: Engine, profiles: ProfileStore, tenant: str, full: bool) -> None:
        self.s, self.engine, self.profiles, self.tenant, self.full = settings.analyze, engine, profiles, tenant, full
        self.goal = self.s.goal(tenant)
        self.summary = TenantSummary(tenant)

    def query(self, as_of_ms: int, persons: str | None = None) -> Query:
        return Query(self.engine.dialect, self.tenant, self.goal, self.s, as_of_ms, persons)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.engine.query(sql).to_pylist()

    def run(self) -> TenantSummary:
        started = time.monotonic()
        clock = self.rows(tenant_clock(self.engine.dialect, self.tenant))[0]
        if clock["as_of"] is None:
            log.info("analyze %s: no converted events yet", self.tenant)
            return self.summary
        as_of = int(clock["as_of"]) + 1  # everything up to the newest event counts
        watermark = None if self.full else self.profiles.get_meta(self.tenant, WATERMARK)
        persons = None
        if watermark is not None:
            changed = [r["person_id"] for r in self.rows(changed_people(self.engine.dialect, self.tenant, watermark))]
            if not changed:
                log.info("analyze %s: no new events since the last run", self.tenant)
                self.summary.people = self.profiles.count(self.tenant)
                return self.summary
            self.engine.register_arrow("analyze_persons", pa.table({"person_id": pa.array(changed, pa.string())}))
            persons = "analyze_persons"

        rows = [_plain(r) for r in self.rows(self.query(as_of, persons).features())]
        model = None if self.full else self.profiles.get_meta(self.tenant, MODEL)
        population = len(rows) if persons is None else len({*self.profiles.person_ids(self.tenant), *(r["person_id"] for r in rows)})
        if model is None or population > model["fitted_people"] * (1 + self.s.refit_growth):
            if persons is not None:  # a refit relabels everyone: everyone is updated
                rows = [_plain(r) for r in self.rows(self.query(as_of).features())]
                persons = None
            model = self.fit_segments(rows)
        labels = segments.assign(model, rows) if model else [None] * len(rows)

        prop = self.train_propensity(as_of)
        scores = prop.score(rows)
        self.summary.auc, self.summary.propensity = prop.auc, prop.reason
        if prop.auc is not None:
            log.info("analyze %s: propensity of %s within %d days: ROC AUC %.3f on held-out time "
                     "(%d people trained, %d held out, base rate %.3f)", self.tenant, "/".join(self.goal.events),
                     self.goal.horizon_days, prop.auc, prop.train_rows, prop.test_rows, prop.base_rate)
        else:
            log.info("analyze %s: no propensity model: %s", self.tenant, prop.reason)

        docs = self.documents(rows, labels, scores, model, as_of, persons)
        self.profiles.upsert(docs)
        merged = sorted({a for d in docs if d.doc["user_id"] for a in d.doc["anonymous_ids"]} - {d.person_id for d in docs})
        removed = self.profiles.delete(self.tenant, merged)
        self.profiles.set_meta(self.tenant, WATERMARK, int(clock["received"]))
        self.summary.updated, self.summary.removed = len(docs), removed
        self.summary.people = self.profiles.count(self.tenant)
        self.summary.seconds = round(time.monotonic() - started, 3)
        log.info("analyze %s: %d profile(s) updated, %d merged into their user's, %d in all, in %.1f s",
                 self.tenant, len(docs), removed, self.summary.people, self.summary.seconds)
        return self.summary

    def fit_segments(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        self.summary.refit = True
        why = None
        if len(rows) < self.s.min_people:
            why = f"{len(rows)} people, fewer than analyze.min_people = {self.s.min_people}"
        else:
            try:
                model = segments.fit(rows, self.s.max_segments)
            except segments.TooUniform as e:  # a young site whose visitors all did the same: profiles, no segments
                why = str(e)
        if why is not None:
            log.info("analyze %s: %s: no segments", self.tenant, why)
            self.profiles.set_meta(self.tenant, MODEL, None)
            self.profiles.set_segments(self.tenant, [])
            return None
        self.profiles.set_meta(self.tenant, MODEL, model)
        self.profiles.set_segments(self.tenant, model["segments"])
        self.summary.segments, self.summary.silhouette = model["k"], model["silhouette"]
        log.info("analyze %s: %d segments (silhouette %.3f): %s", self.tenant, model["k"], model["silhouette"],
                 "; ".join(f"{s['id']} {s['label']}" for s in model["segments"]))
        return model

    def train_propensity(self, as_of: int) -> propensity.Propensity:
        horizon = self.goal.horizon_days * DAY_MS
        cuts = (as_of - 2 * horizon, as_of - horizon)
        snapshots = []
        for cut in cuts:
            rows = [_plain(r) for r in self.rows(self.query(cut).features())]
            hits = {r["person_id"] for r in self.rows(self.query(cut).goal_people(cut, cut + horizon))}
            snapshots.append((rows, [int(r["person_id"] in hits) for r in rows]))
        (train_rows, train_labels), (test_rows, test_labels) = snapshots
        return propensity.train(train_rows, train_labels, test_rows, test_labels, self.s.min_people)

    def documents(self, rows, labels, scores, model, as_of: int, persons: str | None) -> list[Row]:
        q = self.query(as_of, persons)
        interests: dict[str, list[dict]] = {}
        for r in self.rows(q.interests()):
            mine = interests.setdefault(r["person_id"], [])
            if len(mine) < self.s.interests_top:
                mine.append({"category": r["category"], "weight": round(float(r["weight"]), 4)})
        ids: dict[str, tuple[str | None, list[str]]] = {}
        for r in self.rows(q.identity()):
            user, anons = ids.setdefault(r["person_id"], (r["user_id"], []))
            anons.append(r["anonymous_id"])
        high: dict[str, dict[str, int]] = {}
        for r in self.rows(q.high_level()):
            high.setdefault(r["person_id"], {})[r["name"]] = int(r["n"])
        seg_by_index = model["segments"] if model else []
        now = int(time.time() * 1000)
        out = []
        for f, label, p in zip(rows, labels, scores, strict=True):
            pid = f["person_id"]
            user, anons = ids.get(pid, (None, []))
            features = {k: f[k] for k in (*NUMERIC, *TEXT) if k not in ("first_seen", "last_seen")}
            features["main_daypart"] = daypart(f)
            seg = seg_by_index[label] if label is not None else None
            doc = {
                "person_id": pid, "tenant": self.tenant, "user_id": user, "anonymous_ids": anons,
                "first_seen": _iso(f["first_seen"]), "last_seen": _iso(f["last_seen"]),
                "features": features, "traits": traits(f),
                "segment": {"id": seg["id"], "label": seg["label"]} if seg else None,
                "interests": interests.get(pid, []),
                "propensity": None if p is None else {"goal": ",".join(self.goal.events), "days": self.goal.horizon_days,
                                                      "probability": p},
                "high_level": high.get(pid, {}), "updated_at": iso(now),
                "first_seen_ms": f["first_seen"], "last_seen_ms": f["last_seen"], "updated_at_ms": now,
            }
            out.append(Row(self.tenant, pid, doc))
        return out


def analyze(settings: Settings, *, tenants: set[str] | list[str] | None = None, progress: bool = False,
            full: bool = False) -> AnalyzeSummary:
    """Update the profiles of people with new events (everyone's with ``full``), tenant by tenant.

    ``tenants``: only these (all configured tenants when None). ``progress``: a line per tenant on
    stderr as it finishes (the log has the details either way)."""
    import sys

    started = time.monotonic()
    wanted = [t.id for t in settings.tenants if tenants is None or t.id in set(tenants)]
    unknown = set(tenants or ()) - {t.id for t in settings.tenants}
    if unknown:
        raise ConfigError(f"unknown tenant(s) {', '.join(sorted(unknown))}; the config has {', '.join(t.id for t in settings.tenants)}")
    summary = AnalyzeSummary()
    store = open_store(settings)
    engine = open_engine(settings.engine, settings.data_dir, storage=settings.storage)
    profiles = open_profiles(settings.profiles)
    try:
        connect(engine, store)
        for tenant in wanted:
            result = TenantRun(settings, engine, profiles, tenant, full).run()
            summary.tenants.append(result)
            if progress:
                print(f"{tenant}: {result.updated} profile(s) updated, {result.people} in all"
                      + (f", {result.segments} segments" if result.segments else "")
                      + (f", propensity AUC {result.auc:.3f}" if result.auc is not None else ""), file=sys.stderr)
    finally:
        profiles.close()
        engine.close()
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
