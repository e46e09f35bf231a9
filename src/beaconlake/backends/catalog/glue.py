"""AWS Glue Data Catalog, through pyiceberg's Glue client (needs boto3: ``pip install 'beaconlake[glue]'``)."""

from __future__ import annotations

from pyiceberg.catalog.glue import GlueCatalog

from beaconlake.convert.settings import GlueCatalogSettings


def open_catalog(settings: GlueCatalogSettings, data_dir: str, warehouse: str) -> GlueCatalog:
    props = {"warehouse": warehouse, **settings.properties}
    if settings.region:
        props["glue.region"] = settings.region
    if settings.profile:
        props["glue.profile-name"] = settings.profile
    return GlueCatalog(settings.name, **props)
