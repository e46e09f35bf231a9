"""The browser tracker: ``src/beaconlake.js`` (readable) is built into ``beaconlake.js`` (served)."""
