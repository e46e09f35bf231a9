"""``beaconlake import``: history from Segment / RudderStack and Snowplow archives into the raw lake."""
