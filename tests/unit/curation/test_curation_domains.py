"""Keyword labels, and the OpenAI-compatible labeller against a tiny local server (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import domains


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("What is the probability that two dice show the same number?", "counting_probability"),
        ("Find the remainder when 2^100 is divided by 7.", "number_theory"),
        ("A triangle has sides 3, 4 and 5. What is the radius of its inscribed circle?", "geometry"),
        ("Solve the quadratic equation x^2 - 5x + 6 = 0.", "algebra"),
        ("What is 12% of 250 dollars?", "prealgebra"),
        ("Compute the derivative of sin(x) x^2.", "calculus"),
        ("Write a Python function that returns the longest increasing subsequence of an array.", "code"),
        ("Tell me a story.", "other"),
    ],
)
def test_math_keyword_labels(prompt, label):
    assert domains.keyword_label(prompt) == label


def test_world_ruleset_labels_the_builtin_world():
    from infialign.pipeline.world import reasoning

    world = reasoning.generate(n=300, seed=5).table
    cfg = domains.KeywordLabellerConfig(ruleset="world")
    texts = [m[0]["content"] for m in world.column("messages").to_pylist()]
    langs = [dict(p).get("language", "en") for p in world.column("provenance").to_pylist()]
    truth = world.column("domain").to_pylist()
    pairs = [(domains.keyword_label(t, cfg), d) for t, d, lang in zip(texts, truth, langs) if lang == "en"]
    agree = sum(a == b for a, b in pairs) / len(pairs)
    assert agree >= 0.97


def test_keyword_step_keeps_existing_domains_unless_overwrite():
    t = make_table(make_record("Find the gcd of 12 and 18.", domain=None), make_record("Solve x + 1 = 2.", domain="mine"))
    out, st = domains.label_domains_keyword(t, domains.KeywordLabellerConfig())
    assert out.column("domain").to_pylist() == ["number_theory", "mine"]
    assert st.counters == {"labelled_number_theory": 1}
    out, _ = domains.label_domains_keyword(t, domains.KeywordLabellerConfig(overwrite=True))
    assert out.column("domain").to_pylist() == ["number_theory", "algebra"]


def test_canonical_label():
    assert domains.canonical_label("Counting & Probability") == "counting_probability"
    assert domains.canonical_label("  Number Theory ") == "number_theory"


class _Handler(BaseHTTPRequestHandler):
    script: ClassVar[list[tuple[int, str]]] = []
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        status, content = type(self).script.pop(0) if type(self).script else (200, '{"label": "algebra"}')
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}]} if status == 200 else {"error": content}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.script = []
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


def _cfg(url: str, **kw) -> domains.OpenAIChatLabellerConfig:
    return domains.OpenAIChatLabellerConfig(base_url=url, model="qwen", backoff_s=0.01, timeout_s=5, **kw)


def test_llm_labeller_sends_a_constrained_request(server, monkeypatch):
    monkeypatch.setenv("TEST_LABEL_KEY", "sk-test")
    lab = domains.OpenAIChatLabeller(_cfg(server, api_key_env="TEST_LABEL_KEY"))
    assert lab.label_one("Solve x + 1 = 2.") == "algebra"
    req = _Handler.seen[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == list(domains.DEFAULT_LABELS)


def test_llm_labeller_retries_5xx_and_falls_back_on_bad_replies(server):
    _Handler.script = [(503, "busy"), (200, '{"label": "Number_Theory"}'), (200, "not json at all"), (200, '{"label": "poetry"}')]
    lab = domains.OpenAIChatLabeller(_cfg(server, concurrency=1))
    assert lab.label(["a", "b", "c"]) == ["number_theory", "other", "other"]
    assert lab.invalid_replies == 2 and len(_Handler.seen) == 4


def test_llm_labeller_fails_fast_on_4xx_and_after_retries(server):
    _Handler.script = [(404, "no such model")]
    with pytest.raises(domains.LabellerError, match="HTTP 404"):
        domains.OpenAIChatLabeller(_cfg(server)).label_one("x")
    _Handler.script = [(500, "down")] * 3
    with pytest.raises(domains.LabellerError, match="after 3 attempts"):
        domains.OpenAIChatLabeller(_cfg(server, max_retries=2)).label_one("x")


def test_llm_step_labels_rows_without_domain(server):
    t = make_table(make_record("Solve x + 1 = 2.", domain=None), make_record("Find gcd.", domain="number_theory"))
    out, st = domains.label_domains_llm(t, _cfg(server))
    assert out.column("domain").to_pylist() == ["algebra", "number_theory"]
    assert st.counters["labelled_algebra"] == 1 and st.counters["invalid_replies"] == 0


def test_unreachable_endpoint_raises_after_retries():
    cfg = domains.OpenAIChatLabellerConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, backoff_s=0.01, timeout_s=1)
    with pytest.raises(domains.LabellerError, match="after 2 attempts"):
        domains.OpenAIChatLabeller(cfg).label_one("x")


def test_fallback_must_be_a_label():
    with pytest.raises(ValueError, match="fallback_label"):
        domains.OpenAIChatLabellerConfig(base_url="http://x", model="m", labels=("a", "b"))


def test_count_matching_equals_one_pass_per_pattern():
    """The alternation halving counts what one kernel per pattern counts: overlapping patterns, anchors
    under (?m), alternations inside a pattern, an empty list."""
    import numpy as np
    import pyarrow as pa

    texts = pa.array(["", "the derivative of x", "limit\nconverge", "a|b", "derivative integral limit", "xlimit", "ab\nb"])
    patterns = [r"\bderivative", r"deriv", r"^limit", r"converge$", r"a\|b|^b$", r"\blimit\b", r"integral", r"^$"]
    want = sum(domains._matches(texts, p).astype(np.int64) for p in patterns)
    assert domains._count_matching(texts, patterns).tolist() == want.tolist()
    for k in range(1, len(patterns)):
        assert domains._count_matching(texts, patterns[:k]).tolist() == sum(domains._matches(texts, p).astype(np.int64) for p in patterns[:k]).tolist()
    assert domains._count_matching(texts, []).tolist() == [0] * len(texts)
