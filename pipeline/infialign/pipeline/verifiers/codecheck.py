"""Code: extract the response's final Python block and run it against the problem's tests in the
sandbox (seeds §1.6 "Sandbox"; [RECON] 6 s per test, 10 s per problem, 2 GB, no network; pass = every
test passes).

The tests are a :mod:`infialign.pipeline.codetests` spec: ``function`` (HumanEval: prefix + candidate +
test + ``check(entry_point)``, one run), ``stdio`` (one run per case, stdout compared line by line, then
token by token with a numeric tolerance) or ``call`` (one run per case, the return value compared in the
child). The first failing test ends the check; the per-problem budget caps the sum of the runs.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from infialign.pipeline import codetests
from infialign.pipeline.curation import answers
from infialign.pipeline.verifiers import sandbox

__all__ = ["CodeLimits", "check", "extract_code", "same_stdout"]

_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class CodeLimits:
    """Time budgets around :class:`sandbox.Limits`."""

    test_timeout_s: float = 6.0
    total_timeout_s: float = 10.0
    run: sandbox.Limits = sandbox.Limits()


def extract_code(response: str) -> str | None:
    """The last fenced code block after ``</think>`` that is tagged python (or untagged); None if none."""
    blocks = [(lang, body) for lang, body in _FENCE.findall(answers.after_think(response))]
    tagged = [body for lang, body in blocks if lang]
    chosen = tagged or [body for _lang, body in blocks]
    return chosen[-1] if chosen and chosen[-1].strip() else None


def _numbers_close(a: list[str], b: list[str]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        try:
            if not math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-6):
                return False
        except ValueError:
            return False
    return True


def same_stdout(got: str, expected: str) -> bool:
    """Equal after stripping trailing spaces and blank lines; else equal token by token, numbers within 1e-6."""
    g = [ln.rstrip() for ln in got.strip().splitlines()]
    e = [ln.rstrip() for ln in str(expected).strip().splitlines()]
    return g == e or _numbers_close(got.split(), str(expected).split())


def _where(res: sandbox.RunResult) -> str:
    return f"[net: {res.network}; user: {res.user}]"


def _short(s: str, n: int = 60) -> str:
    s = s.strip().replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


def _failure(res: sandbox.RunResult, label: str, timeout_s: float, limits: CodeLimits) -> tuple[str, str]:
    """(status, reason) of a run that did not pass."""
    if res.outcome in ("timeout", "cpu_limit"):
        kind = "wall-clock" if res.outcome == "timeout" else "CPU"
        return "timeout", f"{label}: killed at the {kind} limit of {timeout_s:g} s {_where(res)}"
    if res.outcome == "output_limit":
        return "fail", f"{label}: output over {limits.run.max_file_mb} MB {_where(res)}"
    if res.outcome == "crashed":
        return "fail", f"{label}: died without a result ({_short(res.error, 120)}) {_where(res)}"
    error = res.error
    if error.startswith("MemoryError"):
        error = f"MemoryError (memory limit {limits.run.memory_mb} MB)"
    elif error.startswith("BlockingIOError") and "Resource temporarily unavailable" in error:
        error = f"{error} (process limit {limits.run.max_processes})"
    return "fail", f"{label}: {_short(error, 160)} {_where(res)}"


def check(response: str, tests: str, limits: CodeLimits) -> tuple[str, str]:
    """``(status, reason)``: ``pass`` when every test passes, ``timeout`` when a run hit a limit of time,
    ``fail`` otherwise, ``error`` when the tests themselves cannot be read."""
    try:
        spec = codetests.loads(tests)
    except codetests.TestSpecError as e:
        return "error", str(e)[:200]
    code = extract_code(response)
    if code is None:
        return "fail", "no ```python code block after </think>"
    deadline = time.monotonic() + limits.total_timeout_s
    n = spec.n_tests
    last: sandbox.RunResult | None = None

    def budget(k: int) -> float | None:
        left = deadline - time.monotonic()
        return None if left <= 0.05 else min(limits.test_timeout_s, left)

    if spec.mode == "function":
        timeout_s = min(limits.test_timeout_s, limits.total_timeout_s)
        program = f"{spec.prefix}\n\n{code}\n\n{spec.test}\n\ncheck({spec.entry_point})\n"
        res = sandbox.run(program, timeout_s=timeout_s, limits=limits.run)
        if res.outcome != "ok":
            return _failure(res, "check()", timeout_s, limits)
        return "pass", f"1/1 tests passed {_where(res)}"
    for k, case in enumerate(spec.cases, start=1):
        timeout_s = budget(k)
        if timeout_s is None:
            where = _where(last) if last else ""
            return "timeout", f"total limit of {limits.total_timeout_s:g} s reached after {k - 1}/{n} tests {where}".rstrip()
        label = f"test {k}/{n}"
        if spec.mode == "stdio":
            res = sandbox.run(code, timeout_s=timeout_s, limits=limits.run, stdin=str(case.input))
            if res.outcome == "ok" and not same_stdout(res.stdout, case.output):
                return "fail", f"{label}: wrong output: expected {_short(str(case.output))!r}, got {_short(res.stdout)!r} {_where(res)}"
        else:
            res = sandbox.run(code, timeout_s=timeout_s, limits=limits.run, call=(spec.entry_point, list(case.input), case.output))
            if res.outcome == "ok" and not res.match:
                return "fail", f"{label}: {spec.entry_point}(…) returned {_short(res.got)}, expected {_short(repr(case.output))} {_where(res)}"
        if res.outcome != "ok":
            return _failure(res, label, timeout_s, limits)
        last = res
    return "pass", f"{n}/{n} tests passed {_where(last) if last else ''}".rstrip()
