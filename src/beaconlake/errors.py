"""Errors that cross module boundaries. Each message says what was wrong and what to do."""


class BeaconlakeError(Exception):
    """Base of every error beaconlake raises on purpose."""


class ConfigError(BeaconlakeError):
    """The configuration (file, environment or command line) is invalid."""


class StorageError(BeaconlakeError):
    """A storage backend could not read or write an object."""


class SpoolCorrupt(BeaconlakeError):
    """A spool segment holds a frame that fails its length or checksum test."""


class BackendUnavailable(BeaconlakeError):
    """A store behind the read API (Redis counters, a PostgreSQL index or profile store) cannot
    be reached now: the read routes answer 503 with Retry-After, not a 500 (nothing is wrong
    with beaconlake, and the backends reconnect by themselves when the store is back)."""
