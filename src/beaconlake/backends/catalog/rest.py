"""Iceberg REST catalog, through pyiceberg's REST client."""

from __future__ import annotations

from pyiceberg.catalog.rest import RestCatalog

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend
from beaconlake.backends.catalog.settings import RestCatalogSettings


class RestCatalogBackend(CatalogBackend):
    # The server usually decides where tables live; our warehouse is only a fallback for it.
    capabilities = Capabilities(server_warehouse=True)

    @classmethod
    def from_settings(cls, settings: RestCatalogSettings, data_dir: str, warehouse: str,
                      properties: dict[str, str]) -> RestCatalog:
        # The storage's FileIO properties go to the client: a server that vends none of its own
        # (or vends credentials only) still reaches a self-hosted S3 endpoint.
        props = {**properties, "uri": settings.uri}
        props["warehouse"] = settings.warehouse or warehouse
        if settings.credential:
            props["credential"] = settings.credential
        if settings.token:
            props["token"] = settings.token
        return RestCatalog(settings.name, **props)
