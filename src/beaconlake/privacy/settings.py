"""``[privacy]``: how erasure requests are carried out and how long the suppression list holds."""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        check_range("privacy.suppression_days", self.suppression_days, 0, 36_500, "days")
        check_range("privacy.suppression_refresh_secs", self.suppression_refresh_secs, 0, 3600, "seconds")
        if self.id_salt and len(self.id_salt) < 16:
            raise ValueError(f"privacy.id_salt holds {len(self.id_salt)} characters: use at least 16 "
                             "(e.g. the output of `openssl rand -hex 32`)")
