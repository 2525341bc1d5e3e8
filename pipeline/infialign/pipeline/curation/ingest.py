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

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    if isinstance(rows, pa.Table):
        m = resolve_mapping(mapping, rows.column_names, fields_path=fields_path)
        if _is_flat(m, rows):
            return _flat_records(rows, m, mapping, source_name, start_index, set() if seen_keys is None else seen_keys)
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


# ---------------------------------------------------------------------------------------------------------
# the columnar path: flat layouts (a prompt column, no chat list, no row adapter) of string columns


@functools.cache
def _blank_pattern() -> str:
    """The RE2 pattern of a text made only of characters ``str.strip()`` removes, so a column is blanked
    exactly as ``_text`` blanks one value. Built on first use: scanning every code point costs ~50 ms,
    which every import of curation (each row worker's too) would pay otherwise."""
    return "^[" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace()) + "]*$"


_STRINGS: Final = (pa.string(), pa.large_string(), pa.null())


def _is_flat(m: ResolvedMapping, table: pa.Table) -> bool:
    """Whether :func:`_flat_records` can map this batch: a flat layout whose mapped columns hold strings
    (other types go through ``str(value)`` row by row, as before)."""
    if m.messages or m.preset in presets.ADAPTERS:
        return False
    used = [c for c in (m.prompt, m.prompt_input, m.response, m.answer, m.id, m.domain) if c]
    return all(table.schema.field(c).type in _STRINGS for c in used)


def _texts(table: pa.Table, column: str | None) -> pa.Array:
    """``_text`` of a whole column: strings, null where missing or blank (an unmapped column is all null)."""
    if not column:
        return pa.nulls(table.num_rows, pa.string())
    arr = table.column(column).combine_chunks().cast(pa.string())
    if len(arr) == 0:
        return arr
    return pc.if_else(pc.match_substring_regex(arr, _blank_pattern()), pa.scalar(None, pa.string()), arr)


def _flat_records(
    table: pa.Table, m: ResolvedMapping, mapping: FieldMapping, source_name: str, start_index: int, seen: set[str]
) -> pa.Table:
    """:func:`records_from_rows` of a flat batch, column by column: the same table the row path builds
    (tests/unit/curation/test_curation_ingest.py compares them), without a Python dict per row. Only the
    answer extraction, the ids and the unique keys stay per row. Measured on 100k NuminaMath-layout long-CoT
    rows: the row path's ~12.8 CPU s was most of the driver's work at 1M rows (issue 12)."""
    n = table.num_rows
    prompt, extra = _texts(table, m.prompt), _texts(table, m.prompt_input)
    text = prompt.fill_null("")
    if m.prompt_input:
        joined = pc.binary_join_element_wise(text, extra.fill_null(""), "\n\n")
        text = pc.if_else(pc.is_null(extra), text, pc.if_else(pc.equal(text, ""), extra, joined))
    has_prompt = pc.not_equal(text, "").to_numpy(zero_copy_only=False)
    msg_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(has_prompt, out=msg_offsets[1:])
    contents = text.filter(pa.array(has_prompt))
    messages = pa.ListArray.from_arrays(
        pa.array(msg_offsets),
        pa.StructArray.from_arrays([pa.array(["user"] * len(contents), pa.string()), contents], fields=list(records.MESSAGE_TYPE)),
    )
    response = _texts(table, m.response)
    raw_answers = _texts(table, m.answer).to_pylist() if m.answer else [None] * n
    has_response = pc.is_valid(response).to_numpy(zero_copy_only=False)
    # Responses are only read as Python strings where the answer must come from them.
    need = [i for i in range(n) if raw_answers[i] is None and has_response[i]]
    from_response = dict(zip(need, response.take(pa.array(need, pa.int64())).to_pylist())) if need else {}
    answer: list[str | None] = [None] * n
    answer_source: list[str | None] = [None] * n
    replaced: dict[int, str | None] = {}  # GSM8K: the reasoning before #### becomes the response
    for i in range(n):
        raw = raw_answers[i]
        if raw is not None:
            a = answers.extract_answer(raw, last_line_fallback=mapping.answer_last_line_fallback)
            if a is None and "\\boxed" not in raw and "####" not in raw:
                a = raw.strip()
            if not has_response[i] and "####" in raw:
                replaced[i] = _text(raw.rsplit("####", 1)[0].strip())
            answer[i], answer_source[i] = a, None if a is None else "reference"
        elif i in from_response:
            a = answers.extract_answer(from_response[i])
            answer[i], answer_source[i] = a, None if a is None else "response"
    if replaced:
        rows = sorted(replaced)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        response = pc.replace_with_mask(response, pa.array(mask), pa.array([replaced[i] for i in rows], pa.string()))
    response_field = np.full(n, m.response or "", dtype=object)
    response_field[list(replaced)] = m.answer
    response_field[~pc.is_valid(response).to_numpy(zero_copy_only=False)] = ""
    orig_ids = _texts(table, m.id).to_pylist()
    index = range(start_index, start_index + n)
    keys = [_unique_key(orig_ids[k], index[k], seen) for k in range(n)]
    norm = normalize.normalize_array(text).to_pylist()
    ids = [hashlib.sha1(f"{source_name}\x1f{norm[k]}\x1f{keys[k]}".encode()).hexdigest() for k in range(n)]
    # provenance: the row path's keys in its order, each present where the row path writes it
    slots = [
        ("source", np.full(n, source_name, dtype=object), np.ones(n, bool)),
        ("row", np.array([str(i) for i in index], dtype=object), np.ones(n, bool)),
        ("preset", np.full(n, m.preset, dtype=object), np.ones(n, bool)),
        ("orig_id", np.array(orig_ids, dtype=object), np.array([x is not None for x in orig_ids], bool)),
        ("response_field", response_field, np.ones(n, bool)),
        ("answer_source", np.array(answer_source, dtype=object), np.array([a is not None for a in answer], bool)),
        ("answer_type", np.full(n, mapping.answer_type, dtype=object), np.full(n, mapping.answer_type != "auto")),
    ]
    present = np.stack([s[2] for s in slots], axis=1)
    values = np.stack([s[1] for s in slots], axis=1)[present]
    names = np.array([s[0] for s in slots], dtype=object)[np.nonzero(present)[1]]
    prov_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=prov_offsets[1:])
    provenance = pa.MapArray.from_arrays(pa.array(prov_offsets), pa.array(names, pa.string()), pa.array(values, pa.string()))
    out = pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(np.full(n, source_name, dtype=object), pa.string()),
            _flat_domains(table, m, mapping),
            messages,
            response,
            pa.array(answer, pa.string()),
            pa.array(np.full(n, "unknown", dtype=object), pa.string()),
            pa.nulls(n, pa.int32()),
            pa.nulls(n, pa.int32()),
            pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()), pa.array([], pa.float64())),
            provenance,
        ],
        schema=records.RECORD_SCHEMA,
    )
    return records.validate_table(out)


def _flat_domains(table: pa.Table, m: ResolvedMapping, mapping: FieldMapping) -> pa.Array:
    """The row path's domain: the column's value canonicalised (twice, as ``_record`` does), else the default."""
    default = domains.canonical_label(mapping.default_domain) if mapping.default_domain else None
    values = _texts(table, m.domain)
    if values.null_count == len(values):
        return pa.array([default] * len(values), pa.string())
    enc = pc.dictionary_encode(values)
    labels = []
    for v in enc.dictionary.to_pylist():
        once = domains.canonical_label(v) if v else None
        labels.append((domains.canonical_label(once) if once else None) or default)
    mapped = pa.array(labels, pa.string()).take(enc.indices)
    return mapped.fill_null(default) if default is not None else mapped
