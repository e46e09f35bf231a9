"""``beaconlake init``: a starter ``beaconlake.toml`` with one demo tenant and fresh keys."""

from __future__ import annotations

import secrets
from pathlib import Path

from beaconlake.config import DEFAULT_CONFIG_NAME
from beaconlake.errors import ConfigError

TEMPLATE = """\
# beaconlake configuration. Every key can be overridden from the environment:
# BEACONLAKE__SECTION__KEY=value, e.g. BEACONLAKE__SERVER__PORT=9000.
# Relative paths resolve against this file's folder.

data_dir = "data"

[server]
host = "127.0.0.1"
port = {port}
workers = 1
# admin_key = "{server_admin_key}"   # secret: server-wide Pipeline view, runs for every tenant

[spool]
durability = "fsync"          # "fsync": acknowledged events survive power loss; "os": a process crash
flush_interval_secs = 10

[storage]
type = "local"                # or "s3" with bucket, prefix, endpoint_url, region, access_key_id, secret_access_key

[[tenants]]
id = "demo"
write_key = "{write_key}"   # public: goes in the page's script tag, can only write
read_key = "{read_key}"     # secret: Authorization: Bearer <read_key>, reads this tenant's data
admin_key = "{admin_key}"   # secret: the read key's rights plus runs now for this tenant
allowed_origins = ["*"]       # e.g. ["https://shop.example"]

# A JSON Schema for one (level, name): events that fail it are rejected with the reason.
[[tenants.schemas]]
level = "mid"
name = "add_to_cart"
schema = {{ type = "object", required = ["sku"], properties = {{ sku = {{ type = "string" }}, price = {{ type = "number", minimum = 0 }} }} }}

# A high-level event: the same person views two products of one category, then adds to cart.
[[tenants.sequences]]
name = "considered_then_added"
within_secs = 600
steps = [
  {{ name = "product_view", where = [{{ field = "props.category", op = "exists" }}] }},
  {{ name = "product_view", same = ["props.category"] }},
  {{ name = "add_to_cart" }},
]
"""


def new_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def write_starter(folder: Path, port: int = 8080, force: bool = False) -> Path:
    path = folder / DEFAULT_CONFIG_NAME
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    path.write_text(
        TEMPLATE.format(port=port, write_key=new_key("wk"), read_key=new_key("rk"), admin_key=new_key("ak"),
                        server_admin_key=new_key("sk")),
        encoding="utf-8",
    )
    return path
