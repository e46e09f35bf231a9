"""Iceberg REST catalog, through pyiceberg's REST client."""

from __future__ import annotations

from pyiceberg.catalog.rest import RestCatalog

from beaconlake.convert.settings import RestCatalogSettings


def open_catalog(settings: RestCatalogSettings, data_dir: str, warehouse: str) -> RestCatalog:
    props = {"uri": settings.uri, **settings.properties}
    # The server usually decides where tables live; our warehouse is only a fallback for it.
    props["warehouse"] = settings.warehouse or warehouse
    if settings.credential:
        props["credential"] = settings.credential
    if settings.token:
        props["token"] = settings.token
    return RestCatalog(settings.name, **props)
