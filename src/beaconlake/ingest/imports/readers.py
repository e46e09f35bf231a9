"""Archives as streams of (line number, line bytes): Segment / RudderStack JSON lines (what their
S3 destinations write, usually gzipped) and Snowplow enriched events (TSV, 131 columns).

Files are read line by line, never whole, so memory does not grow with a file; a gzip file is
recognised by its magic bytes, not its name. A line that cannot be parsed is yielded with its
problem so that the importer rejects it with the file and line number, and goes on.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from beaconlake.ingest.protocols.common import Unmappable

GZIP_MAGIC = b"\x1f\x8b"
_json = msgspec.json.Decoder()

# The enriched event's columns, in file order (Snowplow's canonical event model; the same list
# Snowplow's analytics SDKs use to read these files).
ENRICHED_COLUMNS = (
    "app_id platform etl_tstamp collector_tstamp dvce_created_tstamp event event_id txn_id name_tracker v_tracker "
    "v_collector v_etl user_id user_ipaddress user_fingerprint domain_userid domain_sessionidx network_userid "
    "geo_country geo_region geo_city geo_zipcode geo_latitude geo_longitude geo_region_name ip_isp ip_organization "
    "ip_domain ip_netspeed page_url page_title page_referrer page_urlscheme page_urlhost page_urlport page_urlpath "
    "page_urlquery page_urlfragment refr_urlscheme refr_urlhost refr_urlport refr_urlpath refr_urlquery "
    "refr_urlfragment refr_medium refr_source refr_term mkt_medium mkt_source mkt_term mkt_content mkt_campaign "
    "contexts se_category se_action se_label se_property se_value unstruct_event tr_orderid tr_affiliation tr_total "
    "tr_tax tr_shipping tr_city tr_state tr_country ti_orderid ti_sku ti_name ti_category ti_price ti_quantity "
    "pp_xoffset_min pp_xoffset_max pp_yoffset_min pp_yoffset_max useragent br_name br_family br_version br_type "
    "br_renderengine br_lang br_features_pdf br_features_flash br_features_java br_features_director "
    "br_features_quicktime br_features_realplayer br_features_windowsmedia br_features_gears br_features_silverlight "
    "br_cookies br_colordepth br_viewwidth br_viewheight os_name os_family os_manufacturer os_timezone dvce_type "
    "dvce_ismobile dvce_screenwidth dvce_screenheight doc_charset doc_width doc_height tr_currency tr_total_base "
    "tr_tax_base tr_shipping_base ti_currency ti_price_base base_currency geo_timezone mkt_clickid mkt_network "
    "etl_tags dvce_sent_tstamp refr_domain_userid refr_device_tstamp derived_contexts domain_sessionid "
    "derived_tstamp event_vendor event_name event_format event_version event_fingerprint true_tstamp"
).split()
# enriched event type -> the tracker protocol's ``e``
ENRICHED_EVENTS = {"page_view": "pv", "page_ping": "pp", "struct": "se", "unstruct": "ue"}
# enriched column -> tracker protocol parameter, for the fields the mapping reads
ENRICHED_PARAMS = {
    "app_id": "aid", "platform": "p", "event_id": "eid", "v_tracker": "tv", "user_id": "uid", "user_ipaddress": "ip",
    "domain_userid": "duid", "network_userid": "nuid", "domain_sessionid": "sid", "domain_sessionidx": "vid",
    "page_url": "url", "page_title": "page", "page_referrer": "refr", "contexts": "co", "unstruct_event": "ue_pr",
    "se_category": "se_ca", "se_action": "se_ac", "se_label": "se_la", "se_property": "se_pr", "se_value": "se_va",
    "pp_xoffset_min": "pp_mix", "pp_xoffset_max": "pp_max", "pp_yoffset_min": "pp_miy", "pp_yoffset_max": "pp_may",
    "useragent": "ua", "br_lang": "lang", "os_timezone": "tz",
}


class Source:
    """A file opened for streaming; ``tell()`` is how far into the file (compressed bytes) it is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        gzipped = self.raw.read(2) == GZIP_MAGIC
        self.raw.seek(0)
        self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=self.raw) if gzipped else self.raw  # type: ignore[assignment]

    def tell(self) -> int:
        return self.raw.tell()

    def lines(self) -> Iterator[tuple[int, bytes]]:
        for number, line in enumerate(self.stream, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def segment_message(line: bytes) -> Any:
    """One JSON-lines message; raises Unmappable when the line is not JSON."""
    try:
        return _json.decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise Unmappable("invalid_json", f"not a JSON message: {exc}") from None


def snowplow_params(line: bytes) -> dict[str, str]:
    """One enriched event as tracker-protocol parameters, with its event time (``derived_tstamp``,
    the enrichment's skew-corrected time, else the collector's) as ``ttm`` in ms."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unmappable("invalid_string", f"not valid UTF-8 at byte {exc.start}") from None
    fields = text.split("\t")
    if len(fields) != len(ENRICHED_COLUMNS):
        raise Unmappable("invalid_event", f"{len(fields)} tab-separated fields, an enriched event has {len(ENRICHED_COLUMNS)}")
    row = dict(zip(ENRICHED_COLUMNS, fields))
    kind = row["event"]
    params = {"e": ENRICHED_EVENTS.get(kind, kind)}
    for column, param in ENRICHED_PARAMS.items():
        if row[column]:
            params[param] = row[column]
    if row["dvce_screenwidth"] and row["dvce_screenheight"]:
        params["res"] = f"{row['dvce_screenwidth']}x{row['dvce_screenheight']}"
    if row["br_viewwidth"] and row["br_viewheight"]:
        params["vp"] = f"{row['br_viewwidth']}x{row['br_viewheight']}"
    when = row["derived_tstamp"] or row["collector_tstamp"]
    if when:
        params["ttm"] = str(_tstamp_ms(when))
    return params


def _tstamp_ms(text: str) -> int:
    """Snowplow's ``2025-11-27 08:00:00.123`` (UTC) as ms since the epoch."""
    from datetime import UTC, datetime

    try:
        return int(datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        raise Unmappable("invalid_event", f"derived_tstamp: {text[:40]!r} is not a time") from None
