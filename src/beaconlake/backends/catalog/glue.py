"""AWS Glue Data Catalog, through pyiceberg's Glue client (needs boto3: ``pip install 'beaconlake[glue]'``)."""

from __future__ import annotations

from pyiceberg.catalog.glue import GlueCatalog

from beaconlake.backends.catalog.base import Capabilities, CatalogBackend
from beaconlake.backends.catalog.settings import GlueCatalogSettings


class GlueCatalogBackend(CatalogBackend):
    capabilities = Capabilities(server_warehouse=False)

    @classmethod
    def from_settings(cls, settings: GlueCatalogSettings, data_dir: str, warehouse: str,
                      properties: dict[str, str]) -> GlueCatalog:
        props = {"warehouse": warehouse, **properties}
        if settings.region:
            props["glue.region"] = settings.region
        if settings.profile:
            props["glue.profile-name"] = settings.profile
        return GlueCatalog(settings.name, **props)
