"""`air-align train`: YAML + typed key=value overrides, shipped configs, a CLI run with checkpoints and --resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _messages import raises_with

from air_align.cli import main
from air_align.training.recipe import lora_config, resolve_rewards
from air_align.training.run import build_configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_overrides_are_typed_by_the_field_they_set(tmp_path):
    run, air = build_configs(
        CONFIGS / "tiny-cpu.yaml",
        ["output_dir=" + str(tmp_path), "learning_rate=5e-7", "invariance=vrex", "max_steps=3", "lora_r=4"],
    )
    assert air.learning_rate == 5e-7 and isinstance(air.learning_rate, float)  # YAML alone reads 5e-7 as a string
    assert air.invariance == "vrex" and air.max_steps == 3 and run.lora_r == 4 and run.model == "tiny"
    assert air.num_generations == 3 and air.use_cpu and not air.bf16


def test_unknown_key_and_bad_values_are_clear_errors():
    with raises_with(ValueError, "invariance_coeff", "(from the command line)", "did you mean 'invariance_coef'"):
        build_configs(None, ["invariance_coeff=0.1"])
    with pytest.raises(ValueError, match="expected an integer"):
        build_configs(None, ["max_steps=many", "use_cpu=true"])
    with pytest.raises(ValueError, match="not key=value"):
        build_configs(None, ["max_steps"])
    with raises_with(ValueError, "invariance", "(from the command line)", "'irm'", "none, vrex, air"):
        build_configs(None, ["invariance=irm", "use_cpu=true"])
    with pytest.raises(ValueError, match="unknown reward 'no_such_reward'"):
        resolve_rewards("no_such_reward")  # a bare name is neither composite, toy nor module:function
    with pytest.raises(ValueError, match="has no function 'nope'"):
        resolve_rewards("air_align.rewards.verifiers:nope")


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "smollm2-cpu.yaml", "paper-qwen2.5-14b.yaml"])
def test_shipped_configs_are_valid_keys(name):
    values = yaml.safe_load((CONFIGS / name).read_text())
    if name.startswith("paper"):  # the paper's settings (§4): K = 3, lr 5e-7, λ = 8e-4, 3000 steps, vLLM
        assert (values["num_generations"], values["max_steps"]) == (3, 3000)
        assert float(values["learning_rate"]) == 5e-7 and float(values["invariance_coef"]) == 8e-4
        assert values["use_vllm"] and values["model"] == "Qwen/Qwen2.5-14B-Instruct"
        values.pop("bf16")  # needs a GPU to construct; every key is still checked below
        values.pop("use_vllm")
    overrides = [f"{k}={v}" for k, v in values.items() if not isinstance(v, bool)]
    overrides += [f"{k}={str(v).lower()}" for k, v in values.items() if isinstance(v, bool)]
    build_configs(None, [*overrides, "output_dir=/tmp/air-align-config-check", "use_cpu=true"])


def test_lora_config_from_fields():
    run, _ = build_configs(None, ["use_lora=true", "lora_r=4", "lora_target_modules=q_proj,v_proj", "use_cpu=true"])
    cfg = lora_config(run)
    assert cfg.r == 4 and set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert lora_config(build_configs(None, ["use_cpu=true"])[0]) is None


def test_train_cli_runs_checkpoints_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / "tiny-cpu.yaml"), f"output_dir={out}", "save_steps=1"]
    assert main([*args, "max_steps=1"]) == 0
    assert (out / "checkpoint-1").is_dir() and (out / "final" / "config.json").exists()
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every run draws its curves
    assert main([*args, "max_steps=2", "--resume", "--allow-config-change"]) == 0  # auto: from checkpoint-1
    assert (out / "checkpoint-2").is_dir()
    assert "trained 2 steps" in capsys.readouterr().out
    resolved = yaml.safe_load((out / "air_align_run.yaml").read_text())
    assert resolved["air"]["invariance"] == "air" and resolved["model"] == "tiny"
    # the README's layout, `air-align eval --model RUN/final`: its training log (beside final/) gives eval the curves
    data = tmp_path / "rows.jsonl"
    assert main(["data", "build", "--domain", "safety", "--out", str(data), "--n-intents", "4"]) == 0
    ev = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(out / "final"),
                "--data",
                str(data),
                "--out",
                str(ev),
                "--max-new-tokens",
                "4",
                "--no-dispersion",
                "--splits",
                "test_id",
            ]
        )
        == 0
    )
    assert (ev / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a fresh interpreter importing TRL: ~20 s
def test_train_cli_subprocess(tmp_path):
    cmd = [str(Path(sys.executable).parent / "air-align"), "train", "--config", str(CONFIGS / "tiny-cpu.yaml")]
    proc = subprocess.run([*cmd, f"output_dir={tmp_path}", "max_steps=1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 1 steps" in proc.stdout


def test_composite_reward_judges_with_a_frozen_copy_of_the_initial_policy():
    # Paper App. C.2.1: the training judge is a frozen copy of the initial policy, taken before any update.
    import torch

    from air_align.models import load_model
    from air_align.rewards.composite import CompositeReward

    model, tokenizer = load_model("tiny")
    (reward,) = resolve_rewards("composite", policy=(model, tokenizer), reward_config={"safety_reward": "judge"})
    assert isinstance(reward, CompositeReward)
    judge_model = reward.judge.model
    assert judge_model is not model
    assert not any(p.requires_grad for p in judge_model.parameters())
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # training moves the policy ...
    first = next(judge_model.parameters())
    assert not torch.equal(first, next(model.parameters()))  # ... not the judge


def test_dataset_rows_are_validated(tmp_path):
    from air_align.data.validate import ValidationError
    from air_align.training.recipe import load_rows

    rows = [
        {
            "id": "a",
            "group_id": "g",
            "role": "open",
            "context": "plain",
            "family": "plain",
            "domain": "math",
            "prompt": [{"role": "user", "content": "1+1?"}],
            "verifier": "math",
            "answer": "2",
            "label": None,
            "intent": "1+1",
            "split": "train",
            "meta": {},
        },
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    with pytest.raises(ValidationError, match="no anchor"):
        load_rows(str(path), "train")


def test_readme_import_and_config():
    # The README's two-line adoption: one class and two config fields.
    from air_align.training import AIRConfig, AIRTrainer
    from air_align.training.trainer import AIRTrainer as Direct

    assert AIRTrainer is Direct
    config = AIRConfig(
        output_dir="out",
        invariance="air",
        invariance_coef=8e-4,
        num_generations=3,
        per_device_train_batch_size=18,
        use_cpu=True,
    )
    assert (config.invariance, config.invariance_coef, config.num_generations) == ("air", 8e-4, 3)


def test_method_sets_the_regulariser_fields_and_the_command_line_wins():
    # tiny-cpu.yaml says invariance: air; method=grpo on the command line overrides it
    run, air = build_configs(CONFIGS / "tiny-cpu.yaml", ["method=grpo"])
    assert (run.method, air.invariance, air.importance_sampling_level, air.aux_baseline) == (
        "grpo",
        "none",
        "token",
        "none",
    )
    run, air = build_configs(CONFIGS / "tiny-cpu.yaml", ["method=gspo+air"])
    assert (air.invariance, air.importance_sampling_level) == ("air", "sequence")
    run, air = build_configs(None, ["method=vrex", "use_cpu=true"])  # the real tier's former name
    assert (run.method, air.invariance) == ("grpo+vrex", "vrex")
    with raises_with(ValueError, "method=grpo", "invariance='none'", "invariance='air'", "drop one of them"):
        build_configs(None, ["method=grpo", "invariance=air", "use_cpu=true"])
    with pytest.raises(ValueError, match="unknown method 'dpo'"):
        build_configs(None, ["method=dpo", "use_cpu=true"])


def test_every_method_builds_a_valid_config_and_the_recipe_checks_it():
    from air_align.training.methods import METHODS, PAPER_METHODS
    from air_align.training.recipe import RunConfig, air_config, build_trainer

    assert PAPER_METHODS == ("grpo", "grpo+vrex", "grpo+air", "gspo+air")
    for name, method in METHODS.items():
        offsets = {"invariance_offsets": {"safety/0": 1.25}} if method.calibrated_delta else {}
        if method.anchor_target == "constant":
            offsets["anchor_constant"] = {"safety/0": 2.5}
        config = air_config(name, output_dir="/tmp/air-align-method-check", use_cpu=True, **offsets)
        assert (config.invariance, config.aux_baseline) == (method.invariance, method.aux_baseline)
        assert (config.anchor_target, config.reward_shift) == (method.anchor_target, method.reward_shift)
    # calibrated Δ without offsets would silently be plain GRPO+AIR: refused, in the config and in the recipe
    with pytest.raises(ValueError, match="calibrated Δ: pass invariance_offsets"):
        air_config("grpo+air-cal", output_dir="/tmp/x", use_cpu=True)
    plain = air_config("grpo+air", output_dir="/tmp/air-align-method-check", use_cpu=True)
    with pytest.raises(ValueError, match="calibrated Δ: set invariance_offsets"):
        build_trainer(RunConfig(method="grpo+air-cal"), plain)
    with pytest.raises(ValueError, match="sets \\['invariance'\\]"):
        air_config("grpo", invariance="air", output_dir="/tmp/x", use_cpu=True)
    mismatched = air_config("grpo+air", output_dir="/tmp/air-align-method-check", use_cpu=True)
    with pytest.raises(ValueError, match="method 'grpo' sets invariance='none'"):
        build_trainer(RunConfig(method="grpo"), mismatched)
