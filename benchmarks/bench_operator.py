"""Operator benchmark, by hand: the real `infialign operator` process against kmock on 127.0.0.1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_operator.py [--runs 200] [--serial 50]

Measures, with the API server emulated by kmock (plus the operator test suite's API-server shim):

1. latency from AlignmentRun create (POST answered) to the first Job POST arriving, p50 and p99:
   a) `--serial` runs one after another (the operator otherwise idle), b) `--runs` runs created at once;
2. API calls per step transition: every non-watch request the operator process sends (its client and
   Kopf's) while each of the `--runs` runs goes from its first step to its second, divided by the runs;
3. the operator's resident memory (VmRSS, VmHWM of the process) with `--runs` runs active.

Targets: p99 < 1 s, ≤ 6 calls per transition. Not part of the test suite. Everything it starts it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import kmock as km

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
RUNS_URL = f"/apis/infialign.dev/v1alpha1/namespaces/{NS}/alignmentruns"


def _shim() -> Any:
    """The API-server shim of the operator tests (resourceVersion, uid, generation, RV-aware watches)."""
    spec = importlib.util.spec_from_file_location("_bench_harness", ROOT / "tests" / "operator" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "infialign.dev/v1alpha1",
        "kind": "AlignmentRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "sources": [{"name": "reasoning", "uri": "builtin://reasoning?n=200", "preset": "records"}],
            "stages": {"distill": {"enabled": False}, "prefs": {"enabled": False}, "dpo": {"enabled": False}, "eval": {"enabled": False}},
            "storage": {"local": {"path": "/nonexistent/bench-artifacts"}},
            "tracking": {"enabled": False},
        },
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


JOB_POSTS: dict[str, float] = {}  # run name → monotonic time its first Job POST reached the API server
CALLS: list[str] = []  # "METHOD resource[/subresource]" of every non-watch request from the operator process


def _emulator(shim: Any) -> Any:
    class TimedEmulator(shim.ApiServerEmulator):  # type: ignore[misc, name-defined]
        """Timestamps each run's first Job POST and logs the operator's calls as they arrive.

        kmock matches each request against views over its whole request log, which makes a request
        O(requests so far): at 200 runs the emulator, not the operator, would be the bottleneck. The
        log is kept to the current request here, and the benchmark counts calls itself.
        """

        async def _handle(self, request: km.Request) -> Any:
            agent = request.headers.get("User-Agent", "")
            watching = request.action in (km.action.WATCH, km.action.LIST) or request.params.get("watch") == "true"
            if agent.startswith(("infialign-operator", "kopf")) and not watching:
                plural = request.resource.plural if request.resource is not None else request.url.path
                CALLS.append(f"{request.method.value} {plural}{'/' + request.subresource if request.subresource else ''}")
            if request.action == km.action.CREATE and request.resource is not None and request.resource.plural == "jobs":
                data = request.data if isinstance(request.data, dict) else {}
                run = ((data.get("metadata") or {}).get("labels") or {}).get("infialign.dev/run")
                if run and run not in JOB_POSTS:
                    JOB_POSTS[run] = time.monotonic()
            self._requests[:] = [request]
            return await super()._handle(request)

    return TimedEmulator()


class Bench:
    def __init__(self, kmock: Any) -> None:
        self.kmock = kmock
        self.job_posts = JOB_POSTS

    async def create(self, name: str) -> float:
        async with self.kmock.post(RUNS_URL, json=_run_doc(name)) as resp:
            assert resp.status in (200, 201), await resp.text()
        return time.monotonic()

    async def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    def operator_calls(self) -> list[str]:
        """Non-watch requests from the operator process: its own client and Kopf's (not the benchmark's)."""
        return list(CALLS)

    async def complete_first_job(self, run: str) -> None:
        job = f"{run}-curate-a1"
        status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        async with self.kmock.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{job}/status", json={"status": status}) as resp:
            assert resp.status == 200, await resp.text()

    def has_job(self, name: str) -> bool:
        try:
            return not self.kmock.objects["batch/v1/jobs", NS, name].deleted
        except KeyError:
            return False


async def main(runs: int, serial: int, workdir: Path) -> dict[str, Any]:
    shim = _shim()
    async with _emulator(shim) as kmock, km.Server(kmock):
        kmock.resources.load_bundled()
        kmock.resources["infialign.dev/v1alpha1/alignmentruns"] = {
            "kind": "AlignmentRun",
            "singular": "alignmentrun",
            "namespaced": True,
            "verbs": {"list", "watch", "get", "patch", "create", "delete"},
            "subresources": {"status"},
        }
        kubeconfig = workdir / "kubeconfig.json"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
                    "users": [{"name": "kmock", "user": {"token": "bench"}}],
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": NS}}],
                }
            )
        )
        liveness = _free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "INFIALIGN_OPERATOR_SCANNING": "false", "OMP_NUM_THREADS": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = (workdir / "operator.log").open("wb")
        argv = [
            sys.executable,
            "-m",
            "infialign.pipeline.cli",
            "operator",
            "--namespace",
            NS,
            "--liveness",
            f"http://127.0.0.1:{liveness}/healthz",
            "--metrics-port",
            "0",
        ]
        operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)  # noqa: ASYNC220  started once, before timing
        try:
            bench = Bench(kmock)
            deadline = time.monotonic() + 60
            while True:  # ready = the liveness endpoint answers
                if await asyncio.to_thread(_healthy, liveness):
                    break
                if time.monotonic() > deadline or operator.poll() is not None:
                    raise RuntimeError(f"the operator did not start; see {workdir / 'operator.log'}")
                await asyncio.sleep(0.2)
            rss_idle = _rss_kib(operator.pid)
            _say("operator ready")

            # 1a. one at a time
            serial_latency = []
            for i in range(serial):
                name = f"s-{i}"
                created = await bench.create(name)
                await bench.wait(lambda name=name: name in bench.job_posts, 30, f"the first Job of {name}")
                serial_latency.append(bench.job_posts[name] - created)

            # 1b. a burst of `runs` runs
            created_at: dict[str, float] = {}
            names = [f"b-{i}" for i in range(runs)]
            for name in names:
                created_at[name] = await bench.create(name)
            _say(f"{serial} serial runs done; creating {runs} at once")
            await bench.wait(lambda: all(n in bench.job_posts for n in names), 300, "the first Jobs of the burst")
            burst_latency = [bench.job_posts[n] - created_at[n] for n in names]
            _say(f"burst of {runs}: every first Job posted")
            await asyncio.sleep(3)  # let status patches and events of the burst land
            rss_loaded = _rss_kib(operator.pid)

            # 2. one transition per burst run: curate completes → select starts
            before = len(bench.operator_calls())
            for name in names:
                await bench.complete_first_job(name)
            await bench.wait(lambda: all(bench.has_job(f"{n}-select-a1") for n in names), 300, "the second Jobs")
            await asyncio.sleep(3)  # status patches and events trail the Job creation
            _say("transitions done")
            window = bench.operator_calls()[before:]
            per_kind: dict[str, int] = {}
            for key in window:
                per_kind[key] = per_kind.get(key, 0) + 1
            rss_after = _rss_kib(operator.pid)
        finally:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
            log.close()

    def ms(xs: list[float], q: float) -> float:
        return round(1000 * _percentile(xs, q), 1)

    return {
        "serial_runs": serial,
        "serial_create_to_first_job_ms": {
            "p50": ms(serial_latency, 0.5),
            "p99": ms(serial_latency, 0.99),
            "max": ms(serial_latency, 1.0),
            "mean": round(1000 * statistics.mean(serial_latency), 1),
        },
        "burst_runs": runs,
        "burst_create_to_first_job_ms": {"p50": ms(burst_latency, 0.5), "p99": ms(burst_latency, 0.99), "max": ms(burst_latency, 1.0)},
        "api_calls_per_transition": round(len(window) / runs, 2),
        "api_calls_in_transition_window": per_kind,
        "operator_rss_mib": {
            "idle": round(rss_idle["VmRSS"] / 1024, 1),
            f"{runs + serial}_runs_active": round(rss_loaded["VmRSS"] / 1024, 1),
            "after_transitions": round(rss_after["VmRSS"] / 1024, 1),
            "peak": round(rss_after["VmHWM"] / 1024, 1),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs created at once (default: 200)")
    parser.add_argument("--serial", type=int, default=50, help="runs created one after another first (default: 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        result = asyncio.run(main(args.runs, args.serial, Path(tmp)))
    print(json.dumps(result, indent=2))
