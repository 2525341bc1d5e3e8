"""The generation layer's decisions and its on-disk format, without vLLM."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from infialign.pipeline import generation
from infialign.pipeline.generation import store
from infialign.pipeline.runtime import entrypoint
from infialign.pipeline.runtime.config import StorageConfig

SAMPLING = generation.Sampling(n=2, temperature=0.6, top_p=0.95, max_tokens=64)


def _prompts(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "messages": [[{"role": "user", "content": f"q {i}"}] for i in ids]})


def _rows(ids: list[str], n: int = 2) -> pa.Table:
    return store.rows_to_table(
        [{"id": i, "sample": s, "text": f"{i}/{s}", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 4} for i in ids for s in range(n)]
    )


# ---------------------------------------------------------------- sharding


def test_shards_partition_the_prompts_evenly_whatever_the_row_order() -> None:
    ids = [f"p{i:03d}" for i in range(11)]
    owned = [generation.shard_rows(ids, generation.Shard(i, 3)) for i in range(3)]
    assert sorted(r for rows in owned for r in rows) == list(range(11))  # every row once
    assert sorted(len(rows) for rows in owned) == [3, 4, 4]
    reversed_ids = ids[::-1]
    again = [{reversed_ids[r] for r in generation.shard_rows(reversed_ids, generation.Shard(i, 3))} for i in range(3)]
    assert again == [{ids[r] for r in rows} for rows in owned]  # the same ids, not the same positions


def test_duplicate_ids_cannot_be_sharded() -> None:
    with pytest.raises(generation.ShardError, match="unique"):
        generation.shard_rows(["a", "a"], generation.Shard(0, 1))


@pytest.mark.parametrize(
    ("env", "configured", "shards", "leader"),
    [
        ({}, 3, [(0, 3), (1, 3), (2, 3)], True),  # local executor: all shards in turn, as the leader
        ({"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2"}, 2, [(0, 2)], True),
        ({"INFIALIGN_SHARD_INDEX": "1", "INFIALIGN_SHARD_COUNT": "2"}, 2, [(1, 2)], False),
    ],
)
def test_which_shards_a_process_runs(env: dict[str, str], configured: int, shards: list[tuple[int, int]], leader: bool) -> None:
    got, is_leader = generation.local_shards(env, configured)
    assert [(s.index, s.count) for s in got] == shards and is_leader is leader


def test_bad_shard_environment_is_rejected() -> None:
    with pytest.raises(generation.ShardError):
        generation.Shard.from_env({"INFIALIGN_SHARD_INDEX": "2", "INFIALIGN_SHARD_COUNT": "2"})
    with pytest.raises(generation.ShardError, match="not integers"):
        generation.Shard.from_env({"INFIALIGN_SHARD_INDEX": "x"})


def test_only_shard_zero_and_node_zero_lead() -> None:
    assert entrypoint.is_leader({})
    assert entrypoint.is_leader({"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2"})
    assert not entrypoint.is_leader({"INFIALIGN_SHARD_INDEX": "1", "INFIALIGN_SHARD_COUNT": "2"})
    assert not entrypoint.is_leader({"PET_NODE_RANK": "1"})


# ---------------------------------------------------------------- engine choices and seeds


def test_cpu_engine_is_eager_fp32_in_process_with_a_bounded_kv_cache() -> None:
    plan = generation.engine_plan(Path("/m"), generation.EngineOptions(), device="cpu", env={})
    assert plan.kwargs["enforce_eager"] is True and plan.kwargs["dtype"] == "float32"
    assert plan.kwargs["distributed_executor_backend"] == "uni" and plan.env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert plan.kwargs["kv_cache_memory_bytes"] == 2**30 and plan.kwargs["enable_prefix_caching"] is True
    # an operator-set VLLM_CPU_KVCACHE_SPACE wins over our default
    assert "kv_cache_memory_bytes" not in generation.engine_plan(Path("/m"), generation.EngineOptions(), device="cpu", env={"VLLM_CPU_KVCACHE_SPACE": "4"}).kwargs


def test_gpu_engine_is_compiled_multiprocess_with_the_checkpoint_dtype() -> None:
    options = generation.EngineOptions(tensor_parallel=4, max_model_len=32768)
    plan = generation.engine_plan(Path("/m"), options, device="cuda", env={})
    assert plan.kwargs["enforce_eager"] is False and plan.kwargs["dtype"] == "auto"
    assert plan.kwargs["tensor_parallel_size"] == 4 and plan.kwargs["max_model_len"] == 32768
    assert "distributed_executor_backend" not in plan.kwargs and "kv_cache_memory_bytes" not in plan.kwargs and plan.env == {}
    explicit = generation.engine_plan(Path("/m"), generation.EngineOptions(enforce_eager=True, dtype="bfloat16"), device="cuda", env={})
    assert explicit.kwargs["enforce_eager"] is True and explicit.kwargs["dtype"] == "bfloat16"


def test_a_prompts_seed_depends_on_the_prompt_not_its_position() -> None:
    assert generation.request_seed(0, "a") == generation.request_seed(0, "a")
    assert generation.request_seed(0, "a") != generation.request_seed(0, "b")
    assert generation.request_seed(0, "a") != generation.request_seed(1, "a")
    assert 0 <= generation.request_seed(7, "x") < 2**31


def test_system_prompt_is_prepended_unless_the_record_has_one() -> None:
    user = [{"role": "user", "content": "q"}]
    assert generation.with_system_prompt(user, "S")[0] == {"role": "system", "content": "S"}
    own = [{"role": "system", "content": "mine"}, *user]
    assert generation.with_system_prompt(own, "S") == own
    assert generation.with_system_prompt(user, None) == user


# ---------------------------------------------------------------- the shard directory


def test_fingerprint_covers_model_sampling_system_prompt_and_prompts() -> None:
    base = generation.fingerprint("m", _prompts(["a", "b"]), SAMPLING, "S")
    assert base == generation.fingerprint("m", _prompts(["a", "b"]), SAMPLING, "S")
    assert base != generation.fingerprint("m2", _prompts(["a", "b"]), SAMPLING, "S")
    assert base != generation.fingerprint("m", _prompts(["a", "c"]), SAMPLING, "S")
    assert base != generation.fingerprint("m", _prompts(["a", "b"]), SAMPLING.model_copy(update={"temperature": 0.7}), "S")
    assert base != generation.fingerprint("m", _prompts(["a", "b"]), SAMPLING, None)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_parts_are_read_back_by_fingerprint_deduplicated_and_stale_ones_removed(tmp_path: Path, where: str, request) -> None:
    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        storage, out = StorageConfig(root="s3://infialign/x", endpoint=endpoint), "s3://infialign/x/gen/shard/"
    else:
        storage, out = StorageConfig(root=tmp_path.as_uri()), (tmp_path / "gen" / "shard").as_uri() + "/"
    assert store.next_part_index(out, storage) == 0 and store.read_parts(out, storage, "fp").num_rows == 0
    store.write_part(out, 0, _rows(["a", "b"]), "fp", storage)
    store.write_part(out, 1, _rows(["b", "c"]), "fp", storage)  # "b" twice: a duplicate pod's part
    store.write_part(out, 2, _rows(["z"]), "old", storage)
    assert store.next_part_index(out, storage) == 3
    table = store.read_parts(out, storage, "fp")
    assert sorted(zip(table.column("id").to_pylist(), table.column("sample").to_pylist())) == [(i, s) for i in "abc" for s in (0, 1)]
    assert store.remove_stale(out, storage, "fp") == 1
    assert store.next_part_index(out, storage) == 2


def test_interrupted_local_writes_are_not_parts(tmp_path: Path) -> None:
    out = tmp_path / "shard"
    out.mkdir()
    (out / ".part-00000.parquet.1a2b3c4d.tmp").write_bytes(b"half a file")
    assert store.next_part_index(out.as_uri(), None) == 0 and store.read_parts(out.as_uri(), None, "fp").num_rows == 0


# ---------------------------------------------------------------- finished prompts are handed on at once


class _FakeEngine:
    """Finishes one request per step, in the order they were added (enough to drive `generate`'s loop)."""

    identity = "fake-model"

    def __init__(self) -> None:
        self.queue: list[str] = []

    def render(self, conversation: list[dict[str, str]]) -> list[int]:
        return [1, 2, 3]

    def sampling_params(self, sampling: generation.Sampling, prompt_id: str) -> object:
        return sampling

    def add(self, request_id: str, token_ids: list[int], params: object) -> None:
        self.queue.append(request_id)

    def has_unfinished(self) -> bool:
        return bool(self.queue)

    def step(self) -> list[object]:
        from types import SimpleNamespace

        rid = self.queue.pop(0)
        outputs = [SimpleNamespace(index=k, text=f"r{rid}/{k}", finish_reason="stop", token_ids=[7, 8], cumulative_logprob=None) for k in range(2)]
        return [SimpleNamespace(request_id=rid, finished=True, prompt_token_ids=[1, 2, 3], outputs=outputs)]

    def abort(self, request_ids: list[str]) -> None:
        pass


def test_each_finished_prompt_is_handed_on_once_and_resumed_ones_are_not(tmp_path: Path) -> None:
    out = tmp_path.as_uri()
    store.write_part(out, 0, _rows(["a"]), store.fingerprint("fake-model", _prompts(["a", "b", "c"]), SAMPLING, None), None)
    seen: list[list[tuple[str, int]]] = []
    result = generation.generate(
        _FakeEngine(), _prompts(["a", "b", "c"]), SAMPLING, out=out, storage=None, chunk_prompts=1,
        on_finished=lambda rows: seen.append([(r["id"], r["sample"]) for r in rows]),
    )
    assert seen == [[("b", 0), ("b", 1)], [("c", 0), ("c", 1)]]  # "a" came back from the earlier part
    assert sorted(zip(result.column("id").to_pylist(), result.column("sample").to_pylist(), strict=True)) == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]
