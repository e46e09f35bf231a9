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


class NotInstalled(ConfigError):
    """A backend named by ``<seam>.type`` needs a package that is not installed."""

    def __init__(self, seam: str, kind: str, module: str, extra: str | None) -> None:
        self.seam, self.kind, self.module, self.extra = seam, kind, module, extra
        fix = f"pip install 'beaconlake[{extra}]'" if extra else "reinstall beaconlake (pip install --force-reinstall beaconlake)"
        super().__init__(f"{seam}.type = {kind!r} needs a package that is not installed ({module}): {fix}")

    def __reduce__(self):  # pickled by its parts (it crosses process boundaries like any error)
        return type(self), (self.seam, self.kind, self.module, self.extra)
