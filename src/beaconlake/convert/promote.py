"""Typed columns promoted from the tenants' JSON Schemas.

A tenant that registers a JSON Schema for ``(level, name)`` gets each top-level property with a
simple type (string, integer, number, boolean) as a column ``prop_<property>`` of ``events``,
filled for that tenant's events of that level and name (other rows: NULL). The same property
in several schemas shares one column: types that agree keep it, integer with number gives a
double, anything else a string. A column that already exists in the table keeps its type.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from beaconlake.backends.engine.base import Dialect
from beaconlake.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "prop_"
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
JSON_TYPES = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


@dataclass
class Promoted:
    column: str
    key: str
    type: pa.DataType
    # tenant -> the (level, name) pairs whose schema declares this property
    events: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


def _json_type(spec: object) -> pa.DataType | None:
    if not isinstance(spec, dict):
        return None
    kind = spec.get("type")
    if isinstance(kind, list):  # ["string", "null"] is a nullable string
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return JSON_TYPES.get(kind) if isinstance(kind, str) else None


def _merge(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b:
        return a
    if {a, b} == {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def _load(ref, tenant_id: str) -> dict:
    if ref.schema is not None:
        return ref.schema
    try:
        return json.loads(Path(ref.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tenants.{tenant_id}.schemas ({ref.level}, {ref.name}): cannot read {ref.file}: {exc}") from None


def promoted_columns(tenants) -> list[Promoted]:
    """The promoted columns for these tenants (``config.TenantSettings``), sorted by column name."""
    out: dict[str, Promoted] = {}
    for tenant in tenants:
        for ref in tenant.schemas:
            props = _load(ref, tenant.id).get("properties")
            if not isinstance(props, dict):
                continue
            for key, spec in props.items():
                kind = _json_type(spec)
                if kind is None:
                    continue  # objects and arrays stay in the props JSON
                if not KEY.fullmatch(key):  # fullmatch: "$" alone lets a trailing newline through
                    log.warning("tenant %s, %s %s: property %r is not a valid column name; left in props",
                                tenant.id, ref.level, ref.name, key)
                    continue
                column = PREFIX + key.lower()
                p = out.get(column)
                if p is None:
                    p = out[column] = Promoted(column, key, kind)
                elif p.key != key:
                    log.warning("properties %r and %r share column %s; it is kept as text", p.key, key, column)
                    p.type = pa.string()
                else:
                    p.type = _merge(p.type, kind)
                p.events.setdefault(tenant.id, set()).add((ref.level, ref.name))
    return [out[c] for c in sorted(out)]


def keep_existing_types(promoted: list[Promoted], existing: dict[str, pa.DataType]) -> None:
    """Iceberg cannot change a column's type: a column the table already has keeps its type."""
    for p in promoted:
        old = existing.get(p.column)
        if old is not None and pa.types.is_large_string(old):
            old = pa.string()  # pyiceberg hands strings back as large_string
        if old is not None and old != p.type:
            log.warning("events.%s is %s in the table but the schemas now say %s; values are cast to %s",
                        p.column, old, p.type, old)
            p.type = old


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def select_expr(p: Promoted, tenant: str, dialect: Dialect, props: str = "props", prefix: str = "") -> str:
    """The SQL for one promoted column of one tenant's events."""
    pairs = sorted(p.events.get(tenant, ()))
    if not pairs:
        return f"CAST(NULL AS {_sql_type(p.type)})"
    by_level: dict[str, list[str]] = {}
    for level, name in pairs:
        by_level.setdefault(level, []).append(_literal(name))
    where = " OR ".join(
        f"({prefix}level = {_literal(lvl)} AND {prefix}name IN ({', '.join(names)}))" for lvl, names in by_level.items()
    )
    v = dialect.json_text(props, p.key)
    if p.type == pa.int64():
        # only JSON integers: "12.5" would round in one engine and truncate in the other
        typed = f"CASE WHEN {dialect.matches(v, chr(39) + '^-?[0-9]{1,18}$' + chr(39))} THEN try_cast({v} AS BIGINT) END"
    elif p.type == pa.float64():
        typed = f"try_cast({v} AS DOUBLE)"
    elif p.type == pa.bool_():
        typed = f"CASE WHEN {v} = 'true' THEN true WHEN {v} = 'false' THEN false END"
    else:
        typed = v
    return f"CAST(CASE WHEN {where} THEN {typed} END AS {_sql_type(p.type)})"


def _sql_type(t: pa.DataType) -> str:
    return {pa.string(): "STRING", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}[t]
