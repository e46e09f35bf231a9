"""beaconlake: a self-hostable customer-behaviour analytics pipeline."""

__version__ = "0.1.0"
