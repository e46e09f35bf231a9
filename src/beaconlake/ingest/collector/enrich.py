"""Server-side enrichment, done once per request: client IP (anonymised), parsed user agent.

The client IP is a fact only as far as the chain of proxies we trust: ``X-Forwarded-For`` is
read right to left and only through ``server.trusted_proxies``, never from its client-written
left end.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from ua_parser import parse as parse_ua

from beaconlake.types import Client, UserAgent

# Automation that ua-parser does not file under its "Spider" device family.
_BOT_RE = re.compile(
    r"bot|crawl|spider|slurp|headless|phantomjs|lighthouse|curl/|wget/|python-requests|python-urllib"
    r"|httpx|aiohttp|go-http-client|java/|okhttp|libwww|scrapy|node-fetch|axios/|postman",
    re.IGNORECASE,
)
MAX_UA_LENGTH = 512
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` entries are believed (``server.trusted_proxies``).

    ``trust_peer`` is what the deprecated ``server.trust_forwarded_for`` now means: the direct
    peer is a proxy of ours, whatever its address, and nothing further left is."""

    def __init__(self, entries: list[str], trust_peer: bool = False) -> None:
        # Validated by config; strict=False so that 10.0.0.1/8 means 10.0.0.0/8, as it reads.
        self.networks = tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)
        self.trust_peer = trust_peer

    def __bool__(self) -> bool:
        return bool(self.networks) or self.trust_peer

    def trusts(self, addr: IPAddress) -> bool:
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


MAX_ADDRESS_CHARS = 64  # "[v6%zone]:port" fits; anything longer is not an address


def parse_ip(text: str | None) -> IPAddress | None:
    """An address as proxies and servers write it: bare, ``1.2.3.4:port`` or ``[v6]:port``."""
    if not text or len(text) > MAX_ADDRESS_CHARS:
        return None  # and never cached: the header is the client's to fill
    return _parse_ip(text.strip())


@lru_cache(maxsize=8192)
def _parse_ip(text: str) -> IPAddress | None:
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None, proxies: TrustedProxies) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy, walking leftwards from the peer (each
    proxy appends the address it saw, so only entries right of the first untrusted hop are
    facts; the rest is what the client chose to send). An entry that is not an address stops
    the walk at the last valid hop. Returns None when the peer is not an IP address."""
    addr = parse_ip(peer)
    if addr is None or not forwarded_for or not proxies:
        return None if addr is None else str(addr)
    if not (proxies.trust_peer or proxies.trusts(addr)):
        return str(addr)
    for entry in reversed(forwarded_for.split(",")):
        hop = parse_ip(entry)
        if hop is None:
            break  # garbage in the chain: the last valid hop is as far as the facts go
        addr = hop
        if not proxies.trusts(addr):
            break
    return str(addr)


def end_user(ip: str | None, ua: str | None, anonymize: bool, device: UserAgent | None = None) -> Client:
    """The enrichment of an end user named by the event itself (a server or a mobile app sending
    on their behalf): the address anonymised as the request's would be (dropped when it is not an
    address), the agent parsed and bot-flagged; ``device``, what a mobile SDK says of the device
    instead of an agent, is taken when there is no agent."""
    if ip is not None:
        addr = parse_ip(ip)
        ip = None if addr is None else (anonymize_ip(str(addr)) if anonymize else str(addr))
    if ua is not None and not ua.isascii():
        ua = ua.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return Client(ip, ua, device if ua is None and device is not None else user_agent(ua))
