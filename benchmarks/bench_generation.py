"""Generation layer overhead benchmark (started by hand; not part of the test suite).

    OMP_NUM_THREADS=1 PYTHONPATH=pipeline:operator .venv/bin/python benchmarks/bench_generation.py [--prompts 64] [--n 4] [--max-tokens 128] [--rounds 3]

One vLLM engine (the tiny model on CPU, or any model with --model), the same prompts and sampling,
in the same process, alternating rounds:

* raw: `LLM.generate` on the chat-rendered prompts with the same per-prompt seeds — vLLM alone;
* layer: `generation.generate` — rendering, the engine loop, part files written every `--chunk`
  prompts (Parquet, temp + rename), `_PROGRESS.json`, a heartbeat callback and `_DONE.json`, into a
  fresh directory each round.

Prints generated tokens/s of each (median over rounds) and layer ÷ raw, also per round (the two runs of a
round are back to back, so a neighbour's load on shared cores hits both alike). Target: ≥ 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin://tiny", help="builtin://tiny or a local Hugging Face model directory")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=16, help="prompts per part file in the layer runs")
    args = parser.parse_args()

    from vllm import TokensPrompt

    from infialign.pipeline import generation
    from infialign.pipeline.world import reasoning, tiny_model

    model_dir = Path(tiny_model.resolve_model_uri(args.model)) if args.model.startswith("builtin://") else Path(args.model)
    prompts = reasoning.benchmark(n=args.prompts).select(["id", "messages"])
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    sampling = generation.Sampling(n=args.n, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    ids = prompts.column("id").to_pylist()
    messages = prompts.column("messages").to_pylist()

    with generation.open_engine(model_dir, generation.EngineOptions(max_model_len=512 if args.model == "builtin://tiny" else None)) as engine:
        def raw() -> tuple[int, float]:
            started = time.perf_counter()
            # rendering the chat template is part of what a raw caller does too (LLM.chat does it inside)
            rendered = [engine.render(generation.with_system_prompt(m, system)) for m in messages]
            params = [engine.sampling_params(sampling, pid) for pid in ids]
            outs = engine.llm.generate([TokensPrompt(prompt_token_ids=t) for t in rendered], params, use_tqdm=False)
            seconds = time.perf_counter() - started
            return sum(len(c.token_ids) for o in outs for c in o.outputs), seconds

        beats: list[float] = []

        def layer() -> tuple[int, float]:
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                table = generation.generate(
                    engine, prompts, sampling, out=Path(tmp).as_uri(), storage=None, system_prompt=system,
                    on_progress=lambda p: beats.append(p.tokens_per_second), chunk_prompts=args.chunk,
                )
                seconds = time.perf_counter() - started
            return sum(table.column("completion_tokens").to_pylist()), seconds

        raw()  # warm-up: first-batch allocations and caches are not part of either side
        results: dict[str, list[float]] = {"raw": [], "layer": []}
        ratios: list[float] = []
        tokens: dict[str, int] = {}
        for r in range(args.rounds):
            for name, fn in (("raw", raw), ("layer", layer)) if r % 2 == 0 else (("layer", layer), ("raw", raw)):
                n_tokens, seconds = fn()
                tokens[name] = n_tokens
                results[name].append(n_tokens / seconds)
                print(f"round {r} {name:5s}: {n_tokens} tokens in {seconds:.3f} s = {n_tokens / seconds:,.0f} tokens/s")
            ratios.append(results["layer"][-1] / results["raw"][-1])
    raw_tps, layer_tps = statistics.median(results["raw"]), statistics.median(results["layer"])
    print(f"\nprompts={args.prompts} n={args.n} max_tokens={args.max_tokens} chunk={args.chunk} rounds={args.rounds} device={engine.device}")
    print(f"tokens per run: raw {tokens['raw']}, layer {tokens['layer']} (same seeds, same samples)")
    print(f"raw LLM.generate : {raw_tps:,.0f} generated tokens/s (median)")
    print(f"generation layer : {layer_tps:,.0f} generated tokens/s (median), {len(beats)} heartbeat callbacks")
    print(f"ratio layer/raw  : {layer_tps / raw_tps:.3f} of medians; per-round ratios {[round(x, 3) for x in ratios]}, "
          f"median {statistics.median(ratios):.3f} (target ≥ 0.95)")


if __name__ == "__main__":
    main()
