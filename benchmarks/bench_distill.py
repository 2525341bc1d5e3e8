"""`distill` stage throughput vs raw `LLM.generate` (started by hand; not part of the test suite).

    OMP_NUM_THREADS=1 PYTHONPATH=pipeline:operator .venv/bin/python benchmarks/bench_distill.py [--records 64] [--n 4] [--max-tokens 256] [--rounds 3]

Both sides in the same process, on the same prompts with the same sampling and per-prompt seeds, and
both *including* their engine start (the stage starts its own), alternating which goes first per round:

* raw: `open_engine` + `LLM.generate` of the chat-rendered prompts — vLLM alone;
* stage: the whole `distill` stage through `entrypoint.run_stage` (one round, `maxRetries: 0`): read
  the pool, materialise the teacher, open the engine, generate with part files and heartbeats, verify
  every sample (math-verify in its process pool), rejection-sample, write the distilled pool, funnel
  and markers, into a fresh output each round.

Prints generated tokens/s of each (median over rounds) and stage ÷ raw. Target (issue 9): ≥ 0.95.

A second ratio leaves the engine start and shutdown out of both sides: raw's `LLM.generate` call alone
against the stage's own generation rate (`generated_tokens_per_second` in its marker: tokens over the
seconds of its `generate` calls, which include handing finished samples to the verifier). The whole-attempt
ratio also carries the stage's fixed costs (the dataset card, markers); on a run of minutes they fade, the
per-token costs do not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="builtin://tiny-teacher", help="a builtin:// model or a local Hugging Face model directory")
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from vllm import TokensPrompt

    from infialign.pipeline import generation, records
    from infialign.pipeline.api import AlignmentRun, DistillStage
    from infialign.pipeline.runtime import entrypoint, markers
    from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config
    from infialign.pipeline.stages import distill
    from infialign.pipeline.world import reasoning, tiny_model

    teacher_dir = Path(tiny_model.resolve_model_uri(args.teacher)) if args.teacher.startswith("builtin://") else Path(args.teacher)
    world = records.to_records(reasoning.generate(args.records, seed=777, mix=reasoning.PlantMix().scaled(0.0)).table)
    pool = [{**r, "response": None, "verification": "unknown"} for r in world]  # every record goes to the teacher
    settings = {"samples": args.n, "maxTokens": args.max_tokens, "maxRetries": 0, "maxModelLen": 512, "temperature": 0.6, "topP": 0.95}
    sampling = distill.round_sampling(DistillStage.model_validate(settings), 0)
    system = DistillStage().system_prompt

    generating: dict[str, list[float]] = {"raw": [], "stage": []}

    def raw() -> tuple[int, float]:
        started = time.perf_counter()
        with generation.open_engine(teacher_dir, generation.EngineOptions(max_model_len=512)) as engine:
            rendered = [engine.render(generation.with_system_prompt(r["messages"], system)) for r in pool]
            params = [engine.sampling_params(sampling, r["id"]) for r in pool]
            began = time.perf_counter()
            outs = engine.llm.generate([TokensPrompt(prompt_token_ids=t) for t in rendered], params, use_tqdm=False)
            tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
            generating["raw"].append(tokens / (time.perf_counter() - began))
        return tokens, time.perf_counter() - started

    def stage() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as tmp:
            pool_path = Path(tmp) / "pool.parquet"
            pq.write_table(records.to_table(pool), pool_path)
            spec = AlignmentRun.model_validate(
                {
                    "apiVersion": "infialign.dev/v1alpha1", "kind": "AlignmentRun", "metadata": {"name": "bench", "namespace": "ns"},
                    "spec": {
                        "model": {"uri": "builtin://tiny"}, "teacher": {"uri": args.teacher},
                        "stages": {**{s: {"enabled": False} for s in ("curate", "select", "sft", "prefs", "dpo", "eval")},
                                   "distill": {**settings, "poolUri": pool_path.as_uri()}},
                    },
                }
            ).spec
            storage = StorageConfig(root=(Path(tmp) / "artifacts").as_uri())
            config = build_stage_config(spec, RunIdentity(namespace="ns", name="bench"), "distill", 1, storage, TrackingConfig(enabled=False))
            started = time.perf_counter()
            code = entrypoint.run_stage(config, distill, scratch=Path(tmp))
            seconds = time.perf_counter() - started
            if code != 0:
                raise SystemExit(f"the distill stage failed with exit code {code}")
            marker = markers.read_success(config.output, storage)
            assert marker is not None
            generating["stage"].append(float(marker.metrics["generated_tokens_per_second"]))
            return int(marker.metrics["generated_tokens"]), seconds

    raw()  # warm-up: vLLM's first import and engine start are part of neither side
    results: dict[str, list[float]] = {"raw": [], "stage": []}
    tokens: dict[str, int] = {}
    ratios: list[float] = []
    for r in range(args.rounds):
        for name, fn in (("raw", raw), ("stage", stage)) if r % 2 == 0 else (("stage", stage), ("raw", raw)):
            n_tokens, seconds = fn()
            tokens[name] = n_tokens
            results[name].append(n_tokens / seconds)
            print(f"round {r} {name:5s}: {n_tokens} tokens in {seconds:.2f} s = {n_tokens / seconds:,.0f} tokens/s", flush=True)
        ratios.append(results["stage"][-1] / results["raw"][-1])
    raw_tps, stage_tps = statistics.median(results["raw"]), statistics.median(results["stage"])
    print(f"\nteacher={args.teacher} records={args.records} n={args.n} max_tokens={args.max_tokens} rounds={args.rounds}")
    print(f"tokens per run: raw {tokens['raw']}, stage {tokens['stage']} (same seeds, same samples)")
    print(f"raw open_engine + LLM.generate : {raw_tps:,.0f} generated tokens/s (median)")
    print(f"distill stage (whole attempt)  : {stage_tps:,.0f} generated tokens/s (median)")
    print(f"ratio stage/raw                : {stage_tps / raw_tps:.3f} of medians; per-round {[round(x, 3) for x in ratios]}, "
          f"median {statistics.median(ratios):.3f} (target ≥ 0.95)")
    measured = generating["raw"][1:]  # the warm-up's call is not a round
    gen_raw, gen_stage = statistics.median(measured), statistics.median(generating["stage"])
    print(f"generation alone (no engine start): raw LLM.generate {gen_raw:,.0f}, stage {gen_stage:,.0f} tokens/s, "
          f"ratio {gen_stage / gen_raw:.3f}")


if __name__ == "__main__":
    main()
