"""The analyze stage: features as SQL over the convert tables, segments, traits and propensity
with scikit-learn, and one profile per person in the profile store (``beaconlake.analyze.run``).

Kept free of imports: ``beaconlake.config`` imports this package's settings module."""
