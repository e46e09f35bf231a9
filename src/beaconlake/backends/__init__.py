"""Pluggable seams: each has a contract (``base.py``) and one module per backend."""
