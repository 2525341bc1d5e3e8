"""LLM judge for open-ended answers (seeds §1.6: "Open-ended tasks get LLM quality scores →
low-confidence answers walk the plank"; [RECON] a JSON ``{"score": 1-10, "reason": …}``, keep ≥ 8).

One ``POST {endpoint}/chat/completions`` per response (OpenAI-compatible: vLLM's server in clusters),
at temperature 0, through urllib (no client dependency). The prompt template fills ``{prompt}``,
``{response}`` (the text after ``</think>``) and ``{reference}`` by plain replacement, so literal braces
in the template (a JSON example) need no escaping. Any failure (HTTP, timeout, a reply without a score)
is an ``error`` verdict carrying the reason; it never raises.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from infialign.pipeline.curation import answers

__all__ = ["JudgeConfig", "check", "parse_score", "render"]

_SCORE = re.compile(r'"?score"?\s*[:=]\s*(-?\d+(?:\.\d+)?)', re.IGNORECASE)
_MAX_FIELD = 16_000


@dataclass(frozen=True)
class JudgeConfig:
    endpoint: str
    model: str
    prompt_template: str
    threshold: float
    timeout_s: float
    max_tokens: int = 256
    api_key_env: str | None = None


def render(template: str, prompt: str, response: str, reference: str | None) -> str:
    out = template.replace("{prompt}", prompt[:_MAX_FIELD]).replace("{response}", answers.after_think(response).strip()[:_MAX_FIELD])
    return out.replace("{reference}", (reference or "(none)")[:_MAX_FIELD])


def parse_score(content: str) -> tuple[float, str] | None:
    """``(score, reason)`` from the judge's reply: the first JSON object with a numeric ``score``, else a
    ``score: 7`` pattern; None when neither is there."""
    for m in re.finditer(r"\{.*?\}", content, re.DOTALL):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)) and not isinstance(obj.get("score"), bool):
            return float(obj["score"]), str(obj.get("reason", ""))
    m = _SCORE.search(content)
    return (float(m.group(1)), "") if m else None


def _post(cfg: JudgeConfig, body: dict[str, object]) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(cfg.endpoint.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
        return json.loads(resp.read().decode())


def check(prompt: str, response: str, reference: str | None, cfg: JudgeConfig) -> tuple[str, str]:
    """``(status, reason)``: ``pass`` when the score ≥ threshold, ``fail`` below, ``error`` on any failure."""
    body = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": render(cfg.prompt_template, prompt, response, reference)}],
        "temperature": 0.0,
        "max_tokens": cfg.max_tokens,
    }
    try:
        reply = _post(cfg, body)
    except urllib.error.HTTPError as e:
        return "error", f"judge {cfg.endpoint} answered HTTP {e.code}: {e.read().decode(errors='replace')[:120]}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, ValueError) as e:
        return "error", f"judge {cfg.endpoint} unreachable: {type(e).__name__}: {str(e)[:120]}"
    try:
        content = str(reply["choices"][0]["message"]["content"])  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return "error", f"judge reply is not a chat completion: {json.dumps(reply)[:120]}"
    parsed = parse_score(content)
    if parsed is None:
        return "error", f"judge reply has no score: {content.strip()[:120]!r}"
    score, why = parsed
    ok = score >= cfg.threshold
    return ("pass" if ok else "fail"), f"judge score {score:g} {'≥' if ok else '<'} {cfg.threshold:g}" + (f": {why[:100]}" if why else "")
