"""``[privacy]``: how erasure requests are carried out and how long the suppression list holds."""

from __future__ import annotations

import msgspec

from beaconlake.sections import Section, check_range


class PrivacySettings(Section):
    # After an erasure, events of the forgotten person that still arrive (a late batch, an outbox
    # flushed days later) are dropped at delivery for this many days.
    suppression_days: float = 90.0
    # How often lake delivery reads the suppression list again; an erasure carried out by the
    # scheduler or the CLI waits at least this long after the request, so no deliverer still
    # works from a list that does not have it.
    suppression_refresh_secs: float = 10.0
    # Secret key of the salted hashes of ids (audit log, suppression list). Empty: a random key
    # made once and kept in the lake at privacy/salt. Set it when several nodes deliver.
    id_salt: str = ""
    # A person whose identity graph links more ids than this is not forgotten by a pass: a shared
    # user id ("guest") would link strangers, and forgetting them all is not what was asked. The
    # request stays pending, the pass says why; ask with the exact ids, or raise the limit.
    max_person_ids: int = 1000

    def __post_init__(self) -> None:
        check_range("privacy.max_person_ids", self.max_person_ids, 1, 1_000_000, "ids")
        check_range("privacy.suppression_days", self.suppression_days, 0, 36_500, "days")
        check_range("privacy.suppression_refresh_secs", self.suppression_refresh_secs, 0, 3600, "seconds")
        if self.id_salt and len(self.id_salt) < 16:
            raise ValueError(f"privacy.id_salt holds {len(self.id_salt)} characters: use at least 16 "
                             "(e.g. the output of `openssl rand -hex 32`)")


class RetentionSettings(Section):
    """``[tenants.retention]``: how long each kind of a tenant's data is kept, in days; unset
    keeps it for ever (the default). Enforced by the scheduler at the start of each run
    (``privacy/retention.py``), by whole days."""

    raw_days: int | None = None  # raw lake files, by the day of their events
    tables_days: int | None = None  # rows of events, sessions, pageviews, high_level_events, by their day
    rejected_days: int | None = None  # rejected-area files, by the day they were received
    profiles_inactive_days: int | None = None  # profiles of people unseen this long
    # Iceberg snapshots older than this are expired and the files only they need deleted. The
    # tables are shared by every tenant, so the smallest value over all tenants applies.
    snapshots_days: int | None = None

    def __post_init__(self) -> None:
        for key in ("raw_days", "tables_days", "rejected_days", "profiles_inactive_days", "snapshots_days"):
            value = getattr(self, key)
            if value is not None:
                check_range(f"retention.{key}", value, 1, 36_500, "days (leave it out to keep for ever)")


# Query parameters dropped from page and referrer URLs unless a tenant says otherwise: where
# sign-up forms, password resets and OAuth redirects put personal data and secrets.
DEFAULT_DROP_QUERY_PARAMS = ["email", "e-mail", "mail", "token", "access_token", "id_token", "refresh_token",
                             "password", "passwd", "pwd", "secret", "api_key", "apikey", "auth"]


class PiiSettings(Section):
    """``[tenants.pii]``: personal data taken out at the collector, before anything is written
    (``ingest/collector/scrub.py``). On by default, for every tenant."""

    enabled: bool = True
    # URL query (and fragment) parameters of url and referrer, by name (case-insensitive): the
    # parameter goes / its value becomes a salted hash (a stable pseudonym: "h_" + 16 hex digits).
    drop_query_params: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_DROP_QUERY_PARAMS))
    hash_query_params: list[str] = []
    # Keys of props / context, at any depth, by name: the key goes / its value becomes a salted hash.
    drop_props: list[str] = []
    hash_props: list[str] = []
    drop_context: list[str] = []
    hash_context: list[str] = []
    # Detected in url, referrer, title and every string of props (and rejected excerpts): replaced
    # by "[email]", "[phone]", "[card]". Card numbers are 13 to 19 digits that pass the Luhn check.
    redact_emails: bool = True
    redact_phones: bool = False  # numbers of 9 to 15 digits with an optional +: off, ids look alike
    redact_cards: bool = True

    def __post_init__(self) -> None:
        for key in ("drop_query_params", "hash_query_params", "drop_props", "hash_props", "drop_context", "hash_context"):
            for name in getattr(self, key):
                if not name or len(name) > 128:
                    raise ValueError(f"pii.{key}: {name!r} is not a key name (1 to 128 characters)")
