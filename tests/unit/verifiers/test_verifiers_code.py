"""The code sandbox: modes, limits that kill runaway code without harming the caller, and no network."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib

import pytest
from infialign.pipeline import codetests, verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.verifiers import codecheck

# Low limits keep a memory hog cheap on a shared machine; the logic is the same at 2 GB.
SETTINGS = VerificationSettings.model_validate(
    {"workers": 2, "sandbox": {"testTimeoutSeconds": 2, "totalTimeoutSeconds": 4, "memoryMb": 256}}
)


def _py(code: str) -> str:
    return f"<think>let me write it</think>\n```python\n{code}\n```"


def _task(code: str, spec: codetests.TestSpec) -> verifiers.Task:
    return verifiers.Task(response=_py(code), reference=None, answer_type="code", reference_source="tests", tests=codetests.dumps(spec))


STDIO = codetests.TestSpec(mode="stdio", cases=(codetests.TestCase(input="1 2\n", output="3\n"), codetests.TestCase(input="5 5\n", output="10")))
ADD = codetests.TestSpec(
    mode="function",
    prefix="from typing import List\n",
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
    entry_point="add",
)


def test_runaway_programs_are_killed_and_reported_while_the_rest_still_verify():
    tasks = [
        _task("a, b = map(int, input().split())\nprint(a + b)", STDIO),
        _task("while True:\n    pass", STDIO),  # infinite loop
        _task("hog = []\nwhile True:\n    hog.append(bytearray(10**7))", STDIO),  # memory hog
        _task("import os\nwhile True:\n    os.fork()", STDIO),  # fork bomb
        _task("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", STDIO),  # stubborn fork bomb
        _task("def add(a, b):\n    return a + b", ADD),
    ]
    verdicts = verifiers.verify_all(tasks, SETTINGS)
    status = [v.status for v in verdicts]
    assert status == ["pass", "timeout", "fail", "fail", "timeout", "pass"], [v.reason for v in verdicts]
    assert verdicts[0].reason.startswith("2/2 tests passed")
    assert "limit of 2 s" in verdicts[1].reason
    assert "MemoryError (memory limit 256 MB)" in verdicts[2].reason
    assert "process limit" in verdicts[3].reason
    assert all(v.verifier == "code" and v.reference_source == "tests" for v in verdicts)


def test_every_verdict_says_how_the_network_was_cut():
    v = verifiers.verify_all([_task("import socket\ns = socket.socket()\ns.connect(('1.1.1.1', 80))\nprint(3)", STDIO)], SETTINGS)[0]
    assert v.status == "fail"
    assert any(m in v.reason for m in ("[net: netns", "[net: userns+netns", "[net: sockets-disabled"))
    if os.geteuid() == 0:
        assert "user: nobody" in v.reason


def test_wrong_output_and_exceptions_fail_with_the_test_named():
    wrong = verifiers.verify_all([_task("print(3)", STDIO)], SETTINGS)[0]
    assert wrong.status == "fail" and wrong.reason.startswith("test 2/2: wrong output: expected '10', got '3'")
    boom = verifiers.verify_all([_task("raise ValueError('nope')", STDIO)], SETTINGS)[0]
    assert boom.reason.startswith("test 1/2: ValueError: nope")


def test_call_mode_with_a_solution_class_and_apps_wrapped_outputs():
    lcb = codetests.from_livecodebench(
        json.dumps([{"input": "[1, 2, 3]\n2", "output": "[2, 4, 6]", "testtype": "functional"}]),
        None,
        json.dumps({"func_name": "scale"}),
    )
    good = "class Solution:\n    def scale(self, xs, k):\n        return [x * k for x in xs]"
    apps = codetests.from_apps(json.dumps({"fn_name": "double", "inputs": [[2], [5]], "outputs": [[4], [10]]}))
    verdicts = verifiers.verify_all(
        [_task(good, lcb), _task(good.replace("x * k", "x + k"), lcb), _task("def double(n):\n    return 2 * n", apps)], SETTINGS
    )
    assert [v.status for v in verdicts] == ["pass", "fail", "pass"]
    assert "returned [3, 4, 5], expected [2, 4, 6]" in verdicts[1].reason


def test_the_final_python_block_after_think_is_the_candidate():
    text = "<think>```python\nprint('draft')\n```</think>\nFirst:\n```\nnot this\n```\nFinal:\n```python\nprint('final')\n```"
    assert codecheck.extract_code(text) == "print('final')\n"
    assert codecheck.extract_code("no code here") is None
    v = verifiers.verify_all([verifiers.Task(response="I would loop.", reference=None, answer_type="code", tests=codetests.dumps(STDIO))], SETTINGS)[0]
    assert (v.status, v.reason) == ("fail", "no ```python code block after </think>")


def test_missing_or_broken_tests_are_unverified_or_error():
    no_tests = verifiers.verify_all([verifiers.Task(response=_py("print(1)"), reference=None, answer_type="code")], SETTINGS)[0]
    assert no_tests.status == "unverified"
    broken = verifiers.verify_all([verifiers.Task(response=_py("print(1)"), reference=None, answer_type="code", tests="{oops")], SETTINGS)[0]
    assert broken.status == "error" and "provenance.tests" in broken.reason


def test_stdout_comparison_tolerates_whitespace_and_float_noise():
    assert codecheck.same_stdout("1 2  \n3\n\n", "1 2\n3")
    assert codecheck.same_stdout("0.3333333", "0.33333333")
    assert not codecheck.same_stdout("1 2", "1 3")


def test_livecodebench_private_tests_decode_and_pickled_code_is_refused():
    cases = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()
    assert codetests.decode_lcb_private(packed) == cases
    spec = codetests.from_livecodebench("[]", packed, "{}")
    assert spec.mode == "stdio" and spec.cases[0].output == "2\n"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(codetests.TestSpecError, match="refusing to load"):
        codetests.decode_lcb_private(evil)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"mode": "function", "test": "def check(c): pass"}, "entry_point"),
        ({"mode": "stdio"}, "at least one case"),
        ({"mode": "call", "entry_point": "f", "cases": [{"input": 1, "output": 1}]}, "list of arguments"),
    ],
)
def test_test_spec_validation_names_the_key(spec, match):
    with pytest.raises(codetests.TestSpecError, match=match):
        codetests.loads(json.dumps(spec))
