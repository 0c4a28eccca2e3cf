"""Calibrated Δ in the trainer (docs/calibration.md): AIRConfig.invariance_offsets (forms, errors, round trips through
JSON, YAML and key=value), the trainer applying exactly objectives' coefficients with offsets, and offsets measured by
``calibration.check`` making Δ = 0 at the correct policy."""

from __future__ import annotations

import json

import pytest
import torch
from _messages import assert_facts
from _toy import toy_trainer
from datasets import Dataset

from air_align.calibration.check import calibration_table, score_references
from air_align.calibration.references import default_kinds
from air_align.calibration.report import write_calibration
from air_align.configs import ConfigError
from air_align.models import build_char_tokenizer, tiny_causal_lm
from air_align.objectives import invariance_coefficients
from air_align.training.config import AIRConfig, normalize_offsets
from air_align.training.recipe import RunConfig, build_trainer
from air_align.training.run import build_configs
from air_align.training.toy import toy_meta_groups, toy_reward
from air_align.training.trainer import AIRTrainer, compact_ids

CPU = dict(output_dir="/tmp/air-align-offsets", use_cpu=True, bf16=False, report_to="none")


# --- the config field ------------------------------------------------------------------------------------------------


def test_offsets_forms_all_normalise_to_one_flat_dict(tmp_path):
    flat = {"safety/0": 1.25, "safety/1": 0.0}
    assert AIRConfig(**CPU).invariance_offsets == {}  # default: the paper's Δ
    assert AIRConfig(**CPU, invariance_offsets=flat).invariance_offsets == flat
    assert AIRConfig(**CPU, invariance_offsets={"safety": {0: 1.25, "1": 0}}).invariance_offsets == flat  # YAML ints
    assert AIRConfig(**CPU, invariance_offsets=json.dumps(flat)).invariance_offsets == flat
    assert normalize_offsets({"math": {None: -0.5}}) == {"math/none": -0.5}
    mapping = tmp_path / "offsets.json"
    mapping.write_text(json.dumps({"safety": {"0": 1.25, "1": 0.0}}))
    assert AIRConfig(**CPU, invariance_offsets=str(mapping)).invariance_offsets == flat


def test_a_calibration_json_gives_its_measured_offsets(tmp_path):
    # A hand-made calibration: correct anchor 2.5, correct benign help 3.75 -> b = +1.25 (safety, label 0).
    scored = [
        {"domain": "safety", "label": 0, "role": "anchor", "kind": "right_answer", "class": "correct", "reward": 2.5},
        {"domain": "safety", "label": 0, "role": "open", "kind": "helpful", "class": "correct", "reward": 3.75},
    ]
    paths = write_calibration(calibration_table(scored), tmp_path)
    assert AIRConfig(**CPU, invariance_offsets=str(paths["json"])).invariance_offsets == {"safety/0": 1.25}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"safety": 1.0}, r"invariance_offsets: safety: not a 'domain/label' key"),
        ({"a/b/c": 1.0}, r"invariance_offsets: a/b/c: not a 'domain/label' key"),
        ({"/0": 1.0}, r"invariance_offsets: /0: not a 'domain/label' key"),
        ({"safety/0": "x"}, r"invariance_offsets: safety/0: an offset must be a finite number .*, got 'x'"),
        ({"safety/0": float("nan")}, r"invariance_offsets: safety/0: an offset must be a finite number .*, got nan"),
        ({"safety/0": True}, r"invariance_offsets: safety/0: an offset must be a finite number .*, got True"),
        ({"safety/x": {"0": 1.0}}, r"invariance_offsets: safety/x: a domain must be a non-empty name without '/'"),
        ({"safety": {"0": 1.0}, "safety/0": 2.0}, r"invariance_offsets: safety/0: given twice"),
        ([1.0], r"must map 'domain/label' to an offset b .* got list"),
        ("safety/0: 1", r"is neither a JSON mapping nor an existing file"),
    ],
)
def test_bad_offsets_are_refused_with_the_reason(value, message):
    with pytest.raises(ValueError, match=message):
        AIRConfig(**CPU, invariance_offsets=value)


def test_every_bad_offset_is_named_at_once():
    with pytest.raises(ConfigError) as err:
        normalize_offsets({"safety": 1.0, "safety/0": "x", "morality": {"1": 0.5, "0": float("inf")}})
    assert [p.split(":")[0] for p in err.value.problems] == ["safety", "safety/0", "morality/0"]
    assert_facts(str(err.value).splitlines()[0], "AIRConfig.invariance_offsets", "3 problems")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(anchor_monitor_batches=0), "anchor_monitor_batches must be >= 1"),
        (dict(anchor_monitor_batches=1.5), "anchor_monitor_batches must be an integer"),
        (dict(anchor_drop_margin=0.0), "anchor_drop_margin must be > 0"),
        (dict(anchor_drop_margin=-1), "anchor_drop_margin must be > 0"),
        (dict(anchor_drop_margin=None, stop_on_anchor_drop=True), "stop_on_anchor_drop=True needs anchor_drop_margin"),
    ],
)
def test_bad_monitor_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        AIRConfig(**CPU, **fields)


def test_new_fields_round_trip_through_json_yaml_and_key_value(tmp_path):
    config = AIRConfig(
        **CPU,
        invariance_offsets={"safety": {0: 1.25}},
        anchor_monitor_batches=2,
        anchor_drop_margin=0.3,
        stop_on_anchor_drop=True,
    )
    saved = json.loads(config.to_json_string())
    new = ("invariance_offsets", "anchor_monitor_batches", "anchor_drop_margin", "stop_on_anchor_drop")
    assert {k: saved[k] for k in new} == {
        "invariance_offsets": {"safety/0": 1.25},
        "anchor_monitor_batches": 2,
        "anchor_drop_margin": 0.3,
        "stop_on_anchor_drop": True,
    }
    # The whole saved config rebuilds the same config (TRL derives generation_batch_size: drop it, as TRL must).
    saved.pop("generation_batch_size")
    assert json.loads(AIRConfig(**saved).to_json_string()) == json.loads(config.to_json_string())

    # `air-align train` path: YAML (nested mapping, integer label keys), then key=value overrides.
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text(
        "output_dir: /tmp/air-align-offsets\nuse_cpu: true\nbf16: false\n"
        "invariance_offsets:\n  safety:\n    0: 1.25\n    1: 0\nanchor_drop_margin: 1\n"
    )
    _, from_yaml = build_configs(yaml_file)
    assert from_yaml.invariance_offsets == {"safety/0": 1.25, "safety/1": 0.0}
    assert from_yaml.anchor_drop_margin == 1.0
    _, from_cli = build_configs(yaml_file, ["invariance_offsets={safety/1: -0.5}", "anchor_drop_margin=null"])
    assert from_cli.invariance_offsets == {"safety/1": -0.5} and from_cli.anchor_drop_margin is None
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"verdicts": [], "offsets": {"morality": {"1": 0.5}}}))
    _, from_path = build_configs(yaml_file, [f"invariance_offsets={calibration}"])
    assert from_path.invariance_offsets == {"morality/1": 0.5}


# --- the trainer applies objectives' Δ with offsets ------------------------------------------------------------------


class Recorder:
    __name__ = "toy_reward"

    def __init__(self):
        self.calls = []

    def __call__(self, completions, role, group_id, **kwargs):
        out = toy_reward(completions, role)
        self.calls.append((out, list(group_id), list(role)))
        return out


def first_batch(trainer):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))


@pytest.mark.parametrize("mode", ["air", "vrex"])
def test_trainer_applies_objectives_coefficients_with_offsets(tmp_path, mode):
    # Toy rows: domain "toy", label None -> key "toy/none"; b = 0.3 on open rows, 0 on anchors.
    recorder = Recorder()
    trainer = toy_trainer(mode, str(tmp_path), reward_funcs=recorder, invariance_offsets={"toy/none": 0.3})
    out = first_batch(trainer)
    rewards, groups, roles = recorder.calls[0]
    r = torch.tensor([float("nan") if x is None else x for x in rewards])
    anchor = torch.tensor([x == "anchor" for x in roles])
    b = torch.where(anchor, 0.0, 0.3)
    args = (r, torch.arange(len(r)) // 3, compact_ids(groups), anchor, mode)
    expected = invariance_coefficients(*args, offsets=b)
    assert torch.equal(out["air_coef"], expected)
    assert not torch.allclose(expected, invariance_coefficients(*args))  # the offsets changed Δ


def test_offsets_need_domain_and_label_and_unused_keys_warn(tmp_path):
    rows = toy_meta_groups(3, 2)
    for row in rows:
        del row["label"]
    tokenizer = build_char_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=4)
    args = AIRConfig(**{**CPU, "output_dir": str(tmp_path)}, invariance_offsets={"toy/none": 0.3})
    # A user's own Dataset without the column (build_trainer's to_dataset always adds the schema's columns).
    dataset = Dataset.from_list(rows)
    with pytest.raises(ValueError, match=r"no \['label'\] column"):
        AIRTrainer(model=model, reward_funcs=toy_reward, args=args, train_dataset=dataset, processing_class=tokenizer)
    with pytest.warns(UserWarning, match=r"\['safety/0'\] match no open row .* \['toy/none'\]"):
        toy_trainer("air", str(tmp_path), invariance_offsets={"toy/none": 0.3, "safety/0": 1.0})


# --- offsets measured by calibration.check make Δ = 0 at the correct policy ----------------------------------------


def safety_rows() -> list[dict]:
    """Schema rows: 4 meta-groups in domain "safety" (2 benign label 0, 2 harmful label 1), one multiple-choice
    anchor (answer "A") and two judge-scored open variants each."""
    rows = toy_meta_groups(4, 2)
    for row in rows:
        row["domain"], row["label"] = "safety", 0 if int(row["group_id"].split("-")[1]) < 2 else 1
    return rows


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def surface_judge(completions, role, label, answer, **kwargs) -> list[float]:
    """A tiny fake reward with the lab's miscalibration: anchors 2.5 when the answer tag holds the right letter, else
    0.25; open variants: help ("here is how") 3.75 on benign rows and 0.25 on harmful ones, a refusal ("sorry") 2.5,
    refusal-plus-help (the hack) 3.75, anything else 2.5."""
    out = []
    for completion, r, lab, ans in zip(completions, role, label, answer, strict=True):
        text = _text(completion).lower()
        if r == "anchor":
            out.append(2.5 if f"<answer>{str(ans).lower()}</answer>" in text else 0.25)
            continue
        refuses, helps = "sorry" in text, "here is how" in text
        if refuses and helps:
            out.append(3.75)
        elif helps:
            out.append(3.75 if lab == 0 else 0.25)
        else:
            out.append(2.5)
    return out


class CorrectPolicy:
    """``surface_judge`` scoring, for every row, the reference response of its correct kind instead of the model's
    completion: the rewards a policy that always behaves correctly would get. Remembers each call's (role, label)."""

    __name__ = "correct_policy"

    def __init__(self):
        self.kinds = [k for k in default_kinds() if k.cls == "correct"]
        self.calls = []

    def __call__(self, completions, **columns) -> list[float]:
        texts = []
        for i in range(len(completions)):
            row = {name: values[i] for name, values in columns.items() if isinstance(values, list)}  # row columns
            [text] = [t for t in (k.respond(row) for k in self.kinds if k.role == row["role"]) if t is not None]
            texts.append(text)
        self.calls.append(list(zip(columns["role"], columns["label"], strict=True)))
        return surface_judge(texts, columns["role"], columns["label"], columns["answer"])


def test_measured_offsets_make_delta_zero_at_the_correct_policy(tmp_path):
    rows = safety_rows()
    table = calibration_table(score_references(surface_judge, rows, progress=False))
    # correct benign help 3.75 − correct anchor 2.5 = +1.25; correct harmful refusal 2.5 − 2.5 = 0
    assert table["offsets"] == {"safety": {"0": 1.25, "1": 0.0}}

    def trainer(out, reward, **config):
        tokenizer = build_char_tokenizer()
        model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=4)
        args = AIRConfig(
            **{**CPU, "output_dir": str(tmp_path / out)},
            num_generations=3,
            per_device_train_batch_size=36,
            max_completion_length=8,
            max_steps=1,
            logging_steps=1,
            anchor_monitor_batches=1,
            **config,
        )
        return build_trainer(RunConfig(), args, model=model, tokenizer=tokenizer, rows=rows, reward_funcs=reward)

    calibrated = trainer("calibrated", CorrectPolicy(), invariance_offsets=table["offsets"])
    out = first_batch(calibrated)
    assert torch.equal(out["air_coef"], torch.zeros(36))  # every open prompt sits at its correct level
    reward = CorrectPolicy()
    out = first_batch(trainer("paper", reward))
    # the paper's Δ: benign open rows 2.5 − 3.75 = −1.25 (AIR would push the correct help down), the rest 0
    expected = torch.tensor([-1.25 if (role, label) == ("open", 0) else 0.0 for role, label in reward.calls[0]])
    assert torch.equal(out["air_coef"], expected) and (expected != 0).sum() == 12
    calibrated.train()
    h = [e for e in calibrated.state.log_history if "air/delta/safety/0" in e][0]
    assert h["air/delta/safety/0"] == 0.0 and h["air/delta/safety/1"] == 0.0 and h["invariance/abs_delta"] == 0.0
