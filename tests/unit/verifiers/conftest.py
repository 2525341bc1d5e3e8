"""Put this directory on sys.path: spawned pool workers import ``verifier_helpers`` by module name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
