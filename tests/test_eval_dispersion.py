"""Representation dispersion: a hand-made tensor case and a tiny model; batched generation for evaluation."""

import math

import pytest
import torch

from air_align.evaluation.dispersion import group_dispersion, masked_mean, prompt_representations
from air_align.evaluation.generate import generate_completions
from air_align.models import build_char_tokenizer, tiny_causal_lm


def test_group_dispersion_hand_case():
    reps = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    out = group_dispersion(reps, ["a", "a", "a", "b", "b", "c"])
    # group a: centroid (1, 1); distances sqrt(1+1), sqrt(4+1), sqrt(1+4) -> (1.41421 + 2 * 2.23607) / 3 = 1.96212
    assert out["per_group"]["a"] == pytest.approx((math.sqrt(2) + 2 * math.sqrt(5)) / 3)
    # group b: identical points -> 0; group c: singleton, left out
    assert out["per_group"]["b"] == 0.0
    assert out["n_groups"] == 2 and out["n_singletons"] == 1
    assert out["mean"] == pytest.approx((math.sqrt(2) + 2 * math.sqrt(5)) / 6)  # (1.96212 + 0) / 2
    with pytest.raises(ValueError, match="no meta-group has two or more prompts"):
        group_dispersion(reps[:2], ["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        group_dispersion(reps, ["a"])


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[5.0, 5.0], [1.0, 2.0], [3.0, 4.0]]])  # (1, 3, 2), position 0 is padding
    assert masked_mean(hidden, torch.tensor([[0, 1, 1]])).tolist() == [[2.0, 3.0]]  # mean of rows 1, 2


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_char_tokenizer()
    return tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0), tokenizer


def chat(text):
    return [{"role": "user", "content": text}]


def test_tiny_model_representations(tiny):
    model, tokenizer = tiny
    prompts = [chat("hi"), chat("a much longer prompt here"), chat("hi")]
    reps = prompt_representations(model, tokenizer, prompts, batch_size=3, progress=False)
    assert reps.shape == (3, 32)
    alone = prompt_representations(model, tokenizer, prompts[:1], batch_size=1, progress=False)
    torch.testing.assert_close(reps[0], alone[0], atol=1e-5, rtol=1e-5)  # left padding does not change it
    # identical prompts in one group -> zero dispersion; different prompts -> positive
    assert group_dispersion(reps[[0, 2]], ["g", "g"])["mean"] == pytest.approx(0.0, abs=1e-6)
    assert group_dispersion(reps[[0, 1]], ["g", "g"])["mean"] > 0
    first_layer = prompt_representations(model, tokenizer, prompts[:1], layer=0, progress=False)
    assert not torch.allclose(first_layer, alone)  # the layer argument is honoured


def test_generation_greedy_batch_invariant(tiny):
    model, tokenizer = tiny
    prompts = [chat("short"), chat("a somewhat longer prompt"), chat("mid size")]
    batched = generate_completions(model, tokenizer, prompts, max_new_tokens=6, batch_size=3, progress=False)
    single = generate_completions(model, tokenizer, prompts, max_new_tokens=6, batch_size=1, progress=False)
    assert batched == single  # left padding + masks: same greedy output alone or in a batch
    assert all(len(s) == 1 for s in batched)
    sampled = generate_completions(
        model, tokenizer, prompts[:1], max_new_tokens=6, num_samples=3, temperature=1.0, seed=1, progress=False
    )
    assert len(sampled[0]) == 3
    with pytest.raises(ValueError, match="temperature > 0"):
        generate_completions(model, tokenizer, prompts, num_samples=2, progress=False)
