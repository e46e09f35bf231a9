"""Origins compared in one canonical form: ``scheme://host:port``.

The tenant's ``allowed_origins`` and the request's ``Origin`` header go through the same
function, so spelling cannot make two different origins equal or one origin unequal to itself:
the scheme is lowercased and must be http or https, the host is IDNA-encoded (UTS #46, as
browsers do before they send an Origin) and lowercased, and the port is explicit (80 or 443 by
default). Anything else (``null``, a path, credentials, whitespace, an invalid label) has no
canonical form and matches nothing but ``*``.

Core: the config checks a tenant's origins with it at load, the collector a request's.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

import idna

DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[^\]/?#@\s]*\]|[^:/?#\[\]@\s]+)(?::(?P<port>[0-9]{1,5}))?/?")
# ASCII host names as they are used, underscores included (dev hosts, some intranets).
_ASCII_HOST_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?")


@lru_cache(maxsize=4096)
def canonical_origin(origin: str) -> str | None:
    """``scheme://host:port`` for an http(s) origin, or None when ``origin`` is not one."""
    m = _ORIGIN_RE.fullmatch(origin)
    if m is None:
        return None
    scheme = m["scheme"].lower()
    default_port = DEFAULT_PORTS.get(scheme)
    if default_port is None:
        return None
    port = int(m["port"]) if m["port"] is not None else default_port
    if port > 65535:
        return None
    host = _canonical_host(m["host"])
    return None if host is None else f"{scheme}://{host}:{port}"


def _canonical_host(host: str) -> str | None:
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    if host.isascii():
        host = host.lower()
        return host if _ASCII_HOST_RE.fullmatch(host) else None
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
