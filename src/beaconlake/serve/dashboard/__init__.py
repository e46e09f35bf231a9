"""The dashboard: a single page served at ``/`` by every server worker (``serve.app``), and its
JSON endpoints under ``/v1/dashboard/``."""
