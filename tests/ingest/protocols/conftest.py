import sys
from pathlib import Path

import pytest

# the native door's harness, which the protocol harness builds on
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collector"))

from protocol_harness import ProtocolDoor  # noqa: E402


@pytest.fixture
def door(tmp_path):
    d = ProtocolDoor(tmp_path)
    yield d
    d.close()
