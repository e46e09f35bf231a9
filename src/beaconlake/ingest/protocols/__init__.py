"""The collection protocols beaconlake speaks besides its own: each module maps one protocol's
messages into the canonical event (types.ClientEvent), for the collector's doors
(ingest/collector/segment_api.py, snowplow_api.py) and for ``beaconlake import`` alike."""
