"""The embedding check flags a cosine strictly above the threshold, as the source says ("> 0.9")."""

from __future__ import annotations

from infialign.pipeline.curation import decontam, embed


def test_cosine_at_the_threshold_is_not_a_leak_and_above_it_is():
    cfg = decontam.DecontamConfig(embedding=embed.EmbedConfig(backend="hashing"), embedding_threshold=0.9)
    assert not decontam._is_hit("cosine", 0.9, cfg)
    assert decontam._is_hit("cosine", 0.9001, cfg)
