"""Map heterogeneous source rows onto the record schema (seeds §1.1, Stage A).

Reading files or Hugging Face datasets is the stage glue's job; this module turns rows (dicts, or an
Arrow table) into a record-schema table with :func:`records_from_rows`.

Presets cover the common layouts; ``preset="auto"`` picks one from the columns present:

============================  ==================================================  =========================
preset                        columns                                             examples
============================  ==================================================  =========================
``chat``                      ``messages`` / ``conversations`` (role/content, or  Open-R1, ShareGPT
                              ShareGPT from/value); the last assistant turn is
                              the response, everything before it the prompt
``problem_solution``          ``problem`` / ``solution`` (+ ``answer``)           NuminaMath, MATH
``instruction_output``        ``instruction`` (+ ``input``) / ``output``          Alpaca
``question_answer``           ``question`` / ``answer`` with ``#### 42``          GSM8K
``prompt_response``           ``prompt`` / ``response`` or ``completion``         generic
``humaneval`` ``apps``        code problems with tests, and multiple choice       HumanEval, APPS/TACO,
``livecodebench`` ``gpqa``    (row adapters in :mod:`.presets`)                   LiveCodeBench, GPQA
============================  ==================================================  =========================

A :class:`FieldMapping` with explicit column names overrides the preset's choices, key by key: a key left
empty keeps the preset's column, also when the prompt column is set (``prompt: query`` still finds
``response``, ``answer`` and ``id``). Only ``preset="none"`` maps nothing but the explicit keys.

The reference answer comes from the answer column (its boxes, ``#### x``, or its last line), else from the
response's boxes / ``#### x`` / "The answer is: x". "Its boxes" is :func:`answers.final_boxed`: the last box,
or the ordered tuple ``(a, b)`` when the closing paragraph holds several (multi-part answers). ``provenance["answer_source"]`` says which:
``reference`` or ``response``. An answer taken from the response can never verify that response (the
verifiers call it ``unverified``): it is a hint for later stages, not a check. In GSM8K-style rows, where the answer column
holds "reasoning #### 42" and there is no response column, the reasoning becomes the response.

The stable id is ``sha1(source name, normalised prompt, original row id)``; the original id is the id
column's value, else the row index. ``provenance`` records the source, row index, original id, the
preset and the column the response came from, so later stages can tell a teacher CoT from a short
reference solution.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import pyarrow as pa
from infialign.pipeline import records
from infialign.pipeline.curation import _config, answers, domains, normalize, presets
from pydantic import Field, model_validator

__all__ = ["FieldMapping", "IngestError", "Preset", "ResolvedMapping", "records_from_rows", "resolve_mapping"]

Preset = Literal[
    "auto", "none", "chat", "problem_solution", "instruction_output", "question_answer", "prompt_response",
    "humaneval", "apps", "livecodebench", "gpqa",
]

_CANDIDATES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "chat": {"messages": ("messages", "conversations", "conversation")},
    "problem_solution": {"prompt": ("problem",), "response": ("solution",)},
    "instruction_output": {"prompt": ("instruction",), "prompt_input": ("input",), "response": ("output",)},
    "question_answer": {"prompt": ("question",), "response": ("solution", "rationale")},
    "prompt_response": {"prompt": ("prompt",), "response": ("response", "completion")},
}
_COMMON: Final[dict[str, tuple[str, ...]]] = {
    "answer": ("answer", "final_answer"),
    "id": ("id", "uuid", "problem_id", "task_id", "unique_id"),
    "domain": ("domain", "type", "problem_type", "subject"),
}
_GENERIC_RESPONSE: Final = ("response", "completion", "solution", "output", "rationale")
_AUTO_ORDER: Final = ("chat", "problem_solution", "instruction_output", "question_answer", "prompt_response")
_ROLE: Final = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
}


class IngestError(ValueError):
    """A source cannot be mapped; the message names the columns seen and the FieldMapping key to set."""


class FieldMapping(_config.CurationConfig):
    """Which source columns feed which record fields. Unset keys come from the preset."""

    preset: Preset = Field("auto", description="Column layout; auto = detect from the columns; none = explicit keys only.")
    messages: str | None = Field(None, description="Column with a chat list (role/content or from/value).")
    prompt: str | None = Field(None, description="Column with the prompt text (instead of messages).")
    prompt_input: str | None = Field(None, description="Column appended to the prompt after a blank line (Alpaca input).")
    response: str | None = Field(None, description="Column with the response / solution / CoT.")
    answer: str | None = Field(None, description="Column with the reference final answer.")
    id: str | None = Field(None, description="Column with the source's own row id.")
    domain: str | None = Field(None, description="Column with a domain label (canonicalised to snake_case).")
    default_domain: str | None = Field(None, description="Domain for rows without one, e.g. 'math'.")
    answer_last_line_fallback: bool = Field(True, description="Answer column without \\boxed{} or ####: use its last line. [RECON]")
    answer_type: Literal["auto", "math", "code", "choice", "open"] = Field(
        "auto", description="Written to provenance.answer_type; auto = the adapter's type, else left for the verifier to infer."
    )
    choice_seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the per-question option order of multiple-choice presets.")

    @model_validator(mode="after")
    def _one_prompt_source(self) -> FieldMapping:
        if self.messages and self.prompt:
            raise ValueError("set either FieldMapping.messages or FieldMapping.prompt, not both")
        if self.preset == "none" and not (self.messages or self.prompt):
            raise ValueError("preset='none' needs FieldMapping.messages or FieldMapping.prompt")
        return self


@dataclass(frozen=True)
class ResolvedMapping:
    """Column names after preset detection and overrides (None = not mapped)."""

    preset: str
    messages: str | None
    prompt: str | None
    prompt_input: str | None
    response: str | None
    answer: str | None
    id: str | None
    domain: str | None


def _first(candidates: Sequence[str], columns: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _detect_layout(columns: Sequence[str]) -> str:
    """The first layout of ``_AUTO_ORDER`` whose prompt (or messages) column is present; "" if none."""
    return next(
        (p for p in _AUTO_ORDER if all(_first(c, columns) for k, c in _CANDIDATES[p].items() if k in ("messages", "prompt"))),
        "",
    )


def resolve_mapping(mapping: FieldMapping, columns: Sequence[str], *, fields_path: str = "FieldMapping") -> ResolvedMapping:
    """Pick the preset (for ``auto``) and the column of every field; explicit keys win, and every key left
    empty keeps the preset's choice, also when the prompt column is explicit. ``fields_path`` is how
    errors name the mapping, e.g. ``spec.sources[0].fields`` for a manifest."""
    columns = list(columns)
    preset = mapping.preset
    explicit_prompt = bool(mapping.messages or mapping.prompt)
    candidates: dict[str, tuple[str, ...]] = {}
    if preset in presets.ADAPTERS:
        return ResolvedMapping(preset, None, None, None, None, None, None, None)
    if preset == "auto":
        adapter = None if explicit_prompt else presets.detect(set(columns))
        if adapter:
            return ResolvedMapping(adapter, None, None, None, None, None, None, None)
        preset = _detect_layout(columns)
        if not preset and not explicit_prompt:
            raise IngestError(
                f"cannot detect the layout of columns {columns}: expected one of messages/conversations, "
                f"problem, instruction, question or prompt; set {fields_path}.prompt (the question column) or "
                f"{fields_path}.messages (a chat list); the other keys keep their usual column names"
            )
        # An explicit prompt column with no known layout: the usual response column names still apply.
        candidates = _CANDIDATES[preset] if preset else {"response": _GENERIC_RESPONSE}
        preset = preset or "auto"
    elif preset != "none":
        candidates = _CANDIDATES[preset]
    picks: dict[str, str | None] = {k: None for k in ("messages", "prompt", "prompt_input", "response", "answer", "id", "domain")}
    if mapping.preset != "none":
        for key, cands in {**candidates, **_COMMON}.items():
            picks[key] = _first(cands, columns)
    for key in picks:
        explicit = getattr(mapping, key)
        if explicit is not None:
            picks[key] = explicit
    if mapping.prompt:
        picks["messages"] = None
    if mapping.messages:
        picks["prompt"] = picks["prompt_input"] = None
    if not (picks["messages"] or picks["prompt"]):
        raise IngestError(f"preset {preset!r} found no prompt column in {columns}; set {fields_path}.prompt to the question column")
    missing = [f"{fields_path}.{k}: {v!r}" for k, v in picks.items() if v is not None and v not in columns]
    if missing:
        raise IngestError(f"{', '.join(missing)} names a column the source lacks; its columns are {columns}")
    return ResolvedMapping(preset=preset, **picks)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    return s if s.strip() else None


def _chat(value: Any) -> list[dict[str, str]]:
    msgs = []
    for m in value or []:
        if not isinstance(m, Mapping):
            continue
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = _ROLE.get(str(role).lower().strip(), str(role)) if role is not None else "user"
        msgs.append({"role": role, "content": "" if content is None else str(content)})
    return msgs


def _iter_rows(rows: Iterable[Mapping[str, Any]] | pa.Table) -> tuple[list[str], Iterable[Mapping[str, Any]]]:
    if isinstance(rows, pa.Table):
        return rows.column_names, (r for b in rows.to_batches(max_chunksize=4096) for r in b.to_pylist())
    rows = list(rows)
    columns: dict[str, None] = {}
    for r in rows[:100]:
        columns.update(dict.fromkeys(r))
    return list(columns), rows


def _unique_key(orig_id: str | None, index: int, seen: set[str]) -> str:
    key = orig_id if orig_id is not None else str(index)
    if key in seen:
        key = f"{key}#row{index}"
    seen.add(key)
    return key


def _record(
    source_name: str,
    index: int,
    preset: str,
    canon: presets.Canonical,
    answer: str | None,
    answer_source: str,
    mapping: FieldMapping,
    default_domain: str | None,
    prompt_msgs: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One record dict; ``provenance`` records where everything came from (source, row, preset, original id,
    the response's column, the answer's source, and the answer type and tests when known)."""
    provenance = {"source": source_name, "row": str(index), "preset": preset}
    if canon.id is not None:
        provenance["orig_id"] = canon.id
    provenance["response_field"] = canon.response_field if canon.response is not None else ""
    if answer is not None:
        provenance["answer_source"] = answer_source
    provenance.update(canon.provenance)
    if mapping.answer_type != "auto":
        provenance["answer_type"] = mapping.answer_type
    if prompt_msgs is None:
        prompt_msgs = [{"role": "user", "content": canon.prompt}] if canon.prompt else []
    domain = domains.canonical_label(canon.domain) if canon.domain else None
    # A domain column's value wins over the source's default; an adapter's domain is itself a default
    # ("code"), so the source's setting wins over it.
    adapted = preset in presets.ADAPTERS
    return {
        "source": source_name,
        "domain": (default_domain or domain) if adapted else (domain or default_domain),
        "messages": prompt_msgs,
        "response": canon.response,
        "answer": answer,
        "verification": "unknown",
        "provenance": provenance,
    }


def records_from_rows(
    rows: Iterable[Mapping[str, Any]] | pa.Table,
    mapping: FieldMapping,
    source_name: str,
    *,
    start_index: int = 0,
    fields_path: str = "FieldMapping",
    seen_keys: set[str] | None = None,
) -> pa.Table:
    """Record-schema table of the rows of one source (``start_index`` = row index of the first row,
    for sources read in shards; pass the same ``seen_keys`` set to every shard of a source, so an
    original id repeated across shards is told apart as it would be in one call). Rows without a prompt
    are kept with empty messages: the ``empty_prompt`` rule filter drops and counts them. Errors name the
    mapping as ``fields_path``."""
    if not source_name or not source_name.strip():
        raise IngestError("source_name must be the source's non-empty name from the spec")
    columns, it = _iter_rows(rows)
    m = resolve_mapping(mapping, columns, fields_path=fields_path)
    default_domain = domains.canonical_label(mapping.default_domain) if mapping.default_domain else None
    out: list[dict[str, Any]] = []
    prompt_texts: list[str] = []
    keys: list[str] = []
    seen: set[str] = set() if seen_keys is None else seen_keys
    adapter = presets.ADAPTERS.get(m.preset)
    for offset, row in enumerate(it):
        index = start_index + offset
        if adapter is not None:
            canon = adapter(row, mapping.choice_seed)
            out.append(_record(source_name, index, m.preset, canon, canon.answer, "reference", mapping, default_domain))
            prompt_texts.append(canon.prompt)
            keys.append(_unique_key(canon.id, index, seen))
            continue
        response_field = m.response
        if m.messages:
            msgs = _chat(row.get(m.messages))
            last = max((i for i, x in enumerate(msgs) if x["role"] == "assistant"), default=-1)
            if last >= 0 and last == len(msgs) - 1:
                prompt_msgs, response = msgs[:last], _text(msgs[last]["content"])
                response_field = m.messages
            else:
                prompt_msgs, response = msgs, _text(row.get(m.response)) if m.response else None
        else:
            text = _text(row.get(m.prompt)) or ""
            extra = _text(row.get(m.prompt_input)) if m.prompt_input else None
            if extra:
                text = f"{text}\n\n{extra}" if text else extra
            prompt_msgs = [{"role": "user", "content": text}] if text else []
            response = _text(row.get(m.response)) if m.response else None
        answer = None
        answer_source = "reference"
        raw_answer = _text(row.get(m.answer)) if m.answer else None
        if raw_answer is not None:
            answer = answers.extract_answer(raw_answer, last_line_fallback=mapping.answer_last_line_fallback)
            if answer is None and "\\boxed" not in raw_answer and "####" not in raw_answer:
                answer = raw_answer.strip()
            if response is None and "####" in raw_answer:
                response = _text(raw_answer.rsplit("####", 1)[0].strip())  # GSM8K: the reasoning is the solution
                response_field = m.answer
        elif response is not None:
            answer = answers.extract_answer(response)
            answer_source = "response"  # the self-reference: never a verification of this response
        orig_id = _text(row.get(m.id)) if m.id else None
        domain_value = _text(row.get(m.domain)) if m.domain else None
        canon = presets.Canonical(
            prompt="",
            response=response,
            id=orig_id,
            domain=domains.canonical_label(domain_value) if domain_value else None,
            response_field=response_field or "",
        )
        out.append(_record(source_name, index, m.preset, canon, answer, answer_source, mapping, default_domain, prompt_msgs))
        prompt_texts.append("\n".join(x["content"] for x in prompt_msgs if x["role"] == "user"))
        keys.append(_unique_key(orig_id, index, seen))
    for rec, norm, key in zip(out, normalize.normalize_array(prompt_texts).to_pylist(), keys):
        rec["id"] = hashlib.sha1(f"{source_name}\x1f{norm}\x1f{key}".encode()).hexdigest()
    return records.to_table(out)
