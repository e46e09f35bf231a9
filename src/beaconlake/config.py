"""Settings: one TOML file, environment overrides, resolved once at start-up.

``BEACONLAKE__SECTION__KEY=value`` overrides ``[section] key``; the value is read as a TOML
value when it parses as one (``8081``, ``true``, ``["a", "b"]``) and as a plain string
otherwise. Relative paths resolve against the config file's folder, so a deployment
folder can be moved whole.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from beaconlake.errors import ConfigError
from beaconlake.types import Level, Name

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
    host: str = "127.0.0.1"
    port: Port = 8080
    workers: PositiveInt = 1
    # Honour X-Forwarded-For only behind a proxy you run; otherwise clients could forge it.
    trust_forwarded_for: bool = False


class CollectorSettings(_Section):
    max_body_bytes: PositiveInt = 1024 * 1024
    max_batch_events: PositiveInt = 500
    max_props_bytes: PositiveInt = 16 * 1024
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


StorageSettings = LocalStorageSettings | S3StorageSettings


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
    write_key: Key
    read_key: Key
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


def _check(settings: Settings) -> None:
    seen: dict[str, str] = {}
    ids: set[str] = set()
    for t in settings.tenants:
        if t.id in ids:
            raise ConfigError(f"tenants: id {t.id!r} is declared twice")
        ids.add(t.id)
        for kind, key in (("write_key", t.write_key), ("read_key", t.read_key)):
            if key in seen:
                raise ConfigError(f"tenants.{t.id}.{kind}: the same key is already used as {seen[key]}")
            seen[key] = f"tenants.{t.id}.{kind}"
        for origin in t.allowed_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(
                    f"tenants.{t.id}.allowed_origins: {origin!r} is not an origin; "
                    "write it as scheme://host[:port], e.g. https://shop.example, or '*'"
                )
        for ref in t.schemas:
            if (ref.schema is None) == (ref.file is None):
                raise ConfigError(
                    f"tenants.{t.id}.schemas ({ref.level}, {ref.name}): give exactly one of 'schema' or 'file'"
                )


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
