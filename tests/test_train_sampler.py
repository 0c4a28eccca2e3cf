"""MetaGroupSampler: whole meta-groups per generation batch, TRL's RepeatSampler layout, seed-only determinism."""

from __future__ import annotations

import pytest

from air_align.training.sampler import MetaGroupSampler

# 4 meta-groups of 3 prompts, interleaved in the dataset: rows 0..11, group of row i = "g{i % 4}".
GROUPS = [f"g{i % 4}" for i in range(12)]


def test_layout_matches_repeat_sampler_over_whole_meta_groups():
    # K = 2 copies in a row, B_u = 6 prompts = 2 meta-groups, each chunk replayed twice; no shuffle:
    # chunk 0 = g0 (rows 0, 4, 8) + g1 (rows 1, 5, 9); chunk 1 = g2 + g3.
    s = MetaGroupSampler(GROUPS, mini_repeat_count=2, batch_size=6, repeat_count=2, shuffle=False)
    got = list(s)
    chunk0 = [0, 0, 4, 4, 8, 8, 1, 1, 5, 5, 9, 9]
    chunk1 = [2, 2, 6, 6, 10, 10, 3, 3, 7, 7, 11, 11]
    assert got == chunk0 * 2 + chunk1 * 2
    assert len(s) == len(got) == 48  # 2 chunks × 6 prompts × K 2 × repeat 2


def test_every_generation_batch_holds_whole_meta_groups_and_order_depends_only_on_seed_and_epoch():
    a = MetaGroupSampler(GROUPS, mini_repeat_count=3, batch_size=6, seed=7)
    b = MetaGroupSampler(GROUPS, mini_repeat_count=3, batch_size=6, seed=7)
    first = list(a)
    assert first == list(b)  # same on every process
    for start in range(0, len(first), 18):  # 6 prompts × K 3 per generation batch
        batch = first[start : start + 18]
        groups = {GROUPS[i] for i in batch}
        assert len(groups) == 2 and all(sum(GROUPS[i] == g for i in set(batch)) == 3 for g in groups)
    epochs = {tuple(list(a)) for _ in range(5)}  # the sampler reshuffles meta-groups each epoch
    assert len(epochs) > 1
    a.set_epoch(0)
    assert list(a) == first  # set_epoch (called on resume) reproduces the order


def test_short_last_chunk_is_dropped():
    s = MetaGroupSampler(GROUPS + ["g4"] * 3, mini_repeat_count=2, batch_size=6, shuffle=False)
    got = list(s)
    assert len(got) == len(s) == 24  # 5 groups, 2 per batch: 2 batches of 6 prompts × K 2; g4 is dropped
    assert not set(got) & {12, 13, 14}


def test_errors_say_what_would_work():
    with pytest.raises(ValueError, match=r"generation_batch_size in \[6, 12, 18, 24\]"):
        MetaGroupSampler(GROUPS, mini_repeat_count=2, batch_size=4)
    with pytest.raises(ValueError, match="different sizes"):
        MetaGroupSampler(["a", "a", "b"], mini_repeat_count=2, batch_size=2)
    with pytest.raises(ValueError, match="has 4 meta-groups but one generation batch needs 5"):
        MetaGroupSampler(GROUPS, mini_repeat_count=2, batch_size=15)
