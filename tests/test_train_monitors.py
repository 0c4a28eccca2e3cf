"""AIRTrainer's live monitors (docs/monitoring.md): tiny-model runs with rewards whose payouts we choose, so the logged
values are known exactly; the anchor-drop warning and opt-in stop; the aux/policy gradient weight against the real
gradients; the per-batch monitors against an independent recomputation."""

from __future__ import annotations

import warnings

import pytest
import torch
from _toy import toy_trainer
from trl import GRPOTrainer

from air_align.training.monitors import AnchorDropWarning, anchor_reward, no_signal
from air_align.training.toy import toy_meta_groups, toy_reward
from air_align.training.trainer import AIRTrainer, aux_policy_weights


def labelled_rows(benign_groups: int = 2, harmful_groups: int = 2) -> list[dict]:
    """Toy meta-groups (1 anchor + 2 open variants each) in domain "safety": the first ``benign_groups`` label 0,
    the rest label 1."""
    rows = toy_meta_groups(benign_groups + harmful_groups, 2)
    for row in rows:
        g = int(row["group_id"].split("-")[1])
        row["domain"], row["label"] = "safety", 0 if g < benign_groups else 1
    return rows


def make_trainer(rows: list[dict], reward_funcs, output_dir, **config) -> AIRTrainer:
    """The toy trainer's tiny model and settings (``tests/_toy.py``) on the given rows."""
    return toy_trainer(output_dir=str(output_dir), rows=rows, reward_funcs=reward_funcs, **config)


def steps(trainer) -> list[dict]:
    """The per-step log entries (those with the reward metrics), in order."""
    return [h for h in trainer.state.log_history if "reward/anchor" in h]


def lab_like_payout(completions, role, label, **kwargs):
    """The lab's miscalibrated payouts, whatever the completion: anchors 2.5; open benign (0) 3.75, harmful (1)
    1.25."""
    return [2.5 if r == "anchor" else 3.75 if lab == 0 else 1.25 for r, lab in zip(role, label, strict=True)]


def test_delta_per_label_shows_what_the_mean_hides(tmp_path):
    # 4 meta-groups (2 benign, 2 harmful) × 3 prompts × K = 3 = 36 completions: every generation batch holds all of
    # them. Δ = r̄_acr − r̄_s: benign 2.5 − 3.75 = −1.25, harmful 2.5 − 1.25 = +1.25, mean over open prompts 0.
    trainer = make_trainer(
        labelled_rows(),
        lab_like_payout,
        tmp_path,
        per_device_train_batch_size=36,
        max_steps=2,
        anchor_monitor_batches=1,
    )
    trainer.train()
    logs = steps(trainer)
    assert len(logs) == 2
    for h in logs:
        assert h["air/delta/safety/0"] == -1.25 and h["air/delta/safety/1"] == 1.25
        assert h["air/delta/open"] == 0.0 and h["invariance/delta"] == 0.0  # the mean hides both
        assert h["invariance/abs_delta"] == 1.25
        assert "air/delta/anchor" not in h  # AIR's Δ on anchors is 0 by definition: not logged
        # K equal rewards everywhere: no GRPO signal on any prompt
        assert h["air/zero_std/anchor"] == 1.0 and h["air/zero_std/open"] == 1.0
        assert h["reward/anchor"] == 2.5 and h["air/anchor_start"] == 2.5 and h["air/anchor_drift"] == 0.0
        assert h["air/aux_to_policy_weight"] is None  # no advantage anywhere: the ratio is undefined (NaN dropped)


def test_plain_grpo_logs_the_delta_air_would_apply_and_vrex_logs_anchor_delta(tmp_path):
    rows = labelled_rows()
    none = make_trainer(rows, lab_like_payout, tmp_path / "n", invariance="none", per_device_train_batch_size=36)
    none.train()
    [h] = steps(none)
    assert h["air/delta/safety/0"] == -1.25 and h["air/delta/safety/1"] == 1.25  # the would-be AIR Δ
    assert h["invariance/abs_delta"] == 0.0  # nothing applied
    assert "air/policy_loss" not in h and "air/aux_to_policy_weight" not in h  # no aux term in the loss

    vrex = make_trainer(rows, lab_like_payout, tmp_path / "v", invariance="vrex", per_device_train_batch_size=36)
    vrex.train()
    [h] = steps(vrex)
    # V-REx centre per benign group: (2.5 + 3.75 + 3.75)/3 = 10/3; harmful: (2.5 + 1.25 + 1.25)/3 = 5/3.
    # Δ anchor: benign 10/3 − 2.5 = 5/6, harmful 5/3 − 2.5 = −5/6: mean 0. Δ open benign 10/3 − 3.75 = −5/12,
    # harmful 5/3 − 1.25 = 5/12.
    assert h["air/delta/anchor"] == pytest.approx(0.0, abs=1e-6)
    assert h["air/delta/safety/0"] == pytest.approx(-5 / 12, abs=1e-6)
    assert h["air/delta/safety/1"] == pytest.approx(5 / 12, abs=1e-6)


class Recorder:
    """toy_reward, remembering every batch's rewards and roles."""

    __name__ = "toy_reward"

    def __init__(self):
        self.calls = []

    def __call__(self, completions, role, **kwargs):
        out = toy_reward(completions, role)
        self.calls.append((out, list(role)))
        return out


def test_signal_share_and_anchor_reward_match_an_independent_recomputation(tmp_path):
    # toy_reward depends on the text (and is None for some completions): compare with plain Python loops.
    recorder = Recorder()
    trainer = toy_trainer("air", str(tmp_path), reward_funcs=recorder, max_steps=3, anchor_monitor_batches=2)
    trainer.train()
    logs = steps(trainer)
    assert len(recorder.calls) == len(logs) == 3
    anchors_by_batch = []
    for (rewards, roles), h in zip(recorder.calls, logs, strict=True):
        per_prompt = [(rewards[i : i + 3], roles[i]) for i in range(0, len(rewards), 3)]
        for role in ("anchor", "open"):
            scored = [[x for x in r if x is not None] for r, ro in per_prompt if ro == role]
            silent = [len(s) < 2 or max(s) - min(s) < 1e-6 for s in scored]
            assert h[f"air/zero_std/{role}"] == pytest.approx(sum(silent) / len(silent))
        means = [sum(s) / len(s) for s in ([x for x in r if x is not None] for r, ro in per_prompt if ro == "anchor")]
        anchors_by_batch.append(sum(means) / len(means))
        assert h["reward/anchor"] == pytest.approx(anchors_by_batch[-1], abs=1e-6)
    # start = mean of the first 2 batches; level = mean of the latest 2; not logged before 2 batches
    start = sum(anchors_by_batch[:2]) / 2
    assert "air/anchor_start" not in logs[0]
    assert logs[1]["air/anchor_start"] == pytest.approx(start, abs=1e-6)
    assert logs[2]["air/anchor_level"] == pytest.approx(sum(anchors_by_batch[1:]) / 2, abs=1e-6)
    assert logs[2]["air/anchor_drift"] == pytest.approx(sum(anchors_by_batch[1:]) / 2 - start, abs=1e-6)
    assert all(h["air/aux_to_policy_weight"] > 0 and "air/policy_loss" in h for h in logs)


def test_pure_monitor_functions_hand_computed():
    nan = float("nan")
    # prompt 0: 1, 1 (equal); prompt 1: 0, 2; prompt 2: one scored; prompt 3: 5, 5 + 1e-9 (isclose: equal)
    r = torch.tensor([1.0, 1.0, 0.0, 2.0, 3.0, nan, 5.0, 5.0 + 1e-9], dtype=torch.float64)
    p = torch.tensor([7, 7, 3, 3, 9, 9, 1, 1])
    assert no_signal(r, p).tolist() == [True, False, True, True]  # in order of first appearance
    # anchors: prompts 7 (mean 1) and 9 (mean 3) -> 2.0
    assert anchor_reward(r, p, torch.tensor([True, True, False, False, True, True, False, False])) == 2.0
    assert torch.isnan(torch.tensor(anchor_reward(r, p, torch.zeros(8, dtype=torch.bool))))


class FallingAnchors:
    """Anchors earn ``payouts[call]`` (the last one repeated), open variants 1.0: a run forced to lower its anchors
    (deterministic, whatever the policy writes)."""

    __name__ = "falling_anchors"

    def __init__(self, payouts):
        self.payouts, self.calls = payouts, 0

    def __call__(self, completions, role, **kwargs):
        a = self.payouts[min(self.calls, len(self.payouts) - 1)]
        self.calls += 1
        return [a if r == "anchor" else 1.0 for r in role]


def anchor_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, AnchorDropWarning)]


def test_falling_anchors_warn_once_per_crossing(tmp_path):
    # anchor_monitor_batches = 1: start 2.0; drift per batch 0, −0.5 (not > margin 0.5), −1.0 (crossing), −1.5
    # (still below: no new warning), then up to 0 (re-armed) and down to −1.5 (second crossing).
    reward = FallingAnchors([2.0, 1.5, 1.0, 0.5, 2.0, 0.5])
    trainer = toy_trainer("air", str(tmp_path), reward_funcs=reward, max_steps=6, anchor_monitor_batches=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.train()
    messages = anchor_warnings(record)
    assert len(messages) == 2
    assert "fell to 1 " in messages[0] and "starting level 2 " in messages[0] and "a drop of 1 " in messages[0]
    assert "in step 3" in messages[0] and "stop_on_anchor_drop=True" in messages[0]
    assert "fell to 0.5 " in messages[1] and "in step 6" in messages[1]
    assert trainer.state.global_step == 6  # warned, did not stop
    assert [h["air/anchor_drift"] for h in steps(trainer)] == [0.0, -0.5, -1.0, -1.5, 0.0, -1.5]


def test_stop_on_anchor_drop_stops_at_the_end_of_the_crossing_step(tmp_path):
    reward = FallingAnchors([2.0, 1.5, 1.0, 0.5])
    trainer = toy_trainer(
        "air", str(tmp_path), reward_funcs=reward, max_steps=6, anchor_monitor_batches=1, stop_on_anchor_drop=True
    )
    with pytest.warns(AnchorDropWarning, match="Training stops at the end of this optimiser step"):
        trainer.train()
    assert trainer.state.global_step == 3  # batches 1, 2, 3: the third crosses (drift −1.0 < −0.5)
    assert steps(trainer)[-1]["air/anchor_drift"] == -1.0  # the crossing step is logged
    assert trainer.anchor_monitor.stop_reason.startswith("stopped by stop_on_anchor_drop")


def test_a_window_of_batches_smooths_the_level(tmp_path):
    # anchor_monitor_batches = 2: start = (2 + 1)/2 = 1.5 after batch 2; level = mean of the last 2 batches:
    # batch 3: (1 + 1)/2 = 1 (drift −0.5), batch 4: (1 + 0)/2 = 0.5 (drift −1.0 < −0.75: warns)
    reward = FallingAnchors([2.0, 1.0, 1.0, 0.0])
    trainer = toy_trainer(
        "air", str(tmp_path), reward_funcs=reward, max_steps=4, anchor_monitor_batches=2, anchor_drop_margin=0.75
    )
    with pytest.warns(AnchorDropWarning, match="in step 4"):
        trainer.train()
    logs = steps(trainer)
    assert "air/anchor_start" not in logs[0]
    assert [h["air/anchor_start"] for h in logs[1:]] == [1.5, 1.5, 1.5]
    assert [h["air/anchor_level"] for h in logs[1:]] == [1.5, 1.0, 0.5]
    assert [h["air/anchor_drift"] for h in logs[1:]] == [0.0, -0.5, -1.0]


def test_resume_reads_the_starting_level_back_from_the_log(tmp_path):
    first = toy_trainer(
        "air",
        str(tmp_path / "a"),
        reward_funcs=FallingAnchors([2.0]),
        max_steps=2,
        anchor_monitor_batches=1,
        save_strategy="steps",
        save_steps=1,
    )
    first.train()
    assert steps(first)[0]["air/anchor_start"] == 2.0
    # The resumed run's anchors earn 1.0: measured afresh, its start would be 1.0 (drift 0); read back, it is 2.0.
    resumed = toy_trainer(
        "air", str(tmp_path / "b"), reward_funcs=FallingAnchors([1.0]), max_steps=2, anchor_monitor_batches=1
    )
    with pytest.warns(AnchorDropWarning, match="starting level 2 "):
        resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))
    h = steps(resumed)[-1]
    assert h["step"] == 2 and h["air/anchor_start"] == 2.0 and h["air/anchor_drift"] == -1.0


def test_aux_gradient_weight_equals_a_grpo_advantage_of_lambda_delta_r_length(tmp_path):
    # The claim behind air/aux_to_policy_weight: with loss_type="grpo" at importance ratio 1, the aux term's
    # gradient equals TRL's policy gradient with advantages Ã_i = λ Δ_i r_i T_i. Float64 model, one batch.
    trainer = toy_trainer(
        "air", str(tmp_path), dtype=torch.float64, invariance_coef=0.5, per_device_train_batch_size=18
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def grad(loss):
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat(
            [(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(gs, params, strict=True)]
        )

    g_policy = grad(GRPOTrainer._compute_loss(trainer, trainer.model, out))
    g_aux = grad(trainer.compute_loss(trainer.model, out)) - g_policy
    lengths = out["completion_mask"].sum(-1).to(torch.float64)
    equivalent = 0.5 * out["air_coef"].double() * out["air_reward"].double().nan_to_num() * lengths  # (B,)
    as_advantages = {k: v for k, v in out.items() if k not in ("air_coef", "air_reward")}
    as_advantages["advantages"] = equivalent.to(out["advantages"].dtype)
    g_equivalent = grad(GRPOTrainer._compute_loss(trainer, trainer.model, as_advantages))
    scale = g_aux.abs().max().item()
    assert scale > 1e-3
    assert (g_aux - g_equivalent).abs().max().item() <= 2e-5 * scale  # TRL's fused head is float32
    weights = aux_policy_weights(
        out["advantages"], out["air_coef"], out["air_reward"], out["completion_mask"], 0.5, "sum"
    )
    torch.testing.assert_close(weights[0].double(), equivalent.abs().sum(), rtol=1e-6, atol=0)
    torch.testing.assert_close(weights[1].double(), out["advantages"].abs().sum().double(), rtol=1e-6, atol=0)
