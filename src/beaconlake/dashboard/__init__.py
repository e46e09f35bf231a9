"""The dashboard: a single page served at ``/`` by the collector, and its JSON endpoints under
``/v1/dashboard/``."""
