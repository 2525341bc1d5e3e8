"""Verifiers that cannot fool themselves: math, multiple choice, a code sandbox and an LLM judge.

One package for every stage that checks answers (``select``, ``distill``, ``prefs``, ``eval``)::

    tasks = [verifiers.task_from_record(rec, response=text) for rec, text in ...]
    verdicts = verifiers.verify_all(tasks, spec_stage.verification)   # api.VerificationSettings

A :class:`Verdict` carries ``status`` (``pass`` | ``fail`` | ``error`` | ``timeout`` | ``unverified``; only
``pass`` is verified), the ``verifier`` that decided, a human ``reason`` and the ``reference_source``.
A reference taken from the response being checked is never a verification: such tasks are ``unverified``.

Record conventions (keys of the ``provenance`` map): ``answer_type`` (math | code | choice | open),
``answer_source`` (reference | response), ``tests`` (a :mod:`infialign.pipeline.codetests` JSON spec),
``entry_point``; verdicts come back as ``verifier``, ``verify_reason``, ``reference_source``
(:func:`verify_records` writes them).

Layering: stages → verifiers → curation (answer extraction, step plumbing) → api/records. Heavy imports
(math-verify) happen in worker processes only.
"""

from infialign.pipeline.verifiers import choice, codecheck, dispatch, judge, mathcheck, sandbox, step
from infialign.pipeline.verifiers._types import ANSWER_TYPES, STATUSES, AnswerType, Status, Task, Verdict
from infialign.pipeline.verifiers.dispatch import Verifier, infer_answer_type, task_from_record, verify_all
from infialign.pipeline.verifiers.step import verify_records

__all__ = [
    "ANSWER_TYPES",
    "STATUSES",
    "AnswerType",
    "Status",
    "Task",
    "Verdict",
    "Verifier",
    "choice",
    "codecheck",
    "dispatch",
    "infer_answer_type",
    "judge",
    "mathcheck",
    "sandbox",
    "step",
    "task_from_record",
    "verify_all",
    "verify_records",
]
