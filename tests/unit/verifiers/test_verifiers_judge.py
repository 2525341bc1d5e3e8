"""The LLM judge against a real HTTP server on 127.0.0.1 speaking OpenAI's /v1/chat/completions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from infialign.pipeline import verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.verifiers import judge


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        text = body["messages"][-1]["content"]
        if "CRASH" in text:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"engine died")
            return
        if "GOOD" in text:
            content = 'Sure. {"score": 9, "reason": "correct and clear"}'
        elif "BAD" in text:
            content = '{"score": 3, "reason": "wrong"}'
        else:
            content = "I cannot grade this."
        reply = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _settings(endpoint: str, **judge_kw: object) -> VerificationSettings:
    return VerificationSettings.model_validate({"judge": {"endpoint": endpoint, "model": "judge-7b", "apiKeyEnv": "JUDGE_TOKEN", **judge_kw}})


def test_scores_pass_fail_and_errors_carry_the_reason(server, monkeypatch):
    monkeypatch.setenv("JUDGE_TOKEN", "s3cret")
    tasks = [
        verifiers.Task(response="<think>hmm</think>GOOD essay", reference=None, answer_type="open", reference_source="none", prompt="Write."),
        verifiers.Task(response="BAD essay", reference="a model answer", answer_type="open", prompt="Write."),
        verifiers.Task(response="GARBLE", reference=None, answer_type="open", prompt="Write."),
        verifiers.Task(response="CRASH", reference=None, answer_type="open", prompt="Write."),
    ]
    v = verifiers.verify_all(tasks, _settings(server))
    assert [x.status for x in v] == ["pass", "fail", "error", "error"]
    assert v[0].reason == "judge score 9 ≥ 8: correct and clear" and v[0].verifier == "judge"
    assert v[1].reason.startswith("judge score 3 < 8") and v[1].reference_source == "reference"
    assert "no score" in v[2].reason and "HTTP 500" in v[3].reason
    first = next(s for s in _Handler.seen if "GOOD" in s["messages"][-1]["content"])
    assert first["path"] == "/v1/chat/completions" and first["model"] == "judge-7b" and first["temperature"] == 0.0
    assert first["auth"] == "Bearer s3cret"
    assert "hmm" not in first["messages"][-1]["content"]  # the judge sees the answer, not the thinking


def test_threshold_is_a_setting_and_an_unreachable_judge_is_an_error(server):
    task = verifiers.Task(response="BAD", reference=None, answer_type="open", prompt="q")
    assert verifiers.verify_all([task], _settings(server, threshold=3))[0].status == "pass"
    dead = verifiers.verify_all([task], _settings("http://127.0.0.1:9/v1", timeoutSeconds=2))[0]
    assert dead.status == "error" and "unreachable" in dead.reason


def test_template_placeholders_and_score_parsing():
    out = judge.render('Q: {prompt}\nA: {response}\nRef: {reference}\n{"score": 1}', "2+2?", "<think>x</think>4", None)
    assert out == 'Q: 2+2?\nA: 4\nRef: (none)\n{"score": 1}'
    assert judge.parse_score('{"score": 7.5, "reason": "ok"}') == (7.5, "ok")
    assert judge.parse_score("Score: 6") == (6.0, "")
    assert judge.parse_score("no number here") is None


def test_judge_settings_need_a_model_with_an_endpoint():
    with pytest.raises(ValueError, match="judge.model is required"):
        VerificationSettings.model_validate({"judge": {"endpoint": "http://x:8000/v1"}})
