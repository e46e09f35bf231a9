"""The one base of every config section, and the value types sections share.

A section is a msgspec struct that rejects unknown keys, so a misspelt key in ``beaconlake.toml``
is an error that names it rather than a silent default. Limits msgspec cannot say well are
checked in ``__post_init__`` with ``check_range``, so the message names the key, the value and the
limit ("convert.session_gap_mins = 0: must be between 1 and 1440 minutes").

A section's ``repr`` (and so ``str``, and every log line that prints one) redacts secrets: the
fields named in ``SECRET_FIELDS``, passwords inside URLs and DSNs, and the values of
``properties``/``conf`` entries whose key names a secret. Settings reach logs and tracebacks;
credentials must not.

This module is core: settings leaves (``*/settings.py``, ``backends/<seam>/settings.py``) and
``config.py`` build on it, and it imports nothing of beaconlake.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, get_args

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Key = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+\Z")]
TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*\Z")]


REDACTED = "***"
# Fields that hold a secret whatever their section (S3 secret key, Azure key and SAS token,
# admin and read keys, REST catalog credential and token, database passwords).
SECRET_FIELDS = frozenset({"secret_access_key", "account_key", "sas_token", "admin_key", "read_key", "credential",
                           "token", "password", "session_token"})
# The key of a properties/conf entry that holds a secret (s3.secret-access-key, adls.account-key,
# spark.hadoop.fs.s3a.secret.key, token, credential...).
SECRET_KEY_NAME = re.compile(r"secret|password|passwd|token|credential|account[-_.]key|sas|private", re.IGNORECASE)
# user:password@ in a URL, and password=... in a libpq DSN or a URL's query.
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^@/\s]+@")
# libpq keyword form: password=value up to the next space, or quoted ('a b', with \' inside)
_DSN_PASSWORD = re.compile(r"((?:^|\s)password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# a URL's query: ?password=value or &password=value up to the next &
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` (a URL, a DSN) with any password in it replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    text = _QUERY_PASSWORD.sub(rf"\g<1>{REDACTED}", text)
    return _DSN_PASSWORD.sub(rf"\g<1>{REDACTED}", text)


def _redacted(name: str, value: Any) -> Any:
    if value is None or isinstance(value, Section):
        return value
    if name in SECRET_FIELDS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY_NAME.search(str(k)) else _redacted(str(k), v) for k, v in value.items()}
    return value


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A config section. A backend's section is tagged by ``type`` (``tag="s3", tag_field="type"``)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_redacted(name, getattr(self, name))!r}" for name in self.__struct_fields__)
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__

    def resolve_paths(self, base_dir: str, data_dir: str) -> None:
        """Make this section's paths absolute, once, at load: a relative one is relative to
        ``base_dir`` (the config file's folder), an empty one means its default under
        ``data_dir``. Sections without paths have nothing to do."""


def type_of(section: Section) -> str:
    """The ``type`` tag of a backend's section (``"s3"`` for ``S3StorageSettings``)."""
    tag = type(section).__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{type(section).__name__} is not a tagged backend section")
    return tag


def types_of(union: Any) -> dict[str, type[Section]]:
    """Each section class of a seam's settings union by its ``type`` tag."""
    return {cls.__struct_config__.tag: cls for cls in get_args(union)}


def check_range(key: str, value: float, low: float, high: float, unit: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{key} = {value!r}: must be between {low} and {high} {unit}")


def resolve(base_dir: str, value: str) -> str:
    """``value`` as an absolute path: ``~`` expanded, relative to ``base_dir``."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (Path(base_dir) / p).resolve())
