"""Put this directory on sys.path: the tests import ``curation_helpers``, and so must the verification
worker processes they spawn (which inherit sys.path and unpickle the test checker by module name).
The suite runs with ``--import-mode=importlib``, which does not add test directories itself."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
