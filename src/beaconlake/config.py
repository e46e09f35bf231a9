"""Settings: one TOML file, environment overrides, resolved once at start-up.

``BEACONLAKE__SECTION__KEY=value`` overrides ``[section] key``; the value is read as a TOML
value when it parses as one (``8081``, ``true``, ``["a", "b"]``) and as a plain string
otherwise. Relative paths resolve against the config file's folder, so a deployment
folder can be moved whole.

This module assembles the sections; each is defined by what it configures (a stage's
``settings.py``, a backend seam's ``backends/<seam>/settings.py``), and those import only the core,
so reading the config imports no stage or backend logic. The server's and the tenants' sections,
which every part reads, are defined here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from beaconlake.analyze.settings import AnalyzeSettings
from beaconlake.backends.catalog.settings import (
    CatalogSettings,
    GlueCatalogSettings,
    RestCatalogSettings,
    SqlCatalogSettings,
)
from beaconlake.backends.coordination.settings import CoordinationSettings, LocalCoordinationSettings
from beaconlake.backends.counters.settings import (
    CountersSettings,
    MemoryCountersSettings,
    RedisCountersSettings,
)
from beaconlake.backends.engine.settings import (
    DuckDBEngineSettings,
    EngineSettings,
    SparkEngineSettings,
)
from beaconlake.backends.highlevel.settings import (
    HighLevelSettings,
    PostgresHighLevelSettings,
    SqliteHighLevelSettings,
)
from beaconlake.backends.profiles.settings import (
    PostgresProfilesSettings,
    ProfilesSettings,
    SqliteProfilesSettings,
)
from beaconlake.backends.storage.settings import (
    AzureStorageSettings,
    LocalStorageSettings,
    S3StorageSettings,
    StorageSettings,
)
from beaconlake.convert.settings import ConvertSettings
from beaconlake.errors import ConfigError
from beaconlake.ingest.settings import PATH_PREFIX, CollectorSettings, DeliverySettings, SpoolSettings
from beaconlake.origins import canonical_origin
from beaconlake.privacy.settings import PiiSettings, PrivacySettings, RetentionSettings
from beaconlake.realtime.settings import (
    Predicate,
    RealtimeSettings,
    SequenceDefinition,
    SequenceNegation,
    SequenceStep,
)
from beaconlake.schedule.settings import ScheduleSettings
from beaconlake.sections import Key, Port, PositiveFloat, PositiveInt, Section, TenantId, resolve, type_of
from beaconlake.types import Level, Name

log = logging.getLogger(__name__)

ENV_PREFIX = "BEACONLAKE__"
DEFAULT_CONFIG_NAME = "beaconlake.toml"


class NodeSettings(Section):
    """This node of a deployment: its name among the others and what it runs."""

    # "" = this machine's host name. Unique per node: heartbeats and leases are keyed by it.
    id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    # all: one machine runs everything. collector: HTTP ingest, spool and lake delivery only.
    # jobs: scheduler, convert, analyze, sequence detection, retention (one active at a time).
    role: Literal["all", "collector", "jobs"] = "all"

    @property
    def name(self) -> str:
        return self.id or socket.gethostname()

    @property
    def runs_jobs(self) -> bool:
        return self.role in ("all", "jobs")

    @property
    def runs_collector(self) -> bool:
        return self.role in ("all", "collector")


class ServerSettings(Section):
    """The HTTP server of ``beaconlake up`` and how it governs connections (serve/http)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    workers: PositiveInt = 1
    # Deprecated: means "the direct peer is a trusted proxy" (the right-most X-Forwarded-For
    # entry is the client); list the proxies in trusted_proxies instead.
    trust_forwarded_for: bool = False
    # Secret: server-wide views (the Pipeline view of every tenant) and runs for every tenant.
    # It reads no tenant's data. None: no server-wide access over HTTP at all.
    admin_key: Key | None = None
    # Addresses or CIDRs of your own proxies; X-Forwarded-For is read through them, right to left.
    trusted_proxies: list[str] = []
    # An idle keep-alive connection is closed after this long without a new request.
    keepalive_idle_secs: PositiveFloat = 5.0
    # From a connection's start, or the end of the previous answer, to the end of a request's headers.
    header_read_timeout_secs: PositiveFloat = 10.0
    # From the end of a request's headers to the end of its body (answered 408 past it).
    body_read_timeout_secs: PositiveFloat = 20.0
    # Request line plus headers.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 16 * 1024
    # Over it, the longest-idle connection is shed; if none is idle, the new one gets a 503.
    max_connections_per_worker: Annotated[int, msgspec.Meta(ge=16)] = 10_000
    # After an early answer (413...), how much of the rest of the body is read and dropped, and
    # for how long, so the client reads the answer instead of a reset; then the connection closes.
    max_drain_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024
    drain_timeout_secs: PositiveFloat = 10.0
    # An answer the client leaves unread this long (our send buffer stays full) ends the connection.
    send_timeout_secs: PositiveFloat = 20.0
    # On SIGTERM, how long requests in flight may take to finish before they are cut.
    shutdown_timeout_secs: PositiveFloat = 10.0

    def __post_init__(self) -> None:
        if self.keepalive_idle_secs > self.header_read_timeout_secs:
            raise ValueError(
                f"server.keepalive_idle_secs={self.keepalive_idle_secs:g} is over server.header_read_timeout_secs="
                f"{self.header_read_timeout_secs:g}, which also bounds the wait for the next request; "
                "raise header_read_timeout_secs too"
            )


class SchemaRef(Section):
    level: Level
    name: Name
    # Either an inline JSON Schema or a path (relative to the config file) to one.
    schema: dict[str, Any] | None = None
    file: str | None = None


class TrackerSettings(Section):
    """Sent to the browser by ``GET /v1/config``; the script tag can narrow but not widen them."""

    respect_do_not_track: bool = True
    capture_low: bool = True
    pointer_interval_ms: Annotated[int, msgspec.Meta(ge=50)] = 100
    max_low_events_per_page: Annotated[int, msgspec.Meta(ge=0)] = 1000
    capture_form_values: bool = False
    search_params: list[str] = msgspec.field(default_factory=lambda: ["q", "s", "search", "query"])


AppId = Annotated[str, msgspec.Meta(max_length=128)]  # checked by _check: APP_ID
APP_ID = r"[A-Za-z0-9_.:-]+"


class TenantSettings(Section):
    id: TenantId
    write_key: Key  # public: in the site's pages; it can only write
    read_key: Key  # secret: reads this tenant's data
    # Secret: what the read key can, plus this tenant's admin actions (a convert + analyze run
    # now). None: those actions only from the command line.
    admin_key: Key | None = None
    allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    schemas: list[SchemaRef] = []
    sequences: list[SequenceDefinition] = []
    tracker: TrackerSettings = msgspec.field(default_factory=TrackerSettings)
    # Snowplow app ids (a tracker's appId, ``aid``) whose events are this tenant's; the write
    # key works as an app id without being listed. Public, like the write key.
    app_ids: list[AppId] = []
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    pii: PiiSettings = msgspec.field(default_factory=PiiSettings)


class Settings(Section):
    data_dir: str = "data"
    node: NodeSettings = msgspec.field(default_factory=NodeSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    collector: CollectorSettings = msgspec.field(default_factory=CollectorSettings)
    spool: SpoolSettings = msgspec.field(default_factory=SpoolSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    storage: StorageSettings = msgspec.field(default_factory=LocalStorageSettings)
    counters: CountersSettings = msgspec.field(default_factory=MemoryCountersSettings)
    highlevel: HighLevelSettings = msgspec.field(default_factory=SqliteHighLevelSettings)
    realtime: RealtimeSettings = msgspec.field(default_factory=RealtimeSettings)
    convert: ConvertSettings = msgspec.field(default_factory=ConvertSettings)
    engine: EngineSettings = msgspec.field(default_factory=DuckDBEngineSettings)
    catalog: CatalogSettings = msgspec.field(default_factory=SqlCatalogSettings)
    analyze: AnalyzeSettings = msgspec.field(default_factory=AnalyzeSettings)
    profiles: ProfilesSettings = msgspec.field(default_factory=SqliteProfilesSettings)
    schedule: ScheduleSettings = msgspec.field(default_factory=ScheduleSettings)
    coordination: CoordinationSettings = msgspec.field(default_factory=LocalCoordinationSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)
    tenants: list[TenantSettings] = []
    # Set by load(): the folder that relative paths resolve against.
    base_dir: str = ""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def spool_path(self) -> Path:
        return self.data_path / "spool"

    @property
    def run_path(self) -> Path:
        """Process-local state: metrics snapshots, pid files."""
        return self.data_path / "run"

    @property
    def realtime_path(self) -> Path:
        """Realtime state: counter partials, detector checkpoint."""
        return self.data_path / "realtime"

    def backend_sections(self) -> tuple[Section, ...]:
        """The sections that pick a backend by ``type``."""
        return (self.storage, self.counters, self.highlevel, self.engine, self.catalog, self.profiles,
                self.coordination)

    def tenant_by_write_key(self) -> dict[str, TenantSettings]:
        return {t.write_key: t for t in self.tenants}


def _apply_env(raw: dict[str, Any], environ: dict[str, str]) -> None:
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value: Any = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = _tenant_by_id(node, part, key)
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"{key}: {'.'.join(path[: i + 1])} is a value, not a section")
        if isinstance(node, list):
            raise ConfigError(f"{key}: name a tenant id after TENANTS, e.g. BEACONLAKE__TENANTS__DEMO__WRITE_KEY")
        node[path[-1]] = value


def _tenant_by_id(tenants: list[Any], tenant_id: str, key: str) -> dict[str, Any]:
    for t in tenants:
        if isinstance(t, dict) and str(t.get("id", "")).lower() == tenant_id:
            return t
    raise ConfigError(f"{key}: no tenant with id {tenant_id!r} in the config")


def _check_server(server: ServerSettings) -> None:
    for i, entry in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"server.trusted_proxies[{i}]: {entry!r} is not an IP address or CIDR; "
                "write e.g. \"10.0.0.7\", \"10.0.0.0/8\" or \"2001:db8::/32\""
            ) from None
    if server.trust_forwarded_for:
        log.warning(
            "server.trust_forwarded_for is deprecated: it now trusts only the direct peer, so the client "
            "address is the right-most X-Forwarded-For entry; list your proxies in server.trusted_proxies"
        )


def check_node(settings: Settings, where: str = "node.role") -> None:
    """A node of a deployment of several (role collector or jobs) needs a coordination service
    every node shares: ``local`` coordination is one machine's files, so two jobs nodes would
    both be active and run convert over each other, and a collector's heartbeats and run
    requests would reach nobody. An error rather than a warning: the failure it prevents is
    duplicated tables, found long after start-up."""
    role, kind = settings.node.role, type_of(settings.coordination)
    if role != "all" and kind == "local":
        raise ConfigError(
            f"{where} = {role!r} makes this node one of several, but coordination.type = {kind!r} is this machine's "
            "own files and cannot be shared: set coordination.type = \"postgres\" (and coordination.url) on every node, "
            "or run one machine with node.role = \"all\"")


def _check(settings: Settings) -> None:
    _check_server(settings.server)
    check_node(settings)
    _check_sequences_source(settings)
    prefix = settings.collector.snowplow_path_prefix
    if not re.fullmatch(PATH_PREFIX, prefix):
        raise ConfigError(f"collector.snowplow_path_prefix: {prefix!r} is not a path prefix; write it as /name[/name...] "
                          "with no trailing slash (letters, digits, . _ ~ -), e.g. \"/sp\", or \"\" for none")
    # One key, one power: a key used twice would let one of its holders act as the other.
    seen: dict[str, str] = {}
    if settings.server.admin_key is not None:
        seen[settings.server.admin_key] = "server.admin_key"
    ids: set[str] = set()
    app_ids = {t.write_key: (t.id, f"tenant {t.id!r}'s write key") for t in settings.tenants}
    for t in settings.tenants:
        if t.id in ids:
            raise ConfigError(f"tenants: id {t.id!r} is declared twice")
        ids.add(t.id)
        for kind, key in (("write_key", t.write_key), ("read_key", t.read_key), ("admin_key", t.admin_key)):
            if key is None:
                continue
            if key in seen:
                raise ConfigError(f"tenants.{t.id}.{kind}: the same key is already used as {seen[key]}; "
                                  "every key must be different (beaconlake init makes fresh ones)")
            seen[key] = f"tenants.{t.id}.{kind}"
        for app_id in t.app_ids:
            if not re.fullmatch(APP_ID, app_id):
                raise ConfigError(f"tenants.{t.id}.app_ids: {app_id!r} is not an app id; use the tracker's appId as it "
                                  "sends it: letters, digits and _ . : - only")
            # an app id names one tenant: a second claim, or another tenant's write key, would split its events
            owner, what = app_ids.get(app_id, (t.id, ""))
            if owner != t.id:
                raise ConfigError(f"tenants.{t.id}.app_ids: {app_id!r} is already {what}; an app id can name only one tenant")
            app_ids[app_id] = (t.id, f"claimed by tenant {t.id!r}")
        for origin in t.allowed_origins:
            if origin != "*" and canonical_origin(origin) is None:
                raise ConfigError(
                    f"tenants.{t.id}.allowed_origins: {origin!r} is not an origin; "
                    "write it as http(s)://host[:port] with no path, e.g. https://shop.example, or '*'"
                )
        _check_sequences(t)
        for ref in t.schemas:
            if (ref.schema is None) == (ref.file is None):
                raise ConfigError(
                    f"tenants.{t.id}.schemas ({ref.level}, {ref.name}): give exactly one of 'schema' or 'file'"
                )


def _check_sequences_source(settings: Settings) -> None:
    """Per-deliverer detection sees one node's events: several nodes must share one detector."""
    rt = settings.realtime
    if not rt.enabled or rt.sequences_from != "spool" or not any(t.sequences for t in settings.tenants):
        return
    coordination = type_of(settings.coordination)
    several = settings.node.role != "all" or coordination != "local"
    if several:
        raise ConfigError(
            f"realtime.sequences_from: \"spool\" detects sequences in each node's deliverer over that node's "
            f"events only, which misses sequences whose events reach different nodes (node.role = "
            f"{settings.node.role!r}, coordination.type = {coordination!r}: several nodes); set "
            "realtime.sequences_from = \"lake\" (one detector on the active jobs node, over every node's raw files)")


def _check_sequences(t: TenantSettings) -> None:
    """The predicates' values must suit their ops, or a definition could never match."""
    names: set[str] = set()
    for q in t.sequences:
        where = f"tenants.{t.id}.sequences.{q.name}"
        if q.name in names:
            raise ConfigError(f"{where}: the name is defined twice")
        names.add(q.name)
        steps = [(f"steps[{i}]", s.where) for i, s in enumerate(q.steps)]
        if q.not_followed_by is not None:
            steps.append(("not_followed_by", q.not_followed_by.where))
        for label, preds in steps:
            for p in preds:
                ok = {
                    "in": isinstance(p.value, list),
                    "prefix": isinstance(p.value, str),
                    "exists": p.value is None,
                }.get(p.op, p.value is not None)
                if p.op in ("gt", "gte", "lt", "lte"):
                    ok = isinstance(p.value, (int, float)) and not isinstance(p.value, bool)
                if not ok:
                    wants = {"in": "a list", "prefix": "a string", "exists": "no value"}.get(
                        p.op, "a number" if p.op in ("gt", "gte", "lt", "lte") else "a value"
                    )
                    raise ConfigError(f"{where}.{label}: op {p.op!r} on {p.field!r} needs {wants}, got {p.value!r}")


def parse(raw: dict[str, Any], base_dir: Path, environ: dict[str, str] | None = None) -> Settings:
    """Typed settings from a TOML document (already parsed) and the environment."""
    _apply_env(raw, dict(os.environ) if environ is None else environ)
    try:
        settings = msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    settings.base_dir = base = str(base_dir)
    settings.data_dir = resolve(base, settings.data_dir)
    for section in settings.backend_sections():
        section.resolve_paths(base, settings.data_dir)
    for t in settings.tenants:
        for ref in t.schemas:
            if ref.file is not None:
                ref.file = resolve(base, ref.file)
    _check(settings)
    return settings


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read ``path`` (default ``./beaconlake.toml``) and resolve it into Settings."""
    path = Path(path or DEFAULT_CONFIG_NAME).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found; run `beaconlake init` to write one") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, path.resolve().parent, environ)


# Every section's type, importable from here as before the sections moved next to what they configure.
__all__ = [
    "DEFAULT_CONFIG_NAME", "ENV_PREFIX", "AnalyzeSettings", "CatalogSettings", "CollectorSettings", "ConvertSettings",
    "CountersSettings", "DeliverySettings", "DuckDBEngineSettings", "EngineSettings", "GlueCatalogSettings",
    "AzureStorageSettings", "HighLevelSettings", "Key", "Level", "LocalStorageSettings", "MemoryCountersSettings", "Name", "Port",
    "PositiveFloat", "PositiveInt", "PostgresHighLevelSettings", "PostgresProfilesSettings", "Predicate",
    "ProfilesSettings", "RealtimeSettings", "RedisCountersSettings", "RestCatalogSettings", "S3StorageSettings",
    "ScheduleSettings", "SchemaRef", "SequenceDefinition", "SequenceNegation", "SequenceStep", "ServerSettings",
    "Settings", "SparkEngineSettings", "SpoolSettings", "SqlCatalogSettings", "SqliteHighLevelSettings",
    "SqliteProfilesSettings", "StorageSettings", "TenantId", "TenantSettings", "TrackerSettings", "load", "parse",
]
