"""Route each task to its verifier and run them in bulk: :func:`verify_all` never raises for one item.

- math → :mod:`.mathcheck` in killable worker processes (:mod:`._pool`), ``timeout_seconds`` per item;
- choice → :mod:`.choice`, in-process (a regex, no hang risk);
- code → :mod:`.codecheck`, ``workers`` sandboxes at once (threads waiting on subprocesses);
- open → :mod:`.judge`, ``judge.concurrency`` requests at once.

Rules applied before any verifier (so no verifier can get them wrong):
a reference that came from the response itself gives ``unverified``; a task with nothing to check
against (no reference, no tests, no judge) gives ``unverified``; an empty response gives ``fail``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation.executor import available_cpus
from infialign.pipeline.verifiers import _pool, choice, codecheck, judge, mathcheck, sandbox
from infialign.pipeline.verifiers._types import ANSWER_TYPES, AnswerType, Task, Verdict

__all__ = ["Verifier", "code_limits", "infer_answer_type", "judge_config", "task_from_record", "verify_all"]

VERIFIER_OF: dict[str, str] = {"math": "math", "code": "code", "choice": "choice", "open": "judge"}


def _provenance(record: Mapping[str, Any]) -> dict[str, str]:
    prov = record.get("provenance") or {}
    return dict(prov) if not isinstance(prov, Mapping) else {str(k): str(v) for k, v in prov.items()}


def _prompt_text(record: Mapping[str, Any]) -> str | None:
    msgs = record.get("messages") or []
    text = "\n\n".join(str(m.get("content") or "") for m in msgs if isinstance(m, Mapping) and m.get("role") == "user")
    return text or None


def infer_answer_type(provenance: Mapping[str, str], reference: str | None) -> AnswerType:
    """``provenance.answer_type`` when set; else ``code`` when there are tests, ``choice`` for a one-letter
    reference ("C", "(C)"), else ``math``."""
    declared = provenance.get("answer_type")
    if declared in ANSWER_TYPES:
        return declared  # type: ignore[return-value]
    if provenance.get("tests"):
        return "code"
    if choice.reference_letter(reference) is not None and reference is not None and len(reference.strip()) <= 3:
        return "choice"
    return "math"


def task_from_record(record: Mapping[str, Any], response: str | None = None) -> Task:
    """The task of a record-schema row: its ``response`` (or the one given, e.g. a new generation), its
    ``answer``, and ``provenance`` keys ``answer_type``, ``answer_source``, ``tests``."""
    prov = _provenance(record)
    reference = record.get("answer")
    reference = str(reference) if reference is not None and str(reference).strip() else None
    kind = infer_answer_type(prov, reference)
    source = "tests" if kind == "code" else prov.get("answer_source") or ("reference" if reference is not None else "none")
    text = response if response is not None else record.get("response")
    return Task(
        response=str(text or ""),
        reference=reference,
        answer_type=kind,
        reference_source=source,
        tests=prov.get("tests") or None,
        prompt=_prompt_text(record),
    )


def code_limits(settings: VerificationSettings) -> codecheck.CodeLimits:
    sb = settings.sandbox
    return codecheck.CodeLimits(
        test_timeout_s=sb.test_timeout_seconds,
        total_timeout_s=sb.total_timeout_seconds,
        run=sandbox.Limits(
            memory_mb=sb.memory_mb,
            max_processes=sb.max_processes,
            max_file_mb=sb.max_output_mb,
            isolate_network=sb.isolate_network,
            drop_root=sb.drop_root,
        ),
    )


def judge_config(settings: VerificationSettings) -> judge.JudgeConfig | None:
    j = settings.judge
    if not j.endpoint or not j.model:
        return None
    return judge.JudgeConfig(
        endpoint=j.endpoint,
        model=j.model,
        prompt_template=j.prompt_template,
        threshold=j.threshold,
        timeout_s=j.timeout_seconds,
        max_tokens=j.max_tokens,
        api_key_env=j.api_key_env,
    )


def _precheck(task: Task, has_judge: bool) -> Verdict | None:
    """The verdicts decided without running a verifier."""
    verifier = VERIFIER_OF[task.answer_type]
    if task.reference_source == "response":
        return Verdict("unverified", verifier, "reference came from the response itself", "response")
    if task.answer_type == "code" and not task.tests:
        return Verdict("unverified", verifier, "no tests for this code problem", "none")
    if task.answer_type == "open" and not has_judge:
        return Verdict("unverified", verifier, "no judge configured (verification.judge.endpoint)", task.reference_source)
    if task.answer_type in ("math", "choice") and not (task.reference and task.reference.strip()):
        return Verdict("unverified", verifier, "no reference answer", "none")
    if not task.response.strip():
        return Verdict("fail", verifier, "empty response", task.reference_source)
    return None


def _math_verdict(result: Any, task: Task, settings: VerificationSettings) -> Verdict:
    if isinstance(result, _pool.PoolFailure):
        if result.kind == "timeout":
            return Verdict("timeout", "math", f"math-verify gave no answer within {settings.timeout_seconds:g} s", task.reference_source)
        return Verdict("error", "math", f"math-verify {result.kind}: {result.detail}"[:200], task.reference_source)
    status, reason = result
    return Verdict(status, "math", reason, task.reference_source)


class Verifier:
    """Verifies batches of tasks with one math worker pool for its whole life, now or in the background.

    ``verify(tasks)`` is :func:`verify_all`. ``start()`` spawns the math workers at once, so their warm-up
    overlaps what the caller does next (loading a model). ``submit(tasks)`` verifies on a background thread
    and returns a future, so a stage can check the samples that are finished while its engine keeps
    generating; batches run one after another in submission order. Close it (or use ``with``) to stop the
    workers.
    """

    def __init__(self, settings: VerificationSettings) -> None:
        self.settings = settings
        self._judge = judge_config(settings)
        self._math: _pool.WorkerPool | None = None
        self._lock = threading.Lock()
        self._background: ThreadPoolExecutor | None = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _width(self) -> int:
        return self.settings.workers or available_cpus()

    def _math_pool(self, batch: int) -> _pool.WorkerPool:
        if self._math is None:
            self._math = _pool.WorkerPool(
                mathcheck.check,
                timeout_s=self.settings.timeout_seconds,
                workers=min(self._width(), batch),
                warmup=mathcheck.warmup,
                start_hint="; is math-verify installed in this image (`pip install 'infialign[cpu]'`)?",
            )
        return self._math

    def start(self) -> Verifier:
        """Spawn the math workers now (they warm up while the caller goes on)."""
        with self._lock:
            self._math_pool(self._width())
        return self

    def submit(self, tasks: Sequence[Task]) -> Future[list[Verdict]]:
        """Verify ``tasks`` on the background thread; the future holds what :meth:`verify` would return."""
        if self._background is None:
            self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        return self._background.submit(self.verify, list(tasks))

    def verify(self, tasks: Sequence[Task]) -> list[Verdict]:
        """One verdict per task, in order. Never raises for an item: a crash is ``error``, a hang ``timeout``."""
        with self._lock:
            return self._verify(tasks)

    def _verify(self, tasks: Sequence[Task]) -> list[Verdict]:
        settings, jcfg = self.settings, self._judge
        out: list[Verdict | None] = [_precheck(t, jcfg is not None) for t in tasks]
        todo = [i for i, v in enumerate(out) if v is None]
        by_kind: dict[str, list[int]] = {k: [i for i in todo if tasks[i].answer_type == k] for k in ANSWER_TYPES}
        for i in by_kind["choice"]:
            status, reason = choice.check(tasks[i].response, tasks[i].reference or "")
            out[i] = Verdict(status, "choice", reason, tasks[i].reference_source)  # type: ignore[arg-type]
        math_ix = by_kind["math"]
        if math_ix:
            results = self._math_pool(len(math_ix)).map([(tasks[i].response, tasks[i].reference or "") for i in math_ix])
            for i, r in zip(math_ix, results, strict=True):
                out[i] = _math_verdict(r, tasks[i], settings)
        limits = code_limits(settings)

        def run_code(i: int) -> Verdict:
            try:
                status, reason = codecheck.check(tasks[i].response, tasks[i].tests or "", limits)
            except Exception as e:  # noqa: BLE001 - a sandbox failure is this item's error, not the batch's
                status, reason = "error", f"sandbox failed: {type(e).__name__}: {str(e)[:150]}"
            return Verdict(status, "code", reason, "tests")  # type: ignore[arg-type]

        def run_judge(i: int) -> Verdict:
            assert jcfg is not None
            status, reason = judge.check(tasks[i].prompt or "", tasks[i].response, tasks[i].reference, jcfg)
            return Verdict(status, "judge", reason, tasks[i].reference_source if tasks[i].reference else "none")  # type: ignore[arg-type]

        for kind, fn, width in (("code", run_code, self._width()), ("open", run_judge, settings.judge.concurrency)):
            ix = by_kind[kind]
            if ix:
                with ThreadPoolExecutor(max_workers=min(width, len(ix))) as ex:
                    for i, v in zip(ix, ex.map(fn, ix), strict=True):
                        out[i] = v
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:  # a routing bug, not a bad item
            raise RuntimeError(f"no verdict for tasks {missing[:5]} of answer types {[tasks[i].answer_type for i in missing[:5]]}")
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Wait for submitted batches, then stop the workers."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
        with self._lock:
            if self._math is not None:
                self._math.close(wait=False)  # nothing is left to check; the stage need not wait for exits
                self._math = None


def verify_all(tasks: Sequence[Task], settings: VerificationSettings) -> list[Verdict]:
    """One verdict per task, in order. Never raises for an item: a crash is ``error``, a hang ``timeout``.

    Starts and stops its own workers; a caller with many batches keeps one :class:`Verifier` instead."""
    with Verifier(settings) as verifier:
        return verifier.verify(tasks)
