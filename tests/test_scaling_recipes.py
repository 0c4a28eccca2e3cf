"""docs/scaling.md's recipes fit the hardware they name (docs/scaling.md, "Recipes that fit their GPUs").

Every ``accelerate launch`` the page shows sits in a recipe block whose first line names the hardware
(``# recipe NAME: 1 machine × 8 GPUs of 80 GB``); the block may start a vLLM server. For each recipe this reads the
page, the accelerate file and the training config (with the command's ``key=value`` overrides) and checks

- the GPU split: the training processes of a machine are as many as the GPUs they are given (``gpu_ids``), the
  vLLM server's GPUs (``CUDA_VISIBLE_DEVICES``) are others, a colocated tensor-parallel size divides the processes,
  a server on another machine is named (``vllm_server_host``);
- the batch geometry, with the project's own check (``check_batch_geometry``) and the number of processes, on
  meta-groups of ``air-align data build``'s defaults;
- the memory tables under the block: every number recomputed here from the model's shape (its ``config.json``,
  written below with its source) and the configs, and the total within the GPU, the composite reward's in-process
  judge included (a whole copy of the initial policy, or of the named judge model, on every training GPU);
- the vLLM server command: ``vllm serve`` with every setting TRL's deprecated ``trl vllm-serve`` would add.

The page is the source: a recipe added there is checked here, and a launch outside a recipe block fails.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from air_align.cli import build_parser
from air_align.rewards.composite import JudgeConfig, RewardConfig
from air_align.rewards.judges import LogprobJudge
from air_align.training.recipe import check_batch_geometry, reward_names
from air_align.training.run import build_configs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"
GB = 1e9  # the tables' unit: 10⁹ bytes


@dataclass(frozen=True)
class Decoder:
    """The shape numbers of a decoder-only transformer's ``config.json`` that its memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    qkv_bias: bool
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def parameters(self) -> int:
        """Q, K, V, O projections (+ Q/K/V biases), gate/up/down MLP and two RMSNorms a layer; embeddings, a final
        norm, and an LM head unless tied."""
        kv = self.kv_heads * self.head_dim
        attention = self.hidden * (self.hidden + 2 * kv) + self.hidden * self.hidden
        attention += (self.hidden + 2 * kv) if self.qkv_bias else 0
        layer = attention + 3 * self.hidden * self.intermediate + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * layer + embeddings + self.hidden

    def kv_bytes_per_token(self) -> int:
        """K and V of every layer, bf16: 2 × layers × kv_heads × head_dim × 2 B."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


# huggingface.co/Qwen/Qwen2.5-14B-Instruct, config.json: hidden_size 5120, intermediate_size 13824,
# num_hidden_layers 48, num_attention_heads 40, num_key_value_heads 8, vocab_size 152064, tie_word_embeddings
# false; Qwen2 attention has Q/K/V biases. The model card says 14.7B parameters.
QWEN25_14B = Decoder(5120, 13824, 48, 40, 8, 152064, qkv_bias=True, tied_embeddings=False)
# huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct, config.json: hidden_size 576, intermediate_size 1536,
# num_hidden_layers 30, num_attention_heads 9, num_key_value_heads 3, vocab_size 49152, tie_word_embeddings true
# (Llama: no biases).
SMOLLM2_135M = Decoder(576, 1536, 30, 9, 3, 49152, qkv_bias=False, tied_embeddings=True)
MODELS = {"Qwen/Qwen2.5-14B-Instruct": QWEN25_14B, "smollm2-135m": SMOLLM2_135M}

# The estimates docs/scaling.md states ("How the tables are computed"), not measurements.
MAX_PROMPT_TOKENS = 1024  # `data build` caps a jailbreak template at 2000 characters
CUDA_CONTEXT_GB = 2.0  # CUDA context, NCCL buffers, allocator slack of a training process
ZERO3_LIVE_PARAMETERS = 1e9  # DeepSpeed's stage3_max_live_parameters default: gathered bf16 parameters
VLLM_WORKING_GB = 4.0  # vLLM's activations (TRL caps a pass at 4096 tokens), sampler and CUDA graphs
# an in-process judge keeps the last max_length tokens of a prompt (LogprobJudge's default, which the reward uses)
JUDGE_MAX_TOKENS = inspect.signature(LogprobJudge).parameters["max_length"].default

# `vllm serve` settings that TRL's build_command spells out at vLLM's own defaults (vLLM's model-impl "auto" picks
# vLLM's implementation for Qwen2); every other flag it builds must be in the page's server command.
VLLM_DEFAULTS = {"--host", "--port", "--data-parallel-size", "--dtype", "--kv-cache-dtype", "--model-impl"}
VLLM_DEFAULTS |= {"--uvicorn-log-level"}

HEADER = re.compile(
    r"^# recipe (?P<name>[\w.+-]+): (?P<machines>\d+) machines? × (?P<gpus>\d+) GPUs of (?P<gb>\d+) GB"
)
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass
class Command:
    env: dict
    argv: list


@dataclass
class Recipe:
    name: str
    machines: int
    gpus: int  # per machine
    gpu_gb: float
    launches: list = field(default_factory=list)
    server: Command | None = None
    tables: dict = field(default_factory=dict)  # role -> {label: value}


def commands(body: list[str]) -> list[Command]:
    """Shell commands of a block: lines joined at a trailing backslash, comments dropped, ``VAR=value`` prefixes
    split off."""
    joined, current = [], ""
    for line in body:
        continued = line.rstrip().endswith("\\")
        current += line.rstrip().removesuffix("\\") + " " if continued else line
        if not continued:
            joined.append(current)
            current = ""
    out = []
    for text in joined:
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError:  # not shell words (a heredoc's body line): only a recipe's commands are read closely
            tokens = text.split()
        tokens = [t for t in tokens if t != "&"]
        if not tokens:
            continue
        env = {}
        while tokens and ASSIGNMENT.match(tokens[0]):
            key, value = tokens.pop(0).split("=", 1)
            env[key] = value
        out.append(Command(env, tokens))
    return out


def table_rows(lines: list[str]) -> dict:
    """``{role: {label: value}}`` of the ``| item | how | value |`` tables in ``lines``; a table's first header
    cell is its role."""
    tables, role = {}, None
    for line in lines:
        if not line.startswith("|"):
            role = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if role is None:
            role = cells[0]
            tables[role] = {}
        elif not set(cells[0]) <= set("-: "):
            tables[role][cells[0]] = float(cells[-1].replace(",", ""))
    return tables


def parse_recipes(text: str) -> tuple[list[Recipe], list[Command]]:
    """The page's recipe blocks, and the commands of its other shell blocks."""
    lines = text.splitlines()
    recipes, elsewhere, i = [], [], 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body, shell = lines[i + 1 : end], lines[i].strip("`").strip() in ("bash", "sh", "shell", "")
        header = HEADER.match(body[0]) if body else None
        i = end + 1
        if header is None:
            elsewhere += commands(body) if shell else []
            continue
        recipe = Recipe(header["name"], int(header["machines"]), int(header["gpus"]), float(header["gb"]))
        for command in commands(body):
            if command.argv[:2] == ["accelerate", "launch"]:
                recipe.launches.append(command)
            elif command.argv[:2] == ["vllm", "serve"]:
                assert recipe.server is None, f"recipe {recipe.name}: one vLLM server a recipe"
                recipe.server = command
        following = next((j for j in range(i, len(lines)) if lines[j].startswith(("#", "```"))), len(lines))
        recipe.tables = table_rows(lines[i:following])
        recipes.append(recipe)
    return recipes, elsewhere


TEXT = DOC.read_text(encoding="utf-8")
RECIPES, ELSEWHERE = parse_recipes(TEXT)


def option(argv: list, name: str, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


@dataclass
class Launch:
    """One ``accelerate launch … -m air_align.cli train --config Y k=v …`` with its files read."""

    accelerate: dict
    run: object  # RunConfig
    air: object  # AIRConfig

    @property
    def processes(self) -> int:
        return self.accelerate["num_processes"]

    @property
    def shards(self) -> int:
        """Over how many processes the training state is split: all of them under ZeRO-3, none under DDP."""
        zero3 = self.accelerate.get("deepspeed_config", {}).get("zero_stage") == 3
        return self.processes if self.accelerate["distributed_type"] == "DEEPSPEED" and zero3 else 1


def read_launch(command: Command) -> Launch:
    argv = command.argv
    accelerate = yaml.safe_load((ROOT / option(argv, "--config_file")).read_text())
    train = argv[argv.index("air_align.cli") + 1 :]
    assert train[0] == "train" and "--config" in train, argv
    overrides = [t for t in train[1:] if "=" in t and not t.startswith("-")]
    # use_cpu only lets the config build on this machine; the geometry below counts the launch's processes
    run, air = build_configs(ROOT / option(train, "--config"), [*overrides, "use_cpu=true"])
    RewardConfig.from_dict(run.reward_config)  # what the trainer reads: unknown keys fail here
    return Launch(accelerate, run, air)


def in_process_judge(run) -> JudgeConfig | None:
    """The judge config of the run's composite reward when its model lives in every training process (the
    frozen initial policy or a named model), as ``air_align.rewards.training_judge.training_judge`` decides; None
    for no composite reward, ``model: none`` or a served judge (``base_url``)."""
    if "composite" not in reward_names(run.reward):
        return None
    judge = RewardConfig.from_dict(run.reward_config).judge
    return None if judge.base_url or judge.model == "none" else judge


def test_the_page_shows_recipes_and_no_launch_outside_them():
    names = [r.name for r in RECIPES]
    assert len(names) == len(set(names)) and len(names) >= 4, names
    heads = [c.argv[:2] for c in ELSEWHERE]
    assert ["accelerate", "launch"] not in heads, (
        "an `accelerate launch` outside a `# recipe` block is checked by nothing"
    )
    assert ["trl", "vllm-serve"] not in heads, "deprecated in TRL 1.16 (trl/scripts/vllm_serve.py): `vllm serve`"
    assert all(len(r.launches) == 1 for r in RECIPES), "one launch command a recipe (run on every machine)"
    for path in (ROOT / "configs").rglob("*.yaml"):  # their comments show commands too
        assert "trl vllm-serve" not in path.read_text(), f"{path}: deprecated in TRL 1.16; use `vllm serve`"


def accelerate_plan(command: Command) -> tuple[int, str | None]:
    """(processes a machine, CUDA_VISIBLE_DEVICES) as accelerate's own launcher prepares them for ``command``
    (machine 1 where the command names a rank, which checks no port; nothing is started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    shell = {"$NODE_RANK": "1", "$MASTER_ADDR": "10.0.0.1"}
    args = launch_command_parser().parse_args([shell.get(t, t) for t in command.argv[2:]])
    with warnings.catch_warnings():  # "port 29500 in use" on a shared machine: not what is checked here
        warnings.simplefilter("ignore")
        args, defaults, _ = _validate_launch_command(args)
        if args.use_deepspeed:
            args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
            _, env = prepare_deepspeed_cmd_env(args)
        else:
            env = prepare_multi_gpu_env(args)
    return int(args.nproc_per_node), env.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_gpu_split_exists(recipe):
    launch = read_launch(recipe.launches[0])
    acc, air = launch.accelerate, launch.air
    assert acc["num_machines"] == recipe.machines
    per_machine, rest = divmod(launch.processes, recipe.machines)
    assert rest == 0, "accelerate starts num_processes / num_machines processes on every machine"
    gpu_ids = str(acc.get("gpu_ids", "all"))
    training = list(range(recipe.gpus)) if gpu_ids == "all" else [int(g) for g in gpu_ids.split(",")]
    assert len(training) == per_machine == len(set(training)), (training, per_machine)
    # the same, as accelerate 1.15's launcher reads the file and the command
    visible = None if gpu_ids == "all" else ",".join(map(str, training))
    assert accelerate_plan(recipe.launches[0]) == (per_machine, visible)
    assert all(0 <= g < recipe.gpus for g in training), training
    if not air.use_vllm or air.vllm_mode == "colocate":
        assert recipe.server is None, "no vLLM server without vllm_mode=server"
        assert launch.processes % air.vllm_tensor_parallel_size == 0, "TRL: the TP size must divide the processes"
        return
    assert air.vllm_mode == "server" and recipe.server is not None
    assert "CUDA_VISIBLE_DEVICES" in recipe.server.env, "the server's GPUs must be named, or it takes GPU 0"
    served = [int(g) for g in recipe.server.env["CUDA_VISIBLE_DEVICES"].split(",")]
    assert set(served).isdisjoint(training) and all(0 <= g < recipe.gpus for g in served), (served, training)
    assert int(option(recipe.server.argv, "--tensor-parallel-size", 1)) <= len(served)
    if recipe.machines > 1:
        # TRL's default 0.0.0.0 means this machine: a multi-node run names the server's machine
        assert air.vllm_server_base_url is None and air.vllm_server_host not in ("0.0.0.0", "localhost")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_batch_geometry_holds_whole_meta_groups(recipe):
    launch = read_launch(recipe.launches[0])
    air = launch.air
    build = build_parser().parse_args(["data", "build", "--domain", "safety", "--out", "x.jsonl"])
    group_size = build.anchors + build.opens  # 2 + 4 = 6, tests/test_train_config.py
    rows = [{air.group_column: f"z{i // group_size}"} for i in range(64 * group_size)]
    # AIRConfig was built in one process: its generation batch is per_device × 1 × steps_per_generation
    completions = air.per_device_train_batch_size * launch.processes * air.steps_per_generation
    assert completions % air.num_generations == 0
    check_batch_geometry(rows, SimpleNamespace(**{**vars(air), "generation_batch_size": completions}))
    assert (completions // air.num_generations) % group_size == 0


def vllm_settings(recipe: Recipe, air) -> tuple[float, int, int]:
    """(memory share, tensor-parallel size, max model length) of the recipe's vLLM, server or colocated."""
    if recipe.server is not None:
        argv = recipe.server.argv
        return (
            float(option(argv, "--gpu-memory-utilization")),
            int(option(argv, "--tensor-parallel-size", 1)),
            int(option(argv, "--max-model-len")),
        )
    return air.vllm_gpu_memory_utilization, air.vllm_tensor_parallel_size, air.vllm_max_model_length


def training_memory(model: Decoder, launch: Launch) -> dict:
    """GB per training GPU. ZeRO-3 splits weights, gradients and optimizer states over the processes (ZeRO paper,
    §3.1: bf16 2 + 2 B, fp32 master + Adam m + v 12 B a parameter); fp32 weights need no master copy."""
    run, air = launch.run, launch.air
    n, shards = model.parameters(), launch.shards
    weight_bytes = {"bfloat16": 2, "float32": 4}[run.model_dtype]
    optimizer_bytes = 8 + (4 if weight_bytes == 2 else 0)
    # activations of one micro-batch with checkpointing: the layer inputs kept, one layer recomputed in the backward
    # (MLP 4 × intermediate, attention ≈ 6 × hidden a token), the completion's logits (value, fp32 log-softmax and
    # gradient), DeepSpeed's gathered parameters, the CUDA context
    tokens = air.per_device_train_batch_size * (MAX_PROMPT_TOKENS + air.max_completion_length)
    act = weight_bytes
    inputs = model.layers * tokens * model.hidden * act
    layer = tokens * (4 * model.intermediate + 6 * model.hidden) * act
    logits = air.per_device_train_batch_size * air.max_completion_length * model.vocab * (2 * act + 4)
    gathered = ZERO3_LIVE_PARAMETERS * 2 if shards > 1 else 0
    return {
        "weights": weight_bytes * n / shards / GB,
        "gradients": weight_bytes * n / shards / GB,
        "optimizer states": optimizer_bytes * n / shards / GB,
        "activations and buffers (estimate)": (inputs + layer + logits + gathered) / GB + CUDA_CONTEXT_GB,
    }


def judge_memory(policy: Decoder, launch: Launch) -> dict:
    """GB per training GPU of the composite reward's in-process judge ({} without one): its whole weights in the
    policy's dtype (never sharded: ranks call it different numbers of times, docs/rewards.md, "Where the training
    judge lives"), and one forward under ``no_grad`` of ``batch_size`` prompts of ``JUDGE_MAX_TOKENS`` tokens: one
    layer's working set (the MLP's gate, up and their product, 3 × intermediate, and about 4 × hidden of residual,
    norm and attention a token), the padding mask (1 B a query-key pair) and the last position's logits with their
    fp32 log-softmax (``LogprobJudge`` asks for ``logits_to_keep=1``)."""
    judge = in_process_judge(launch.run)
    if judge is None:
        return {}
    assert judge.model == "policy" or judge.model in MODELS, f"judge {judge.model}: add its config.json shape here"
    model = policy if judge.model == "policy" else MODELS[judge.model]  # the frozen copy is the policy's shape
    size = {"bfloat16": 2, "float32": 4}[launch.run.model_dtype]  # the judge takes the policy's dtype
    b, t = judge.batch_size, JUDGE_MAX_TOKENS
    layer = b * t * (3 * model.intermediate + 4 * model.hidden) * size
    forward = layer + b * t * t + b * model.vocab * (size + 4)
    return {"judge: weights": size * model.parameters() / GB, "judge: forward (estimate)": forward / GB}


def vllm_memory(model: Decoder, recipe: Recipe, launch: Launch) -> dict:
    """GB of vLLM's share of a GPU (utilization × GPU memory): weights / TP, working memory, the KV cache."""
    utilization, tp, max_len = vllm_settings(recipe, launch.air)
    air = launch.air
    share = utilization * recipe.gpu_gb
    weights = 2 * model.parameters() / tp / GB
    kv = share - weights - VLLM_WORKING_GB
    # a colocated TP group generates its ranks' part of the generation batch; a server, all of it
    per_rank = air.per_device_train_batch_size * air.steps_per_generation
    asked = per_rank * (launch.processes if recipe.server is not None else tp)
    return {
        "vLLM share": share,
        "vLLM: weights": weights,
        "vLLM: working memory (estimate)": VLLM_WORKING_GB,
        "vLLM: KV cache": kv,
        "vLLM: full-length sequences held": math.floor(kv * GB / (max_len * model.kv_bytes_per_token() / tp)),
        "vLLM: sequences a generation asks for": asked,
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_memory_tables_add_up_and_fit(recipe):
    launch = read_launch(recipe.launches[0])
    model = MODELS[launch.run.model]
    if "composite" in reward_names(launch.run.reward):
        assert not RewardConfig.from_dict(launch.run.reward_config).judge.base_url, (
            f"recipe {recipe.name}: a served judge's GPUs are not counted here yet; count them before showing one"
        )
    train = {**training_memory(model, launch), **judge_memory(model, launch)}
    expected = {}
    if recipe.server is not None:
        expected["training GPU"] = {**train, "total": sum(train.values())}
        vllm = vllm_memory(model, recipe, launch)
        expected["vLLM GPU"] = {**vllm, "total": vllm["vLLM share"]}
    elif launch.air.use_vllm:
        vllm = vllm_memory(model, recipe, launch)
        expected["training GPU, vLLM colocated"] = {**train, **vllm, "total": sum(train.values()) + vllm["vLLM share"]}
    else:
        expected["training GPU"] = {**train, "total": sum(train.values())}
    assert set(recipe.tables) == set(expected), (recipe.name, sorted(recipe.tables))
    for role, rows in expected.items():
        rows["GPU memory"] = recipe.gpu_gb
        shown = recipe.tables[role]
        assert set(shown) == set(rows), (recipe.name, role, sorted(set(shown) ^ set(rows)))
        for label, value in rows.items():
            assert shown[label] == pytest.approx(value, abs=0.006), (recipe.name, role, label, value)
        assert rows["total"] <= recipe.gpu_gb, (recipe.name, role, rows["total"])
        if "vLLM: KV cache" in rows:
            assert rows["vLLM: full-length sequences held"] >= 1, "vLLM refuses to start without one"
            if recipe.server is None:  # colocated: sized for its generation in one pass
                assert rows["vLLM: full-length sequences held"] >= rows["vLLM: sequences a generation asks for"]


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.server is not None], ids=lambda r: r.name)
def test_server_command_is_what_trl_vllm_serve_would_run(recipe):
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    argv, launch = recipe.server.argv, read_launch(recipe.launches[0])
    assert recipe.server.env.get("VLLM_SERVER_DEV_MODE") == "1", "TRL's weight-sync endpoints need dev mode"
    assert argv[2] == launch.run.model, "the server serves the model being trained"
    utilization, tp, max_len = vllm_settings(recipe, launch.air)
    trl = build_command(
        ScriptArguments(argv[2], tensor_parallel_size=tp, gpu_memory_utilization=utilization, max_model_len=max_len)
    )
    trl = trl[trl.index("serve") :]
    flags = [i for i, t in enumerate(trl) if t.startswith("--")]
    assert flags, trl
    for i in flags:
        value = trl[i + 1] if i + 1 < len(trl) and not trl[i + 1].startswith("--") else None
        if trl[i] in VLLM_DEFAULTS:
            continue
        assert trl[i] in argv, f"recipe {recipe.name}: `vllm serve` lacks {trl[i]} {value or ''}"
        if value is not None:
            assert option(argv, trl[i]) == value, (trl[i], option(argv, trl[i]), value)
    assert max_len >= MAX_PROMPT_TOKENS + launch.air.max_completion_length


def test_parameter_count_matches_transformers_models():
    # the formula against real models of both kinds, small enough to build here
    import transformers

    qwen = Decoder(64, 160, 2, 4, 2, 300, qkv_bias=True, tied_embeddings=False)
    llama = Decoder(48, 96, 3, 6, 2, 200, qkv_bias=False, tied_embeddings=True)
    built = [
        transformers.Qwen2ForCausalLM(
            transformers.Qwen2Config(
                hidden_size=64,
                intermediate_size=160,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=300,
                tie_word_embeddings=False,
            )
        ),
        transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=48,
                intermediate_size=96,
                num_hidden_layers=3,
                num_attention_heads=6,
                num_key_value_heads=2,
                vocab_size=200,
                tie_word_embeddings=True,
            )
        ),
    ]
    for shape, model in zip((qwen, llama), built):
        assert shape.parameters() == sum(p.numel() for p in model.parameters())
    # the model cards' 14.7B and 135M
    assert 14.7e9 <= QWEN25_14B.parameters() < 14.8e9
    assert 134e6 <= SMOLLM2_135M.parameters() < 136e6
    # bf16 weights of the 14B model, 2 B a parameter: the ≈ 29.5 GB vLLM must hold
    assert 2 * QWEN25_14B.parameters() / GB == pytest.approx(29.54, abs=0.005)


# `reward_config='…'` overrides the page offers in its prose (a smaller judge batch, a served judge), with what it
# says of them: "…`: 0.52 GB instead of 2.07`" for an in-process judge's forward.
PROSE = " ".join(TEXT.splitlines())
REWARD_OVERRIDES = re.findall(r"`reward_config='([^'`]*)'`(?::\s*([\d.]+) GB instead of ([\d.]+))?", PROSE)


def test_the_page_offers_judge_overrides():
    assert len(REWARD_OVERRIDES) >= 2, REWARD_OVERRIDES


@pytest.mark.parametrize("override", REWARD_OVERRIDES, ids=lambda o: o[0])
def test_judge_overrides_on_the_page_build_and_say_what_they_cost(override):
    from air_align.rewards.composite import build_judge
    from air_align.rewards.server_judge import ServerJudge

    value, claimed, before = override
    shipped = ROOT / "configs" / "paper-qwen2.5-14b.yaml"
    run, air = build_configs(shipped, [f"reward_config={value}", "use_cpu=true"])
    judge = RewardConfig.from_dict(run.reward_config).judge
    launch = Launch({}, run, air)
    if judge.base_url:  # served: no weights in the training processes; the page names the served model
        assert in_process_judge(run) is None and judge_memory(QWEN25_14B, launch) == {}
        assert isinstance(build_judge(judge), ServerJudge)  # a client only: nothing is sent
        assert f"--served-model-name {judge.server_model}" in PROSE, "the server must answer to the name sent"
        return
    forward = judge_memory(QWEN25_14B, launch)["judge: forward (estimate)"]
    default = judge_memory(QWEN25_14B, Launch({}, *build_configs(shipped, ["use_cpu=true"])))
    default = default["judge: forward (estimate)"]
    assert (float(claimed), float(before)) == (pytest.approx(forward, abs=0.006), pytest.approx(default, abs=0.006))
