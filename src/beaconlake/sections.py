"""Shared annotated types of the settings (a core module: only msgspec and the standard library).

``TenantId`` is here rather than in config.py because the lake's formats (``beaconlake.lake``)
check spooled records against the same rule the config applies: a tenant id names a folder
of the lake (``raw/tenant=<id>/``), so it can never hold a ``/`` or start with a dot."""

from __future__ import annotations

from typing import Annotated

import msgspec

TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
