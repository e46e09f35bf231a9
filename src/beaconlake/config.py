"""Settings: one TOML file, environment overrides, resolved once at start-up.

``BEACONLAKE__SECTION__KEY=value`` overrides ``[section] key``; the value is read as a TOML
value when it parses as one (``8081``, ``true``, ``["a", "b"]``) and as a plain string
otherwise. Relative paths resolve against the config file's folder, so a deployment
folder can be moved whole.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from beaconlake.analyze.settings import (
    AnalyzeSettings,
    ProfilesSettings,
    SqliteProfilesSettings,
)
from beaconlake.convert.settings import (
    CatalogSettings,
    ConvertSettings,
    DuckDBEngineSettings,
    EngineSettings,
    SqlCatalogSettings,
)
from beaconlake.errors import ConfigError
from beaconlake.ingest.collector.origin import canonical_origin
from beaconlake.schedule.settings import ScheduleSettings
from beaconlake.types import MAX_JSON_DEPTH_CEILING, Level, Name

log = logging.getLogger(__name__)

ENV_PREFIX = "BEACONLAKE__"
DEFAULT_CONFIG_NAME = "beaconlake.toml"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Key = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerSettings(_Section):
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


class CollectorSettings(_Section):
    max_body_bytes: PositiveInt = 1024 * 1024
    max_batch_events: PositiveInt = 500
    max_props_bytes: PositiveInt = 16 * 1024
    # Levels of nesting in an event's props or context ({"a": {"b": 1}} is 2). Capped so that
    # every accepted event decodes within Python's recursion limit downstream.
    max_json_depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_JSON_DEPTH_CEILING)] = 32
    anonymize_ip: bool = True


class SpoolSettings(_Section):
    durability: Literal["fsync", "os"] = "fsync"
    max_segment_bytes: PositiveInt = 64 * 1024 * 1024
    flush_interval_secs: PositiveFloat = 10.0
    max_undelivered_bytes: PositiveInt = 1024 * 1024 * 1024
    min_free_disk_bytes: Annotated[int, msgspec.Meta(ge=0)] = 512 * 1024 * 1024
    retry_after_secs: PositiveInt = 5


class DeliverySettings(_Section):
    poll_interval_secs: PositiveFloat = 0.5
    max_retry_secs: PositiveFloat = 60.0
    # On shutdown, how long to keep retrying delivery of what the spool holds before exiting.
    drain_timeout_secs: PositiveFloat = 60.0
    zstd_level: Annotated[int, msgspec.Meta(ge=1, le=22)] = 3


class LocalStorageSettings(_Section, tag="local", tag_field="type"):
    # Empty means "<data_dir>/lake".
    root: str = ""


class S3StorageSettings(_Section, tag="s3", tag_field="type"):
    bucket: Annotated[str, msgspec.Meta(min_length=3, max_length=63)]
    prefix: str = "lake"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # Connect and read timeout of each request. boto3's own is 60 s, retried: a hung S3 held
    # lake delivery for minutes before a failure was counted; now at most 2 x this.
    timeout_secs: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0


StorageSettings = LocalStorageSettings | S3StorageSettings


class MemoryCountersSettings(_Section, tag="memory", tag_field="type"):
    """Each process keeps its partials in memory and writes them under ``<data_dir>/realtime/``."""

    partials_interval_secs: PositiveFloat = 1.0


class RedisCountersSettings(_Section, tag="redis", tag_field="type"):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] = "bl"


CountersSettings = MemoryCountersSettings | RedisCountersSettings


class SqliteHighLevelSettings(_Section, tag="sqlite", tag_field="type"):
    # Empty means "<data_dir>/highlevel.db".
    path: str = ""


class PostgresHighLevelSettings(_Section, tag="postgres", tag_field="type"):
    dsn: Annotated[str, msgspec.Meta(min_length=1)]


HighLevelSettings = SqliteHighLevelSettings | PostgresHighLevelSettings


class RealtimeSettings(_Section):
    """Mid-level statistics in the collector workers; sequence detection in the deliverer."""

    enabled: bool = True
    # A minute window [s, s+60) closes at s + 60 + allowed_lateness_secs on the collector's clock.
    allowed_lateness_secs: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    retention_hours: PositiveInt = 48
    # Events whose page path is a statistics group (besides the all-paths total).
    path_events: list[Name] = msgspec.field(default_factory=lambda: ["page_view", "page_leave"])
    max_paths_per_window: PositiveInt = 1000
    max_numeric_props: PositiveInt = 16
    # How long a server-detected match waits for the browser's report of the same match.
    browser_grace_secs: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    max_events_per_person: Annotated[int, msgspec.Meta(ge=16, le=10_000)] = 200


class Predicate(_Section):
    """A condition on one field of an event: ``props.category``, ``url``, ``title``, ``level``..."""

    field: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    op: Literal["eq", "ne", "in", "prefix", "gt", "gte", "lt", "lte", "exists"]
    value: Any = None


class SequenceStep(_Section):
    name: Name
    where: list[Predicate] = []
    # Fields (same syntax as Predicate.field) whose value must equal the previous step's.
    same: list[str] = []


class SequenceNegation(_Section):
    name: Name
    where: list[Predicate] = []
    within_secs: PositiveFloat | None = None


class SequenceDefinition(_Section):
    """An analyst's high-level event, detected in the browser and on the server alike."""

    name: Name
    steps: Annotated[list[SequenceStep], msgspec.Meta(min_length=1, max_length=16)]
    within_secs: PositiveFloat
    not_followed_by: SequenceNegation | None = None


class SchemaRef(_Section):
    level: Level
    name: Name
    # Either an inline JSON Schema or a path (relative to the config file) to one.
    schema: dict[str, Any] | None = None
    file: str | None = None


class TrackerSettings(_Section):
    """Sent to the browser by ``GET /v1/config``; the script tag can narrow but not widen them."""

    respect_do_not_track: bool = True
    capture_low: bool = True
    pointer_interval_ms: Annotated[int, msgspec.Meta(ge=50)] = 100
    max_low_events_per_page: Annotated[int, msgspec.Meta(ge=0)] = 1000
    capture_form_values: bool = False
    search_params: list[str] = msgspec.field(default_factory=lambda: ["q", "s", "search", "query"])


class TenantSettings(_Section):
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


class Settings(_Section):
    data_dir: str = "data"
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


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


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


def _check(settings: Settings) -> None:
    _check_server(settings.server)
    # One key, one power: a key used twice would let one of its holders act as the other.
    seen: dict[str, str] = {}
    if settings.server.admin_key is not None:
        seen[settings.server.admin_key] = "server.admin_key"
    ids: set[str] = set()
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
    settings.base_dir = str(base_dir)
    settings.data_dir = _resolve(base_dir, settings.data_dir)
    if isinstance(settings.storage, LocalStorageSettings):
        settings.storage.root = _resolve(base_dir, settings.storage.root or str(Path(settings.data_dir) / "lake"))
    if isinstance(settings.highlevel, SqliteHighLevelSettings):
        settings.highlevel.path = _resolve(base_dir, settings.highlevel.path or str(Path(settings.data_dir) / "highlevel.db"))
    for t in settings.tenants:
        for ref in t.schemas:
            if ref.file is not None:
                ref.file = _resolve(base_dir, ref.file)
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
