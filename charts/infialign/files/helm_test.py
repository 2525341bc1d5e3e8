"""`helm test`: apply a small CPU-only AlignmentRun and wait until it Succeeds.

Deletes a leftover run of the same name first (a test run again starts from scratch), prints each phase
change and the run's message, and exits 0 on Succeeded, 1 on Failed or after TIMEOUT_SECONDS (the
run's conditions are printed then), leaving the run in place for `kubectl describe arun`.
Environment: RUN_FILE (the manifest), NAMESPACE, TIMEOUT_SECONDS (default 1800).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "infialign.dev", "v1alpha1", "alignmentruns"


def verdict(status: dict[str, Any]) -> int | None:
    """The exit code a run's status decides, or None while it is still going."""
    phase = status.get("phase")
    if phase == "Succeeded":
        return 0
    if phase == "Failed":
        return 1
    return None


def main() -> int:
    namespace = os.environ["NAMESPACE"]
    timeout = float(os.environ.get("TIMEOUT_SECONDS", "1800"))
    with open(os.environ["RUN_FILE"], encoding="utf-8") as f:
        run = yaml.safe_load(f)
    name = run["metadata"]["name"]
    config.load_incluster_config()
    api = client.CustomObjectsApi()
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        while True:  # its children go with it (owner references); wait until the name is free
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            time.sleep(2)
    except ApiException as e:
        if e.status != 404:
            raise
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
    print(f"created AlignmentRun {namespace}/{name}; waiting up to {timeout:.0f} s", flush=True)
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
        seen = (status.get("phase"), status.get("currentStage"), status.get("message"))
        if seen != last:
            print("phase={} step={} {}".format(*(s or "-" for s in seen)), flush=True)
            last = seen
        code = verdict(status)
        if code is not None:
            if code:
                print(yaml.safe_dump(status.get("conditions") or []), flush=True)
            return code
        time.sleep(10)
    print(f"timed out after {timeout:.0f} s; kubectl -n {namespace} describe arun {name}", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
