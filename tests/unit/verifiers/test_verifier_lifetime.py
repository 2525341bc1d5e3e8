"""A verifier that lives across batches: workers are kept, background batches keep their order, a hang
in one batch does not cost the next, and closing never waits for the workers' exit."""

from __future__ import annotations

import time

from infialign.pipeline import verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.verifiers import _pool
from verifier_helpers import pid_of

SETTINGS = VerificationSettings(timeout_seconds=20)


def test_a_pool_keeps_its_workers_across_batches_and_replaces_a_hung_one() -> None:
    with _pool.WorkerPool(pid_of, timeout_s=1.0, workers=2) as pool:
        first = pool.map(["a", "b", "c"])
        assert [item for item, _ in first] == ["a", "b", "c"]
        pids = {pid for _, pid in first}
        second = pool.map(["d", "e"])
        assert {pid for _, pid in second} <= pids  # no new process for the second batch
        hung = pool.map(["HANG", "f"])
        assert isinstance(hung[0], _pool.PoolFailure) and hung[0].kind == "timeout"
        assert hung[1][0] == "f"
        after = pool.map(["g", "h", "i"])
        assert [item for item, _ in after] == ["g", "h", "i"]  # the replacement worker serves the next batch


def test_closing_without_waiting_returns_at_once_and_the_workers_still_exit() -> None:
    pool = _pool.WorkerPool(pid_of, timeout_s=5.0, workers=2)
    procs = [w.proc for w in pool.workers]
    pool.map(["a", "b"])
    pool.close(wait=False)
    assert pool.workers == []
    deadline = time.monotonic() + 30
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.is_alive() for p in procs)


def _math(response: str, reference: str) -> verifiers.Task:
    return verifiers.Task(response=response, reference=reference, reference_source="reference")


def test_background_batches_give_what_verify_all_gives_in_order() -> None:
    batches = [
        [_math("\\boxed{1/2}", "0.5"), _math("\\boxed{3}", "4"), verifiers.Task(response="The answer is C", reference="C", answer_type="choice")],
        [_math("x = \\boxed{[1, 2)}", "[1,2)"), _math("", "2"), verifiers.Task(response="\\boxed{5}", reference="5", reference_source="response")],
    ]
    with verifiers.Verifier(SETTINGS).start() as verifier:
        futures = [verifier.submit(batch) for batch in batches]
        streamed = [[v.status for v in f.result()] for f in futures]
    assert streamed == [[v.status for v in verifiers.verify_all(batch, SETTINGS)] for batch in batches]
    assert streamed == [["pass", "fail", "pass"], ["pass", "fail", "unverified"]]
