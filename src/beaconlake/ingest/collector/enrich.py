"""Server-side enrichment, done once per request: client IP (anonymised), parsed user agent."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from ua_parser import parse as parse_ua

from beaconlake.types import UserAgent

# Automation that ua-parser does not file under its "Spider" device family.
_BOT_RE = re.compile(
    r"bot|crawl|spider|slurp|headless|phantomjs|lighthouse|curl/|wget/|python-requests|python-urllib"
    r"|httpx|aiohttp|go-http-client|java/|okhttp|libwww|scrapy|node-fetch|axios/|postman",
    re.IGNORECASE,
)
MAX_UA_LENGTH = 512


@lru_cache(maxsize=8192)
def user_agent(ua: str | None) -> UserAgent:
    """Parse a User-Agent header. Cached: a site's visitors share a few hundred agents."""
    if not ua:
        return UserAgent(is_bot=False)
    r = parse_ua(ua[:MAX_UA_LENGTH])
    device = r.device.family if r.device else None
    is_bot = device == "Spider" or bool(_BOT_RE.search(ua))
    return UserAgent(
        browser=r.user_agent.family if r.user_agent else None,
        browser_version=r.user_agent.major if r.user_agent else None,
        os=r.os.family if r.os else None,
        os_version=r.os.major if r.os else None,
        device=device,
        is_bot=is_bot,
    )


@lru_cache(maxsize=65536)
def anonymize_ip(ip: str) -> str | None:
    """Zero the last octet of IPv4 and the last 80 bits of IPv6 (the usual analytics practice)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(addr) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1)))


def client_ip(peer: str | None, forwarded_for: str | None, trust_forwarded_for: bool) -> str | None:
    if trust_forwarded_for and forwarded_for:
        # The left-most entry is the original client; proxies append to the right.
        return forwarded_for.split(",", 1)[0].strip() or peer
    return peer
