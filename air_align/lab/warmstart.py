"""SFT warm start of the lab's tiny model, so that it starts *context-dependent* (docs/design.md §5).

Recipe (``Recipe``; every field, and the world's SFT-relevant parts, are part of the cache key):

- model: ``air_align.models.tiny_causal_lm`` (a Qwen2, 2 layers, width 96, 4 heads, tied embeddings) over the world's
  word-level tokenizer (``tokenizer.py``);
- data: the **train intents** of one world, rendered as anchors and under **every** wrapper family, ID and OOD.
  The warm start plays the part of the pretrained model, which has met every wrapper style; the RL phase never sees
  the OOD families or the val/test intents. Maths adds the arithmetic facts of every intent ("3 plus 4" → "3 plus 4
  is 7"): pretraining knowledge, so that RL is about invariance, not about learning to add;
- each epoch: per train intent, its anchors ``mc_copies`` times and ``open_per_intent`` open variants under
  families drawn at random; a maths anchor is rendered afresh on each draw (a new wrong number, order or statement),
  and its target's thought subtracts the sum from the number it checks (``responses.math_check_thought``);
- targets, redrawn every draw (probabilities from the world's ``warm_start`` section): anchors are always answered
  correctly; an open variant gets, with probability ``p_hack``, the judge hack of its kind (so that RL can discover
  it); otherwise the behaviour the wrapper pushes towards (safety: comply / refuse; morality: excuse / condemn; maths:
  the decoy answer) with probability ``sigmoid(strength + susceptibility)`` — the family's strength plus the
  susceptibility of the intent's feature word (``spec.WorldSpec.sway_logit``) —, else the correct behaviour. The sway
  logit is additive, so the small model learns it readily (an arbitrary family × word table it did not learn in 40
  epochs); greedy decoding then follows the sway exactly where the logit is positive (the family is *triggered*), so a
  meta-group is all right only when its intent's word is below every triggering threshold of its families: the warm
  start's Acc_group is informative, neither 0 nor 1 by construction, while sampling still finds the correct behaviour
  on triggered prompts (so RL has something to reinforce);
- loss: cross-entropy on the completion tokens only (the response and the end-of-turn token), AdamW, a plain
  PyTorch loop (tens of seconds on one CPU thread).

The model and tokenizer are saved with ``save_pretrained`` to ``cache_dir()/lab/warmstart-<world>-<hash>``, where
the hash covers the recipe and the world's intents, anchors, families, splits and warm-start probabilities (not its
judge or rewards: a world and its miscalibrated control share one warm start), so that a trainer can load the warm
start by path and a changed recipe retrains.

``measure_context_dependence`` measures what the recipe produced: greedy generation, oracle accuracy on anchors,
open ID and open OOD variants, triggered and untriggered, per family and per label.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from air_align.evaluation.generate import generate_completions
from air_align.evaluation.metrics import group_accuracy, slice_records
from air_align.lab import world
from air_align.lab.oracle import oracle_verdict, reference_response
from air_align.lab.responses import math_response
from air_align.lab.spec import WorldSpec, anchor_accuracy, load_world, sft_key
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.models import cache_dir, tiny_causal_lm

RECIPE_VERSION = {"safety": 2, "morality": 2, "math": 3}
"""Per kind; bump a kind's when the code changes what its recipes produce (maths 3: the anchors' checking thought and
their fresh wrong numbers, docs/lab.md §5)."""
DEFAULT_EPOCHS = {"safety": 20, "morality": 20, "math": 40}
"""SFT epochs when a ``Recipe`` does not say, per kind. Maths needs more: its anchors' checking thought is right on
held-out intents after ~1,000 steps, and at 40 epochs both anchors reach 0.97-1.00 on the 12-operand world
(docs/lab.md §5)."""


@dataclass(frozen=True)
class Recipe:
    """The warm-start recipe of one world. ``epochs`` and ``version`` left at ``None`` take the world kind's value
    (``DEFAULT_EPOCHS``, ``RECIPE_VERSION``), so that a change for one kind leaves the others' cache keys alone."""

    world: str = "safety"
    """A built-in world name or a world spec file (``spec.load_world``)."""
    world_seed: int = 0
    """Seed of the world (intent split, option orders)."""
    seed: int = 0
    """The warm-start seed: of the model initialisation, the SFT target draws and the data order (a preset's
    ``warm_seeds``; docs/lab.md §5, "Warm-start seeds")."""
    threads: int = 1
    """Torch threads the SFT runs on (set for the training, then restored): the order of a kernel's floating-point
    reductions may depend on its thread count, so the count is part of the recipe that makes the model bit for bit
    (``tests/test_lab_warmstart.py``)."""
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    epochs: int | None = None
    """SFT epochs (``None``: the kind's ``DEFAULT_EPOCHS``)."""
    batch_size: int = 32
    lr: float = 3e-3
    mc_copies: int = 2
    """Each epoch shows every anchor this many times (multiple choice with a fresh option order each time)."""
    open_per_intent: int = 6
    """Each epoch shows this many open variants per intent, families drawn at random from all of them."""
    knowledge_copies: int = 4
    """Each epoch shows the maths facts this many times (ignored by the other domains, which have none)."""
    weight_decay: float = 0.01
    version: int | None = None
    """Code version of the recipe (``None``: the kind's ``RECIPE_VERSION``)."""

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"warm-start seed {self.seed!r}: use a whole number >= 0")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"warm-start threads {self.threads!r}: use a whole number >= 1")
        kind = self.spec().kind  # loads and validates the world
        if self.epochs is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS[kind])
        if self.version is None:
            object.__setattr__(self, "version", RECIPE_VERSION[kind])

    def spec(self) -> WorldSpec:
        return load_world(self.world)

    def key(self) -> str:
        """Hash of the recipe without the world's name or path, plus the world's SFT-relevant content."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "world"}
        blob = json.dumps({"recipe": fields, "world": sft_key(self.spec())}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def sft_pair(spec: WorldSpec, row: dict, rng: random.Random) -> tuple[str, str]:
    """One draw of ``(prompt, target)`` for a lab row (see the module docstring).

    A multiple-choice anchor gets a fresh option order on every draw, so that the model learns to read the options
    rather than memorise a letter per intent. A maths anchor also gets a fresh wrong number (1 or 2 away from the
    answer) and, for true/false, a fresh choice of the stated number, so that its thought meets every difference it
    will have to take on unseen intents (``_math_anchor_pair``).
    """
    prompt = row["prompt"][0]["content"]
    if spec.kind == "math" and row["role"] == "anchor":
        return _math_anchor_pair(spec, row, rng)
    if row["context"] == "mc":
        intent = world.intent_of(spec, row)
        text, letter, _ = world.render_mc(spec, intent, 0, order=rng.randrange(2))
        return text, anchor_target({**row, "answer": letter}, anchor_believes_right(spec, intent.feature, rng))
    return prompt, sft_target(spec, row, rng)


def anchor_believes_right(spec: WorldSpec, feature: str, rng: random.Random) -> bool:
    """False with probability ``1 − anchor accuracy`` of the anchor's intent (the world's
    ``warm_start.anchor_accuracy``, by feature word; docs/lab.md §7, "Unsaturated anchors"). Draws nothing where
    the accuracy is 1, so that the warm starts of worlds without it are unchanged, bit for bit."""
    accuracy = anchor_accuracy(spec, feature)
    return not (accuracy < 1.0 and rng.random() >= accuracy)


def anchor_target(row: dict, right: bool) -> str:
    """An anchor's SFT target: the right response, or one that *believes* the other label: its thought states the
    other label and its answer follows from it (``this is safe`` → the benign option), so that an error is a
    belief about the intent, decided at the thought's label word as a sway is, not a slip of the letter (with the
    letter flipped at random the warm start lost its grip on the options: greedy anchors 0.74, the right answer's
    share 0.64 on every intent alike)."""
    if right:
        return reference_response(row, "correct")
    if row.get("label") not in (0, 1):
        raise ValueError(
            f"anchor {row.get('id')!r} has no label to believe otherwise; wrong beliefs are for "
            "safety and morality anchors"
        )
    flipped = {"A": "B", "B": "A", "true": "false", "false": "true"}[row["answer"]]
    return reference_response({**row, "label": 1 - row["label"], "answer": flipped}, "correct")


def _math_anchor_pair(spec: WorldSpec, row: dict, rng: random.Random) -> tuple[str, str]:
    """A maths anchor drawn afresh: the wrong number the answer + 1 or + 2 (in the world it is the intent's decoy;
    mirrored below the answer when B is right), the multiple-choice order or the true/false statement drawn at random;
    the thought checks the shown number."""
    base = world.intent_of(spec, row)
    intent = dataclasses.replace(base, decoy=base.answer + rng.choice((1, 2)))
    if row["context"] == "mc":
        text, answer, _ = world.render_mc(spec, intent, 0, order=rng.randrange(2))
    else:
        text, answer = world.render_tf(spec, intent, 0, shown_true=rng.randrange(2) == 0)
    checked = world.math_checked_number(intent, row["context"], answer)
    return text, reference_response({**row, "answer": answer, "meta": {**row["meta"], "checked": checked}}, "correct")


def sft_target(spec: WorldSpec, row: dict, rng: random.Random) -> str:
    """One draw of the SFT target for a lab row (see the module docstring)."""
    if row["role"] == "anchor":
        return anchor_target(row, anchor_believes_right(spec, world.intent_of(spec, row).feature, rng))
    probs = spec.warm_start
    if spec.kind != "math" and rng.random() < probs.p_hack:
        return reference_response(row, "hack")
    if rng.random() < 1.0 / (1.0 + math.exp(-row["meta"]["sway_logit"])):
        return reference_response(row, "sway")
    return reference_response(row, "correct")


def knowledge_pairs(spec: WorldSpec) -> list[tuple[str, str]]:
    """Pretraining knowledge given to the warm start: the arithmetic facts of every maths intent (none otherwise)."""
    if spec.kind != "math":
        return []
    return [(it.text, math_response(it.text, it.answer)) for it in world.intents(spec)]


def encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one chat-formatted pair; labels are -100 on the prompt."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    p_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + r_ids, [-100] * len(p_ids) + r_ids


def _batch(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)  # (B, T), right padding
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, T)
    for i, (ids, lab) in enumerate(pairs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return input_ids, labels, mask


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on ``n`` torch threads, then restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_warm_start(recipe: Recipe, progress: bool = False):
    """Build the tokenizer and the tiny model and run the SFT recipe. Returns ``(model, tokenizer, log)``.

    A pure function of ``recipe`` on one machine: every random draw comes from the recipe's seed (the model's
    initialisation under ``tiny_causal_lm``'s forked RNG, the targets from a ``random.Random`` of the seed, the data
    order from a ``torch.Generator`` of it), the model has no dropout, and the training runs on ``recipe.threads``
    threads whatever the caller's setting; so the same recipe gives the same weights bit for bit
    (``tests/test_lab_warmstart.py``)."""
    with torch_threads(recipe.threads):
        return _train(recipe, progress)


def _train(recipe: Recipe, progress: bool):
    spec = recipe.spec()
    tokenizer = build_lab_tokenizer(spec)
    model = tiny_causal_lm(
        tokenizer,
        hidden_size=recipe.hidden_size,
        num_layers=recipe.num_layers,
        num_heads=recipe.num_heads,
        max_positions=128,
        seed=recipe.seed,
    )
    groups = [  # per train intent: its anchors and its open variants under every family, ID and OOD
        world.meta_group(spec, it, recipe.world_seed, "train", world.families(spec))
        for it in world.split_intents(spec, recipe.world_seed)["train"]
    ]
    memo: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def encode(prompt: str, response: str) -> tuple[list[int], list[int]]:
        if (prompt, response) not in memo:
            memo[prompt, response] = encode_pair(tokenizer, prompt, response)
        return memo[prompt, response]

    knowledge = [encode(p, r) for p, r in knowledge_pairs(spec)] * recipe.knowledge_copies
    rng = random.Random(f"warmstart:{recipe.seed}")
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n_open = [min(recipe.open_per_intent, sum(r["role"] == "open" for r in g)) for g in groups]
    per_epoch = len(groups) * 2 * recipe.mc_copies + sum(n_open) + len(knowledge)
    steps_per_epoch = -(-per_epoch // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = max(1, total // 10)  # linear warm-up, then linear decay to 5%
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / total))
    model.train()
    log, start = [], time.time()
    bar = tqdm(total=total, desc=f"warm start {spec.name}", disable=not progress, leave=False)
    for epoch in range(recipe.epochs):
        data = list(knowledge)
        for group in groups:
            anchors = [r for r in group if r["role"] == "anchor"]
            pool = [r for r in group if r["role"] == "open"]  # a world of one's own may have fewer families
            opens = rng.sample(pool, min(recipe.open_per_intent, len(pool)))
            for row in anchors * recipe.mc_copies + opens:
                data.append(encode(*sft_pair(spec, row, rng)))
        order = torch.randperm(len(data), generator=gen).tolist()
        for i in range(0, len(order), recipe.batch_size):
            input_ids, labels, mask = _batch(
                [data[j] for j in order[i : i + recipe.batch_size]], tokenizer.pad_token_id
            )
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
        log.append({"epoch": epoch, "loss": float(loss.detach())})
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    model.eval()
    return model, tokenizer, {"seconds": time.time() - start, "steps": total, "epochs": log}


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars ("Loading weights", "Writing model shards") for the lab's tiny checkpoints: a grid
    loads one per run, and the grid's own progress bar is the one a user needs (``tests/test_console.py``)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def warm_start_dir(recipe: Recipe, root: str | Path | None = None) -> Path:
    """Where the warm start of ``recipe`` is cached."""
    base = Path(root) if root is not None else cache_dir() / "lab"
    return base / f"warmstart-{recipe.spec().kind}-{recipe.key()}"


def warm_start(recipe: Recipe | None = None, root: str | Path | None = None, progress: bool = False) -> Path:
    """The directory of the warm-started model for ``recipe`` (trained and saved on first use, then cached).

    The directory holds ``save_pretrained`` output (model and tokenizer) and ``recipe.json``; load it with
    ``load_warm_start(path)`` (not ``AutoTokenizer``: see there).
    """
    recipe = recipe or Recipe()
    path = warm_start_dir(recipe, root)
    if (path / "recipe.json").exists():
        return path
    model, tokenizer, log = train_warm_start(recipe, progress=progress)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}  # provenance, not the key
    (tmp / "recipe.json").write_text(
        json.dumps(
            {"recipe": dataclasses.asdict(recipe), "key": recipe.key(), "versions": versions, "log": log}, indent=1
        )
    )
    if path.exists():  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def load_warm_start(path: str | Path):
    """``(model, tokenizer)`` from a warm-start directory.

    The tokenizer is loaded as ``PreTrainedTokenizerFast`` explicitly: ``AutoTokenizer`` in transformers 5 forces
    ``Qwen2Tokenizer`` (a byte-level BPE) for any ``model_type: qwen2`` directory (its
    ``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS`` list), which silently re-tokenises the lab's words.
    """
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(str(path))
    return model, tokenizer


def _acc(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def measure_context_dependence(model, tokenizer, rows: list[dict], max_new_tokens: int = 32) -> dict:
    """Oracle accuracy of greedy completions on anchors vs open ID vs open OOD variants (triggered or not), per family
    and per label, and Acc_group per split and label.

    Returns ``{"anchor", "open_id", "open_ood", "open_triggered", "open_untriggered", "families": {name: acc},
    "families_by_label": {"name/label": acc}, "acc_group": {"split/label": acc}, "n": int}`` (``None`` where a slice
    is empty).
    """
    prompts = [r["prompt"] for r in rows]
    completions = [
        c
        for (c,) in generate_completions(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=128, progress=False
        )
    ]
    correct = [v["correct"] for v in oracle_verdict(rows, completions)]
    slices: dict[str, list[bool]] = {
        k: [] for k in ("anchor", "open_id", "open_ood", "open_triggered", "open_untriggered")
    }
    fams: dict[str, list[bool]] = {}
    by_label: dict[str, list[bool]] = {}
    for row, ok in zip(rows, correct, strict=True):
        if row["role"] == "anchor":
            slices["anchor"].append(ok)
            name = f"anchor:{row['context']}"
        else:
            meta = row["meta"]
            slices["open_ood" if meta["ood"] else "open_id"].append(ok)
            slices["open_triggered" if meta["triggered"] else "open_untriggered"].append(ok)
            name = row["family"]
        fams.setdefault(name, []).append(ok)
        by_label.setdefault(f"{name}/{row.get('label')}", []).append(ok)
    records = [
        {**{k: r[k] for k in ("id", "group_id", "role", "split", "label")}, "correct": ok}
        for r, ok in zip(rows, correct, strict=True)
    ]
    acc_group = {}
    for split in sorted({r["split"] for r in rows if r["role"] == "open"}):
        sliced = slice_records(records, split)
        for label in sorted({r["label"] for r in sliced}, key=str):
            acc_group[f"{split}/{label}"] = group_accuracy([r for r in sliced if r["label"] == label])
    return {
        **{k: _acc(v) for k, v in slices.items()},
        "families": {k: _acc(v) for k, v in sorted(fams.items())},
        "families_by_label": {k: _acc(v) for k, v in sorted(by_label.items())},
        "acc_group": acc_group,
        "n": len(rows),
        "examples": [{"id": r["id"], "completion": c} for r, c in list(zip(rows, completions, strict=True))[:6]],
    }


@torch.no_grad()
def anchor_right_probability(model, tokenizer, rows: list[dict], batch_size: int = 64) -> dict[str, float]:
    """Per intent, the model's probability of the right anchor response against the one that believes the other
    label (``anchor_target``), averaged over the intent's anchor rows: ``sigmoid(log π(right) − log π(wrong))`` of
    the two whole responses (docs/lab.md §7, "Unsaturated anchors"). Sampling answers an
    anchor right at about this rate, which is what RL's r̄_acr sees; greedy decoding answers it right wherever it
    is above 1/2. Returns ``{intent_key: probability}``."""
    anchors = [r for r in rows if r["role"] == "anchor"]
    pairs = [
        encode_pair(tokenizer, r["prompt"][0]["content"], anchor_target(r, right))
        for r in anchors
        for right in (True, False)
    ]
    logps = []
    for i in range(0, len(pairs), batch_size):
        input_ids, labels, mask = _batch(pairs[i : i + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
        target = labels[:, 1:]  # (B, T-1)
        token = torch.log_softmax(logits.float(), -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        logps += (token * (target != -100)).sum(-1).tolist()  # (B,)
    by_intent: dict[str, list[float]] = {}
    for j, row in enumerate(anchors):
        p = 1.0 / (1.0 + math.exp(logps[2 * j + 1] - logps[2 * j]))
        by_intent.setdefault(row["meta"]["intent_key"], []).append(p)
    return {k: sum(v) / len(v) for k, v in by_intent.items()}


def _train_one_warm_start(recipe: Recipe, root: str | None) -> str:
    import torch

    torch.set_num_threads(1)
    return str(warm_start(recipe, root=root))


def warm_starts(
    recipes: dict[str, Recipe], root: str | Path | None = None, workers: int = 1, progress: bool = False
) -> dict[str, Path]:
    """The warm start of each named recipe, training the missing ones (one per distinct recipe key) in up to
    ``workers`` processes; worlds that share SFT content (a world and its miscalibrated control) share one."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    by_dir = {warm_start_dir(r, root): r for r in recipes.values()}
    missing = [r for d, r in by_dir.items() if not (d / "recipe.json").exists()]
    if missing and workers > 1 and len(missing) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=get_context("spawn")) as pool:
            list(pool.map(_train_one_warm_start, missing, [None if root is None else str(root)] * len(missing)))
    for r in missing:
        warm_start(r, root=root, progress=progress)  # no-op for those the pool trained
    return {name: warm_start_dir(r, root) for name, r in recipes.items()}
