"""Decontamination precision and recall on competition problems: the matcher before issue 12 vs now, same run.

    PYTHONPATH=pipeline python benchmarks/bench_decontam_quality.py

Items, edited leaks and clean near-misses: tests/unit/curation/decontam_fixture.py. "old" is
curation/decontam.py as of commit 99ad631 (loaded with `git show`, so this needs the git checkout); it runs on
today's `_ngrams`, whose functions it calls are unchanged. Prints recall per edit class and the false-positive
rate on the clean near-misses for each configuration.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "curation"))
OLD_COMMIT = "99ad631"

import decontam_fixture as fx  # noqa: E402
from infialign.pipeline.curation import decontam  # noqa: E402


def _old_module():  # noqa: ANN202
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:pipeline/infialign/pipeline/curation/decontam.py"], text=True)
    spec = importlib.util.spec_from_loader("infialign.pipeline.curation._decontam_old", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(src, "decontam@" + OLD_COMMIT, "exec"), module.__dict__)  # noqa: S102  our own file at a fixed commit
    return module


def measure(module, **cfg) -> tuple[dict[str, tuple[int, int]], int]:  # noqa: ANN001
    ids = list(fx.ITEMS)
    config = module.DecontamConfig(**cfg)
    index = module.DecontamIndex.build({"bench": list(fx.ITEMS.values())}, config)

    def hits(text: str) -> set[str]:
        return {ids[int(m.item_id)] for m in index.explain(text, limit=50) if module._is_hit(m.method, m.value, config)}

    recall: dict[str, list[bool]] = defaultdict(list)
    for cls, item, text in fx.LEAKS:
        recall[cls].append(item in hits(text))
    fp = sum(bool(hits(t)) for t in fx.CLEAN)
    return {k: (sum(v), len(v)) for k, v in recall.items()}, fp


def main() -> None:
    old = _old_module()
    rows = [
        ("old, n=8 (default then)", old, {}),
        ("old, n=15 (paper)", old, {"prompt_ngram": 15}),
        ("new, n=8 (default)", decontam, {}),
        ("new, n=15 (paper)", decontam, {"prompt_ngram": 15}),
        ("new, n=8 + numbers+words 0.7", decontam, {"word_overlap": 0.7}),
    ]
    classes = sorted({c for c, _, _ in fx.LEAKS}, key=[c for c, _, _ in fx.LEAKS].index)
    print(f"{len(fx.ITEMS)} items ({sum(1 for t in fx.ITEMS.values() if not any(c.isdigit() for c in t))} without digits), "
          f"{len(fx.LEAKS)} leaks, {len(fx.CLEAN)} clean near-misses\n")
    print(f"{'matcher':32}" + "".join(f"{c:>13}" for c in classes) + f"{'false pos.':>14}")
    for name, module, cfg in rows:
        recall, fp = measure(module, **cfg)
        cells = "".join(f"{f'{recall[c][0]}/{recall[c][1]}':>13}" for c in classes)
        print(f"{name:32}{cells}{f'{fp}/{len(fx.CLEAN)}':>14}")


if __name__ == "__main__":
    main()
