"""The persona visitor simulator: raw events of people with known behaviour, for the analyze
stage's tests against ground truth, the benchmarks and the demo.

``PERSONAS`` (each with ``.name``), ``visits(people, days, seed, start_ms)`` yielding ``Visit``s
(``.anonymous_id``, ``.persona``, ``.user_id``, ``.events``: the tracker's client event JSON), and
``write_raw_lake(settings, visits)`` that delivers them to the raw lake without HTTP.
"""

from beaconlake.simulate.personas import CATEGORIES, PERSONAS, Persona
from beaconlake.simulate.visitor import Visit, visits


def write_raw_lake(settings, simulated) -> int:
    """Deliver the visits' events to the raw lake (see ``beaconlake.simulate.lake``); imported on
    use since it pulls in the ingest stack."""
    from beaconlake.simulate.lake import write_raw_lake as write

    return write(settings, simulated)


__all__ = ["CATEGORIES", "PERSONAS", "Persona", "Visit", "visits", "write_raw_lake"]
