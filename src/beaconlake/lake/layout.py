"""The lake's keys: the one place that builds them and the one place that reads them back.

::

    raw/tenant=T/level=L/year=YYYY/month=MM/day=DD/<segment>.parquet     accepted events (delivery)
    rejected/tenant=T/year=YYYY/month=MM/day=DD/<segment>.parquet        refused events (delivery)
    stats/tenant=T/grain=G/year=YYYY/month=MM/day=DD/<from>.parquet      closed realtime windows
    quarantine/<raw key>                                                  a raw file convert cannot read,
    quarantine/<raw key>.reason.json                                      and why (convert/quarantine.py)
    erasures/pending/tenant=T/<request>.json                              an erasure not carried out yet (ids in clear)
    erasures/done/tenant=T/<request>.json                                 a carried-out one (salted hashes only)
    suppress/tenant=T/<request>.json                                      hashed ids dropped at delivery until a time
    audit/tenant=T/year=YYYY/month=MM/day=DD/<ms>-<request>-<what>.json   the audit log: written once, never changed
    privacy/salt                                                          the key of the salted id hashes

Keys are ``/``-separated and relative to the lake root (a folder, a bucket prefix, a
container prefix: the storage seam's business). The day is the UTC day of ``event_ts`` for
raw files, of ``received_at`` for rejected ones, of the window start for statistics.

Invariant: for every kind, ``parse_x(x_key(...))`` gives back what was built, and a key the
builder could not have made parses as None. So a builder refuses a part that would make the
key ambiguous (empty, holding a ``/``, or a segment name starting with a dot: names starting
with a dot are storage's temporary files). Each regex sits next to its builder, so a change
of layout is one edit here and a failing property test otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

RAW = "raw/"
REJECTED = "rejected/"
STATS = "stats/"
QUARANTINE = "quarantine/"
REASON_SUFFIX = ".reason.json"
PARQUET = ".parquet"

_DAY = r"year=(?P<y>\d{4})/month=(?P<m>\d{2})/day=(?P<d>\d{2})/"
_NAME = r"(?P<name>[^/.][^/]*)\.parquet"


def _part(what: str, value: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"a lake key's {what} must be non-empty and hold no '/': got {value!r}")
    return value


def _name(what: str, value: str) -> str:
    if _part(what, value).startswith("."):
        raise ValueError(f"a lake key's {what} must not start with '.' (storage's temporary files do): got {value!r}")
    return value


def day_part(day: date) -> str:
    """``year=YYYY/month=MM/day=DD/``: the day folders every kind of key shares."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def _day(m: re.Match) -> date | None:
    try:
        return date(int(m["y"]), int(m["m"]), int(m["d"]))
    except ValueError:  # not a calendar day (day=31 in a 30-day month): no key of ours
        return None


# -- raw ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawKey:
    tenant: str
    level: str
    day: date
    segment: str  # the spool segment the file was delivered from (file name without .parquet)


RAW_KEY = re.compile(rf"raw/tenant=(?P<tenant>[^/]+)/level=(?P<level>[^/]+)/{_DAY}{_NAME}")


def raw_prefix(tenant: str | None = None, level: str | None = None, day: date | None = None) -> str:
    """The prefix of every raw key (of ``tenant``, of its ``level``, of that ``day``)."""
    if tenant is None:
        return RAW
    prefix = f"{RAW}tenant={_part('tenant', tenant)}/"
    if level is None:
        return prefix
    prefix += f"level={_part('level', level)}/"
    return prefix if day is None else prefix + day_part(day)


def raw_key(tenant: str, level: str, day: date, segment: str) -> str:
    return f"{raw_prefix(tenant, level, day)}{_name('segment name', segment)}{PARQUET}"


def parse_raw(key: str) -> RawKey | None:
    m = RAW_KEY.fullmatch(key)
    day = m and _day(m)
    return RawKey(m["tenant"], m["level"], day, m["name"]) if day else None


# -- rejected ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectedKey:
    tenant: str
    day: date
    segment: str


REJECTED_KEY = re.compile(rf"rejected/tenant=(?P<tenant>[^/]+)/{_DAY}{_NAME}")


def rejected_prefix(tenant: str | None = None, day: date | None = None) -> str:
    if tenant is None:
        return REJECTED
    prefix = f"{REJECTED}tenant={_part('tenant', tenant)}/"
    return prefix if day is None else prefix + day_part(day)


def rejected_key(tenant: str, day: date, segment: str) -> str:
    return f"{rejected_prefix(tenant, day)}{_name('segment name', segment)}{PARQUET}"


def parse_rejected(key: str) -> RejectedKey | None:
    m = REJECTED_KEY.fullmatch(key)
    day = m and _day(m)
    return RejectedKey(m["tenant"], day, m["name"]) if day else None


# -- realtime statistics windows ---------------------------------------------------------------


@dataclass(frozen=True)
class StatsKey:
    tenant: str
    grain: str  # minute, hour, day
    day: date
    since_ms: int  # the first window start the file covers: a pass repeated after a crash rewrites it


STATS_KEY = re.compile(rf"stats/tenant=(?P<tenant>[^/]+)/grain=(?P<grain>[^/]+)/{_DAY}(?P<since>-?\d+)\.parquet")


def stats_prefix(tenant: str | None = None, grain: str | None = None) -> str:
    if tenant is None:
        return STATS
    prefix = f"{STATS}tenant={_part('tenant', tenant)}/"
    return prefix if grain is None else f"{prefix}grain={_part('grain', grain)}/"


def stats_key(tenant: str, grain: str, day: date, since_ms: int) -> str:
    return f"{stats_prefix(tenant, grain)}{day_part(day)}{int(since_ms)}{PARQUET}"


def parse_stats(key: str) -> StatsKey | None:
    m = STATS_KEY.fullmatch(key)
    day = m and _day(m)
    return StatsKey(m["tenant"], m["grain"], day, int(m["since"])) if day else None


# -- quarantine ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineKey:
    raw_key: str  # the key the file had in raw/, where a repaired copy goes back
    reason: bool  # the reason record (JSON) rather than the file's bytes


def quarantine_prefix(tenant: str | None = None) -> str:
    """Where the quarantined files (of ``tenant``) and their reason records are."""
    return QUARANTINE + raw_prefix(tenant)


def quarantine_key(raw: str) -> str:
    """Where the bytes of the raw file ``raw`` go when convert cannot read them."""
    if parse_raw(raw) is None:
        raise ValueError(f"{raw!r} is not a raw key ({RAW}tenant=T/level=L/{day_part(date(2026, 1, 1))}<segment>.parquet)")
    return QUARANTINE + raw


def reason_key(raw: str) -> str:
    """Where the reason record of the quarantined raw file ``raw`` goes."""
    return quarantine_key(raw) + REASON_SUFFIX


def parse_quarantine(key: str) -> QuarantineKey | None:
    if not key.startswith(QUARANTINE):
        return None
    raw, reason = key[len(QUARANTINE):], key.endswith(REASON_SUFFIX)
    if reason:
        raw = raw[: -len(REASON_SUFFIX)]
    return QuarantineKey(raw, reason) if parse_raw(raw) else None


# -- privacy: erasure requests, suppression list, audit log ----------------------------------------

ERASURES = "erasures/"
PENDING, DONE = "pending", "done"
SUPPRESS = "suppress/"
AUDIT = "audit/"
SALT_KEY = "privacy/salt"
JSON = ".json"
_REQUEST = r"(?P<request>[0-9a-z][0-9a-z-]*)"


@dataclass(frozen=True)
class ErasureKey:
    state: str  # pending or done
    tenant: str
    request: str


ERASURE_KEY = re.compile(rf"erasures/(?P<state>pending|done)/tenant=(?P<tenant>[^/]+)/{_REQUEST}\.json")


def _request(value: str) -> str:
    if not re.fullmatch(_REQUEST, value):
        raise ValueError(f"an erasure request id is [0-9a-z-], starting with a letter or digit: got {value!r}")
    return value


def erasure_prefix(state: str, tenant: str | None = None) -> str:
    if state not in (PENDING, DONE):
        raise ValueError(f"an erasure's state is {PENDING!r} or {DONE!r}: got {state!r}")
    prefix = f"{ERASURES}{state}/"
    return prefix if tenant is None else f"{prefix}tenant={_part('tenant', tenant)}/"


def erasure_key(state: str, tenant: str, request: str) -> str:
    return f"{erasure_prefix(state, tenant)}{_request(request)}{JSON}"


def parse_erasure(key: str) -> ErasureKey | None:
    m = ERASURE_KEY.fullmatch(key)
    return ErasureKey(m["state"], m["tenant"], m["request"]) if m else None


SUPPRESS_KEY = re.compile(rf"suppress/tenant=(?P<tenant>[^/]+)/{_REQUEST}\.json")


def suppress_prefix(tenant: str | None = None) -> str:
    return SUPPRESS if tenant is None else f"{SUPPRESS}tenant={_part('tenant', tenant)}/"


def suppress_key(tenant: str, request: str) -> str:
    return f"{suppress_prefix(tenant)}{_request(request)}{JSON}"


def parse_suppress(key: str) -> tuple[str, str] | None:
    """(tenant, request) of a suppression entry's key."""
    m = SUPPRESS_KEY.fullmatch(key)
    return (m["tenant"], m["request"]) if m else None


@dataclass(frozen=True)
class AuditKey:
    tenant: str
    day: date
    at_ms: int
    request: str
    what: str  # requested, carried_out, retention...


AUDIT_KEY = re.compile(rf"audit/tenant=(?P<tenant>[^/]+)/{_DAY}(?P<at>\d{{13}})-{_REQUEST}-(?P<what>[a-z_]+)\.json")


def audit_prefix(tenant: str | None = None) -> str:
    return AUDIT if tenant is None else f"{AUDIT}tenant={_part('tenant', tenant)}/"


def audit_key(tenant: str, day: date, at_ms: int, request: str, what: str) -> str:
    if not 0 <= at_ms < 10**13 or not re.fullmatch(r"[a-z_]+", what):
        raise ValueError(f"an audit key needs a 13-digit ms time and a [a-z_] kind: got {at_ms!r}, {what!r}")
    return f"{audit_prefix(tenant)}{day_part(day)}{at_ms:013d}-{_request(request)}-{what}{JSON}"


def parse_audit(key: str) -> AuditKey | None:
    m = AUDIT_KEY.fullmatch(key)
    day = m and _day(m)
    return AuditKey(m["tenant"], day, int(m["at"]), m["request"], m["what"]) if day else None
