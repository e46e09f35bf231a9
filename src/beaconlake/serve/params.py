"""Parameters of the read API, the profiles API and the dashboard (query and path): each bad
value becomes a 400 naming the value and what is allowed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import unquote_to_bytes

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

from beaconlake.types import NAME_MAX, NAME_PATTERN


class BadParam(Exception):
    def __init__(self, param: str, error: str) -> None:
        super().__init__(error)
        self.param, self.error = param, error


_NAME = re.compile(NAME_PATTERN)


def name(value: str | None, param: str = "name", required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise BadParam(param, f"{param} is required, e.g. ?{param}=page_view")
        return None
    if len(value) > NAME_MAX or not _NAME.match(value):
        raise BadParam(param, f"{param}={value[:80]!r} is not an event name: up to {NAME_MAX} characters of [a-z0-9_.:-]")
    return value


def when(value: str | None, param: str, default: int | None) -> int | None:
    """ms since the epoch, or ISO 8601 (UTC when it names no zone)."""
    if value is None or value == "":
        return default
    if value.isdigit():
        ms = int(value)
    else:
        try:
            d = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
        except ValueError:
            raise BadParam(param, f"{param}={value[:80]!r} is not a time; give ms since the epoch or ISO 8601, "
                                  "e.g. 2026-11-27T08:00:00Z") from None
        ms = int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= ms <= 4_102_444_800_000:
        raise BadParam(param, f"{param}={value!r} is out of range: between 1970 and 2100")
    return ms


def choice(value: str | None, param: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BadParam(param, f"{param}={value[:80]!r} is not allowed; use one of {', '.join(allowed)}")
    return value


def integer(value: str | None, param: str, lo: int, hi: int, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise BadParam(param, f"{param}={value[:80]!r} must be a whole number from {lo} to {hi}")
    return int(value)


class AnyPathConvertor(Convertor[str]):
    """The rest of a path, whatever it holds: Starlette's ``path`` (``.*``) stops at a newline,
    and a person id may hold one."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_path", AnyPathConvertor())
PERSON_ID = "{person_id:any_path}"  # in a route: the person id, any characters, / included


def person_id_of(request: Request, route: str) -> str:
    """The ``PERSON_ID`` part of ``route``: any characters, ``/`` included, 1 to 128 of them,
    percent-decoded exactly once.

    Taken from the raw path where the server gives one (ASGI ``raw_path``: the bytes as they
    came, still percent-encoded), because the decoded ``path`` no longer tells an encoded
    ``%2F`` in an id from a ``/`` of the route, and some servers and clients (Starlette's
    TestClient among them) decode ``%25`` twice. Else the routed value, which the server decoded:
    also when ``raw_path`` is byte for byte the decoded path, which is what a server gives that
    has no raw path to give and copies the decoded one.
    """
    person_id = request.path_params["person_id"]
    raw = request.scope.get("raw_path")
    prefix, _, suffix = route.encode().partition(PERSON_ID.encode())
    prefix = request.scope.get("root_path", "").encode() + prefix
    raw_is_raw = raw and raw != request.scope["path"].encode()
    if raw_is_raw and raw.startswith(prefix) and raw.endswith(suffix) and len(raw) > len(prefix) + len(suffix):
        try:
            person_id = unquote_to_bytes(raw[len(prefix):len(raw) - len(suffix)]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadParam("person_id", "the person id is not UTF-8 once percent-decoded; "
                                        "encode it with encodeURIComponent (JavaScript) or quote(id, safe='') (Python)") from None
    if not 0 < len(person_id) <= 128:
        raise BadParam("person_id", f"person id of {len(person_id)} characters; 1 to 128 allowed")
    return person_id
