"""Pluggable seams, one package each, all of one shape: ``base.py`` (the contract and the
``Capabilities`` a backend declares, which callers ask instead of its class), ``settings.py`` (the
seam's config section, tagged by ``type``), ``__init__.py`` (``LOADERS``: type -> backend, and
``open_<seam>``, through the shared lazy ``loader.py``) and one module per backend.

A seam imports only the core and itself: the stages import the seams, never the reverse."""
