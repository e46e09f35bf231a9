"""Errors of the convert stage and of ``beaconlake query``."""

from beaconlake.errors import BeaconlakeError


class ConvertError(BeaconlakeError):
    """A convert run cannot go on without losing or corrupting data; nothing was committed for
    the batch that raised it."""


class QueryError(BeaconlakeError):
    """``beaconlake query`` got SQL that does not parse or run, or names an unknown table."""
