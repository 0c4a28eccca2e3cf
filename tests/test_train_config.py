"""``air-align train``'s config: λ finite, booleans boolean, ``save_strategy=no`` from YAML and
the command line, an unknown or ill-typed key named with where it came from, the batch geometry checked before the
model and the rewards load; the shipped configs hold whole meta-groups of ``air-align data build``'s default."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
import yaml
from _messages import assert_error, assert_facts, raises_with
from transformers.trainer_utils import SaveStrategy

from air_align.cli import INPUT_ERROR, build_parser, main
from air_align.configs import ConfigError
from air_align.data.build import build_meta_groups
from air_align.training.config import AIRConfig
from air_align.training.run import KEYS, build_configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = CONFIGS / "tiny-cpu.yaml"


def config_file(tmp_path, **values) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"use_cpu": True, **values}) if values else "use_cpu: true\n")
    return path


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf", "-0.1"])
def test_lambda_must_be_finite_and_non_negative(value):
    with pytest.raises(ValueError) as err:
        build_configs(None, [f"invariance_coef={value}", "use_cpu=true"])
    message = str(err.value)  # nan / inf: refused as the config is read; -0.1: by AIRConfig itself
    assert "invariance_coef" in message and "must be a finite number" in message
    assert "e.g. invariance_coef=8e-4" in message


def test_booleans_must_be_booleans(tmp_path):
    with pytest.raises(ValueError) as err:
        build_configs(None, ["use_lora=maybe", "use_cpu=true"])
    assert_facts(str(err.value), "use_lora", "(from the command line)", "true or false", "'maybe'")
    path = tmp_path / "run.yaml"
    path.write_text("use_cpu: true\nbf16: 1\n")
    with pytest.raises(ValueError) as err:
        build_configs(path, [])
    assert_facts(str(err.value), "bf16", f"(from {path})", "true or false", "int 1")
    # the words YAML 1.1 called booleans are accepted for a boolean field, in either place
    run, air = build_configs(None, ["use_lora=yes", "use_cpu=on", "bf16=off"])
    assert run.use_lora is True and air.use_cpu is True and air.bf16 is False
    # a boolean where a field takes text
    with pytest.raises(ValueError, match=r"save_strategy \(from the command line\): expected one of 'no', .* boolean"):
        build_configs(None, ["save_strategy=false", "use_cpu=true"])


def test_save_strategy_no_from_yaml_and_command_line(tmp_path):
    _, from_yaml = build_configs(config_file(tmp_path, save_strategy="no"), [])
    assert (tmp_path / "run.yaml").read_text().count("save_strategy: 'no'") == 1  # what safe_dump writes
    (tmp_path / "plain.yaml").write_text("use_cpu: true\nsave_strategy: no\n")  # as a user types it
    _, plain = build_configs(tmp_path / "plain.yaml", [])
    _, from_cli = build_configs(None, ["save_strategy=no", "use_cpu=true"])
    assert from_yaml.save_strategy == plain.save_strategy == from_cli.save_strategy == SaveStrategy.NO


def test_every_problem_of_a_config_is_named_at_once_with_its_key_path_and_origin(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "use_cpu: true\nuse_lora: maybe\nreward_config:\n  safety_tiers: [-1.0, 1.25]\n  judge: {modle: none}\n"
    )
    with pytest.raises(ConfigError) as err:
        build_configs(path, ["max_steps=many", "learnin_rate=1e-5", "lora_r=8"])
    cli, yaml_file = "(from the command line)", f"(from {path})"
    expected = [  # unknown keys first, then the fields in their order: the key path, its origin, the value, the fix
        ("learnin_rate", cli, "unknown key", "did you mean 'learning_rate'", KEYS),
        ("reward_config.safety_tiers", yaml_file, "3 values", "got 2", "[-1.0, 1.25]"),
        ("reward_config.judge.modle", yaml_file, "unknown key", "did you mean 'model'", "base_url", "cache_path"),
        ("use_lora", yaml_file, "true or false", "'maybe'"),
        ("max_steps", cli, "an integer", "'many'"),
    ]
    for problem, facts in zip(err.value.problems, expected, strict=True):
        assert problem.startswith(facts[0] + " "), problem  # each problem leads with its key path
        assert_facts(problem, *facts)
    # each override is typed by its field: 5e-7 (text to YAML 1.1) is a float, '8' an int, 123 a model's name
    run, air = build_configs(None, ["use_cpu=true", "learning_rate=5e-7", "lora_r='8'", "model=123"])
    assert air.learning_rate == 5e-7 and run.lora_r == 8 and run.model == "123"
    # the nested per-(domain, label) forms of the offsets and the anchor levels pass the type check
    _, air = build_configs(
        None,
        ["use_cpu=true", "invariance_offsets={safety: {0: 1.25}}", "anchor_target=constant"]
        + ["anchor_constant={safety: {0: 2.5, 1: 2.5}}"],
    )
    assert air.invariance_offsets == {"safety/0": 1.25}
    assert air.anchor_constant == {"safety/0": 2.5, "safety/1": 2.5}


def test_unknown_key_names_where_it_came_from(tmp_path):
    path = config_file(tmp_path, invariance_coeff=0.1)
    with raises_with(ValueError, "invariance_coeff", f"(from {path})", "did you mean 'invariance_coef'"):
        build_configs(path, [])
    with raises_with(ValueError, "lerning_rate", "(from the command line)", "did you mean 'learning_rate'"):
        build_configs(config_file(tmp_path, max_steps=2), ["lerning_rate=1e-5"])  # a file given, the typo elsewhere
    with raises_with(ValueError, "max_steps", f"(from {path})", "an integer", "'many'"):
        build_configs(config_file(tmp_path, max_steps="many"), [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: [1\n")
    with pytest.raises(ValueError, match=rf"^{bad}: not valid YAML"):
        build_configs(bad, [])


def test_no_deprecation_warning_from_our_settings():
    # TRL's default gradient_checkpointing=True made every AIRConfig warn; AIRConfig sets the new name instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AIRConfig(output_dir="/tmp/air-align-x", use_cpu=True)
        explicit = AIRConfig(output_dir="/tmp/air-align-x", use_cpu=True, activation_checkpointing=False)
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]
    assert config.activation_checkpointing is True and config.gradient_checkpointing is True  # TRL's default kept
    assert explicit.activation_checkpointing is False
    with pytest.warns(FutureWarning, match="`gradient_checkpointing` is deprecated"):  # the user's own old name
        old = AIRConfig(output_dir="/tmp/air-align-x", use_cpu=True, gradient_checkpointing=False)
    assert old.activation_checkpointing is False  # and honoured


def test_batch_geometry_is_checked_before_the_model_and_rewards_load(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("loaded before the batch geometry was checked")

    monkeypatch.setattr("air_align.training.recipe.load_model", refuse)
    monkeypatch.setattr("air_align.training.recipe.resolve_rewards", refuse)
    # toy meta-groups have 3 prompts; 12 completions / K 3 = 4 prompts per generation batch: not whole groups
    args = ["train", "--config", str(TINY), f"output_dir={tmp_path}", "per_device_train_batch_size=12"]
    assert main(args) == INPUT_ERROR
    err = capsys.readouterr().err
    # the numbers that do not fit, and the sizes that would
    facts = ("4 prompts", "generation_batch_size 12", "num_generations 3", "meta-groups of 3 prompts")
    assert_error(err, *facts, "generation_batch_size in [9, 18, 27, 36]")
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_batch_that_is_no_multiple_of_k_names_the_fix(tmp_path, capsys):
    args = ["train", "--config", str(TINY), f"output_dir={tmp_path}", "per_device_train_batch_size=7"]
    assert main(args) == INPUT_ERROR
    err = capsys.readouterr().err
    assert_error(err, "generation_batch_size (7)", "divisible by num_generations (3)")
    assert_facts(err, "per_device_train_batch_size to a multiple of (prompts per meta-group) × K")  # the fix
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "processes"), [("tiny-cpu.yaml", 1), ("smollm2-cpu.yaml", 1), ("paper-qwen2.5-14b.yaml", 7)]
)
def test_shipped_configs_hold_whole_meta_groups_of_data_build(name, processes):
    # `data build` writes meta-groups of anchors + opens prompts (its defaults, read from the
    # command and the function so that a change there fails here: 2 + 4 = 6), the toy data 1 + 2 = 3. A generation
    # batch is per_device × processes × steps_per_generation completions, / K prompts; e.g. the paper's
    # 3 × 7 × 6 = 126 completions / K 3 = 42 prompts = 7 meta-groups of 6 (7 training processes, vLLM's server on
    # the eighth GPU).
    build = build_parser().parse_args(["data", "build", "--domain", "safety", "--out", "x.jsonl"])
    defaults = inspect.signature(build_meta_groups).parameters
    assert (build.anchors, build.opens) == (defaults["anchors"].default, defaults["opens"].default) == (2, 4)
    group_size = build.anchors + build.opens
    values = yaml.safe_load((CONFIGS / name).read_text())
    steps_per_generation = values.get("steps_per_generation") or values.get("gradient_accumulation_steps", 1)
    completions = values["per_device_train_batch_size"] * processes * steps_per_generation
    prompts, rest = divmod(completions, values["num_generations"])
    assert rest == 0 and prompts % group_size == 0 and prompts % 3 == 0, (name, prompts)
