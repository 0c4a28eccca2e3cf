"""Test configuration: this folder on ``sys.path`` so that test modules import the helper ``_toy`` (the toy
trainer) the way ``_dist_coefficients.py`` does when torchrun runs it as a script; and ``air_align`` imported before
any test module imports torch, so that the tests too run with OpenMP's passive wait (``air_align.threads``).
``f64_batch`` is the float64 generation batch that the trainer's gradient identities and contract tests share."""

import sys
from pathlib import Path

import pytest

import air_align  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE unless the environment chose a policy)

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def f64_batch(tmp_path_factory):
    """A float64 tiny-model trainer, λ = 0.5, one unshuffled generation batch (2 meta-groups × 3 prompts × K = 3 =
    18 completions) and its reward call: ``(trainer, batch, (rewards, group ids, roles))``. Module-scoped: each
    module gets its own trainer, which its tests may reconfigure."""
    import torch
    from _toy import toy_trainer
    from test_train_trainer import RewardRecorder, first_generation_batch

    recorder = RewardRecorder()
    trainer = toy_trainer(
        "air",
        str(tmp_path_factory.mktemp("f64")),
        reward_funcs=recorder,
        dtype=torch.float64,
        invariance_coef=0.5,
        per_device_train_batch_size=18,
    )
    out = first_generation_batch(trainer)
    return trainer, out, recorder.calls[0]
