"""The one normalised test format of code problems, stored as JSON in ``provenance["tests"]``.

Ingest converts each code dataset's own layout into it (HumanEval ``test`` + ``entry_point``, APPS/TACO
``input_output``, LiveCodeBench ``public_test_cases``/``private_test_cases``); the code verifier runs it.
It lives beside ``records`` (not in curation or verifiers) because both sides read it.

Three modes::

    {"mode": "function", "prefix": "<code run before the candidate>", "test": "<defines check()>",
     "entry_point": "f"}                                   # HumanEval: check(f) must not raise
    {"mode": "stdio", "cases": [{"input": "1 2\\n", "output": "3\\n"}, ...]}   # APPS/TACO, LCB stdin
    {"mode": "call", "entry_point": "f", "cases": [{"input": [1, 2], "output": 3}, ...]}
                                                           # APPS fn_name, LCB functional: f(*input) == output

In ``call`` mode the callable is ``Solution().<entry_point>`` when the program defines a class
``Solution`` with that method (LeetCode style, LiveCodeBench), else the module-level function.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "MAX_CASES",
    "TestCase",
    "TestSpec",
    "TestSpecError",
    "decode_lcb_private",
    "dumps",
    "from_apps",
    "from_humaneval",
    "from_livecodebench",
    "loads",
]

MAX_CASES: Final = 10_000
"""Cases kept per problem; TACO has rows with thousands of generated cases, more says nothing new."""


class TestSpecError(ValueError):
    """A test spec (or a dataset's test column) cannot be read; the message names the key and the fix."""


class TestCase(BaseModel):
    """One case: stdin text and expected stdout (stdio), or argument list and expected value (call)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    __test__ = False  # not a pytest class

    input: Any = Field(description="stdio: the text fed to stdin; call: the list of positional arguments.")
    output: Any = Field(description="stdio: the expected stdout text; call: the expected return value.")


class TestSpec(BaseModel):
    """A code problem's tests in the normalised format (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    __test__ = False

    mode: Literal["function", "stdio", "call"] = Field(description="How the candidate is exercised.")
    prefix: str = Field("", max_length=1_000_000, description="function mode: code run before the candidate (the HumanEval prompt).")
    test: str = Field("", max_length=1_000_000, description="function mode: test code that defines check(candidate).")
    entry_point: str = Field("", max_length=256, description="function: the argument of check(); call: the function or method name.")
    cases: tuple[TestCase, ...] = Field((), max_length=MAX_CASES, description="stdio and call modes: the cases, all must pass.")

    @model_validator(mode="after")
    def _complete(self) -> TestSpec:
        if self.mode == "function" and not (self.test.strip() and self.entry_point):
            raise ValueError("mode 'function' needs `test` (defining check) and `entry_point`")
        if self.mode == "call" and not self.entry_point:
            raise ValueError("mode 'call' needs `entry_point` (the function or method to call)")
        if self.mode in ("stdio", "call") and not self.cases:
            raise ValueError(f"mode {self.mode!r} needs at least one case in `cases`")
        if self.mode == "call" and any(not isinstance(c.input, list) for c in self.cases):
            raise ValueError("mode 'call' needs every case's `input` to be a list of arguments")
        return self

    @property
    def n_tests(self) -> int:
        return 1 if self.mode == "function" else len(self.cases)


def dumps(spec: TestSpec) -> str:
    return json.dumps(spec.model_dump(exclude_defaults=True), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> TestSpec:
    """Parse ``provenance["tests"]``; :class:`TestSpecError` names what is wrong."""
    try:
        return TestSpec.model_validate(json.loads(text))
    except (ValueError, TypeError, ValidationError) as e:
        raise TestSpecError(f"provenance.tests is not a valid test spec ({str(e)[:300]}); see infialign.pipeline.codetests") from e


# ---------------------------------------------------------------------------------------------------------
# dataset layouts → TestSpec


def from_humaneval(prompt: str, test: str, entry_point: str) -> TestSpec:
    """HumanEval: the prompt (imports, helpers, signature) runs first so helpers it defines exist."""
    return TestSpec(mode="function", prefix=prompt, test=test, entry_point=entry_point)


def _text(value: Any) -> str:
    if isinstance(value, list):  # TACO stores some stdin/stdout as a list of lines
        return "\n".join(str(v) for v in value) + ("\n" if value else "")
    return str(value)


def from_apps(input_output: str | Mapping[str, Any]) -> TestSpec:
    """APPS/TACO ``input_output``: ``{"inputs": [...], "outputs": [...]}``, plus ``fn_name`` for call-based problems."""
    try:
        io_map = json.loads(input_output) if isinstance(input_output, str) else dict(input_output)
        inputs, outputs = list(io_map["inputs"]), list(io_map["outputs"])
    except (ValueError, TypeError, KeyError) as e:
        raise TestSpecError(f"input_output must be JSON with `inputs` and `outputs` lists: {str(e)[:200]}") from e
    if len(inputs) != len(outputs):
        raise TestSpecError(f"input_output has {len(inputs)} inputs but {len(outputs)} outputs")
    fn = io_map.get("fn_name")
    if fn:
        cases = [TestCase(input=i if isinstance(i, list) else [i], output=o) for i, o in zip(inputs, outputs)]
        return TestSpec(mode="call", entry_point=str(fn), cases=tuple(cases[:MAX_CASES]))
    cases = [TestCase(input=_text(i), output=_text(o)) for i, o in zip(inputs, outputs)]
    return TestSpec(mode="stdio", cases=tuple(cases[:MAX_CASES]))


class _NoGlobals(pickle.Unpickler):
    """LiveCodeBench pickles a plain JSON string; anything that needs a class or function is refused,
    so a tampered dataset cannot run code through pickle."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test column (only plain strings are expected)")


def decode_lcb_private(value: str) -> list[dict[str, Any]]:
    """LiveCodeBench ``private_test_cases``: plain JSON, or base64 → zlib → pickle → JSON."""
    try:
        return list(json.loads(value))
    except ValueError:
        pass
    try:
        raw = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(value.encode())))).load()
        return list(json.loads(raw))
    except (ValueError, TypeError, zlib.error, pickle.UnpicklingError, EOFError) as e:
        raise TestSpecError(f"private_test_cases is neither JSON nor base64-zlib-pickled JSON: {str(e)[:200]}") from e


def _lcb_args(text: str) -> list[Any]:
    """A functional LiveCodeBench input is one JSON value per line, one line per argument."""
    try:
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    except ValueError as e:
        raise TestSpecError(f"a functional test input is not one JSON value per line: {text[:100]!r}") from e


def from_livecodebench(public: str | Sequence[Mapping[str, Any]], private: str | Sequence[Mapping[str, Any]] | None, metadata: str | Mapping[str, Any] | None) -> TestSpec:
    """LiveCodeBench: public + private cases, each ``{input, output, testtype: stdin|functional}``; the
    functional method name is ``metadata.func_name``."""
    try:
        cases = list(json.loads(public)) if isinstance(public, str) else list(public or [])
    except ValueError as e:
        raise TestSpecError(f"public_test_cases is not JSON: {str(e)[:200]}") from e
    if private:
        cases += decode_lcb_private(private) if isinstance(private, str) else list(private)
    if not cases:
        raise TestSpecError("LiveCodeBench row has no public_test_cases or private_test_cases")
    meta = json.loads(metadata) if isinstance(metadata, str) and metadata.strip() else dict(metadata or {})
    types = {c.get("testtype", "stdin") for c in cases}
    if types == {"functional"}:
        fn = meta.get("func_name")
        if not fn:
            raise TestSpecError("functional LiveCodeBench tests need metadata.func_name")
        calls = [TestCase(input=_lcb_args(c["input"]), output=json.loads(c["output"])) for c in cases]
        return TestSpec(mode="call", entry_point=str(fn), cases=tuple(calls[:MAX_CASES]))
    if types == {"stdin"}:
        return TestSpec(mode="stdio", cases=tuple(TestCase(input=c["input"], output=c["output"]) for c in cases[:MAX_CASES]))
    raise TestSpecError(f"LiveCodeBench row mixes test types {sorted(types)}; expected all stdin or all functional")
