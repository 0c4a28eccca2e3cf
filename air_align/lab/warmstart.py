"""SFT warm start of the lab's tiny model, so that it starts *context-dependent* (DESIGN.md §5).

Recipe (``Recipe``; every field is part of the cache key):

- model: ``air_align.models.tiny_causal_lm`` (a Qwen2, 2 layers, width 96, 4 heads, tied embeddings) over the lab's
  word-level tokenizer (``tokenizer.py``);
- data: the **train intents** of one domain, rendered as anchors and under **every** wrapper family, ID and OOD.
  The warm start plays the part of the pretrained model, which has met every wrapper style; the RL phase never sees
  the OOD families or the val/test intents. Maths adds the arithmetic facts of every intent ("3 plus 4" → "3 plus 4
  is 7"): pretraining knowledge, so that RL is about invariance, not about learning to add;
- each epoch: per train intent, its anchors ``mc_copies`` times and ``open_per_intent`` open variants under
  families drawn at random (the SFT cost on 2 busy CPU cores is about 0.2 ms a token, so the data are kept lean);
- targets, redrawn every draw: anchors are always answered correctly; an open variant gets, with probability
  ``p_hack`` the judge hack of its domain (so that RL can discover it), else with the family's ``p_sway`` the
  behaviour its wrapper pushes towards (safety: comply / refuse; morality: excuse / condemn; maths: the decoy
  answer), else the correct behaviour. Strong families (``p_sway = 1``) are therefore obeyed whatever the intent;
- loss: cross-entropy on the completion tokens only (the response and the end-of-turn token), AdamW, a plain
  PyTorch loop (a few seconds to ~30 s on 2 CPU cores).

The model and tokenizer are saved with ``save_pretrained`` to ``cache_dir()/lab/warmstart-<domain>-<hash>``, where
the hash covers the recipe, so that a trainer can load the warm start by path and a changed recipe retrains.

``measure_context_dependence`` measures what the recipe produced: greedy generation, oracle accuracy on anchors,
open ID and open OOD variants, per family and per label.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from air_align.evaluation.generate import generate_completions
from air_align.lab import world
from air_align.lab.oracle import oracle_verdict, reference_response
from air_align.lab.responses import math_response
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.models import cache_dir, tiny_causal_lm

RECIPE_VERSION = {"safety": 1, "morality": 1, "math": 2}
"""Per domain; bump a domain's when the code changes what its recipe produces (maths 2: the anchors' checking
thought and fresh wrong numbers, docs/lab.md §4)."""
DEFAULT_EPOCHS = {"safety": 20, "morality": 20, "math": 30}
"""SFT epochs when a ``Recipe`` does not say. Maths needs more: its anchors' checking thought is right on held-out
intents after ~1000 steps (3 seeds at 30 epochs: anchors 0.97-1.00; at 20 epochs one seed in two is at 0.6)."""


@dataclass(frozen=True)
class Recipe:
    """The warm-start recipe of one domain. ``epochs`` and ``version`` left at ``None`` take the domain's value
    (``DEFAULT_EPOCHS``, ``RECIPE_VERSION``), so the other domains' recipes, and their cache keys, are unchanged."""

    domain: str = "safety"
    world_seed: int = 0
    """Seed of the world (intent split, option orders)."""
    seed: int = 0
    """Seed of the model initialisation and of the SFT target draws."""
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    epochs: int | None = None
    """SFT epochs (``None``: the domain's ``DEFAULT_EPOCHS``)."""
    batch_size: int = 32
    lr: float = 3e-3
    mc_copies: int = 2
    """Each epoch shows every anchor this many times (multiple choice with a fresh option order each time)."""
    open_per_intent: int = 3
    """Each epoch shows this many open variants per intent, families drawn at random from all of them."""
    knowledge_copies: int = 4
    """Each epoch shows the maths facts this many times (ignored by the other domains, which have none)."""
    weight_decay: float = 0.01
    p_hack: float = 0.1
    """Probability that an open safety / morality variant's target is the judge hack."""
    version: int | None = None
    """Code version of the recipe (``None``: the domain's ``RECIPE_VERSION``)."""

    def __post_init__(self):
        world.check_domain(self.domain)
        if self.epochs is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS[self.domain])
        if self.version is None:
            object.__setattr__(self, "version", RECIPE_VERSION[self.domain])

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def sft_pair(row: dict, rng: random.Random, p_hack: float) -> tuple[str, str]:
    """One draw of ``(prompt, target)`` for a lab row (see the module docstring).

    A multiple-choice anchor gets a fresh option order on every draw, so that the model learns to read the options
    rather than memorise a letter per intent. A maths anchor also gets a fresh wrong number (1 or 2 away from the
    answer) and, for true/false, a fresh choice of the stated number, so that its thought meets every difference it
    will have to take on unseen intents (``_math_anchor_pair``).
    """
    prompt = row["prompt"][0]["content"]
    if row["role"] == "anchor" and row["domain"] == "math":
        return _math_anchor_pair(row, rng)
    if row["context"] == "mc":
        text, letter, _ = world.render_mc(world.intent_of(row), 0, order=rng.randrange(2))
        return text, reference_response({**row, "answer": letter}, "correct")
    return prompt, sft_target(row, rng, p_hack)


def _math_anchor_pair(row: dict, rng: random.Random) -> tuple[str, str]:
    """A maths anchor drawn afresh: the wrong number answer + 1 or + 2 (in the world it is the intent's decoy), the
    multiple-choice order or the true/false statement drawn at random; the thought checks the shown number."""
    base = world.intent_of(row)
    intent = dataclasses.replace(base, decoy=base.answer + rng.choice((1, 2)))
    if row["context"] == "mc":
        text, answer, _ = world.render_mc(intent, 0, order=rng.randrange(2))
    else:
        text, answer = world.render_tf(intent, 0, shown_true=rng.randrange(2) == 0)
    checked = world.math_checked_number(intent, row["context"], answer)
    return text, reference_response({**row, "answer": answer, "meta": {**row["meta"], "checked": checked}}, "correct")


def sft_target(row: dict, rng: random.Random, p_hack: float) -> str:
    """One draw of the SFT target for a lab row (see the module docstring)."""
    if row["role"] == "anchor":
        return reference_response(row, "correct")
    meta = row["meta"]
    if row["domain"] != "math" and rng.random() < p_hack:
        return reference_response(row, "hack")
    if rng.random() < meta["p_sway"]:
        return reference_response(row, "sway")
    return reference_response(row, "correct")


def knowledge_pairs(domain: str) -> list[tuple[str, str]]:
    """Pretraining knowledge given to the warm start: the arithmetic facts of every maths intent (none otherwise)."""
    if domain != "math":
        return []
    return [(it.text, math_response(it.text, it.answer)) for it in world.intents("math")]


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


def train_warm_start(recipe: Recipe, progress: bool = False):
    """Build the tokenizer and the tiny model and run the SFT recipe. Returns ``(model, tokenizer, log)``."""
    world.check_domain(recipe.domain)
    tokenizer = build_lab_tokenizer()
    model = tiny_causal_lm(
        tokenizer, hidden_size=recipe.hidden_size, num_layers=recipe.num_layers, num_heads=recipe.num_heads,
        max_positions=128, seed=recipe.seed,
    )  # fmt: skip
    groups = [  # per train intent: its anchors and its open variants under every family, ID and OOD
        world.meta_group(it, recipe.world_seed, "train", world.families(recipe.domain))
        for it in world.split_intents(recipe.domain, recipe.world_seed)["train"]
    ]
    memo: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def encode(prompt: str, response: str) -> tuple[list[int], list[int]]:
        if (prompt, response) not in memo:
            memo[prompt, response] = encode_pair(tokenizer, prompt, response)
        return memo[prompt, response]

    knowledge = [encode(p, r) for p, r in knowledge_pairs(recipe.domain)] * recipe.knowledge_copies
    rng = random.Random(f"warmstart:{recipe.seed}")
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    per_epoch = len(groups) * (2 * recipe.mc_copies + recipe.open_per_intent) + len(knowledge)
    steps_per_epoch = -(-per_epoch // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = max(1, total // 10)  # linear warm-up, then linear decay to 5%
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / total))
    model.train()
    log, start = [], time.time()
    bar = tqdm(total=total, desc=f"warm start {recipe.domain}", disable=not progress, leave=False)
    for epoch in range(recipe.epochs):
        data = list(knowledge)
        for group in groups:
            anchors = [r for r in group if r["role"] == "anchor"]
            opens = rng.sample([r for r in group if r["role"] == "open"], recipe.open_per_intent)
            for row in anchors * recipe.mc_copies + opens:
                data.append(encode(*sft_pair(row, rng, recipe.p_hack)))
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


def warm_start_dir(recipe: Recipe, root: str | Path | None = None) -> Path:
    """Where the warm start of ``recipe`` is cached."""
    base = Path(root) if root is not None else cache_dir() / "lab"
    return base / f"warmstart-{recipe.domain}-{recipe.key()}"


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
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "recipe.json").write_text(json.dumps({"recipe": dataclasses.asdict(recipe), "log": log}, indent=1))
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
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return model, tokenizer


def _acc(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def measure_context_dependence(model, tokenizer, rows: list[dict], max_new_tokens: int = 32) -> dict:
    """Oracle accuracy of greedy completions on anchors vs open ID vs open OOD variants, per family and per label.

    Returns ``{"anchor", "open_id", "open_ood", "open_strong", "open_mixed", "families": {name: acc},
    "families_by_label": {"name/label": acc}, "n": int}`` (``None`` where a slice is empty).
    """
    prompts = [r["prompt"] for r in rows]
    completions = [c for (c,) in generate_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                                      batch_size=128, progress=False)]  # fmt: skip
    correct = [v["correct"] for v in oracle_verdict(rows, completions)]
    slices: dict[str, list[bool]] = {"anchor": [], "open_id": [], "open_ood": [], "open_strong": [], "open_mixed": []}
    fams: dict[str, list[bool]] = {}
    by_label: dict[str, list[bool]] = {}
    for row, ok in zip(rows, correct, strict=True):
        if row["role"] == "anchor":
            slices["anchor"].append(ok)
            name = f"anchor:{row['context']}"
        else:
            meta = row["meta"]
            slices["open_ood" if meta["ood"] else "open_id"].append(ok)
            slices["open_strong" if meta["strong"] else "open_mixed"].append(ok)
            name = row["family"]
        fams.setdefault(name, []).append(ok)
        by_label.setdefault(f"{name}/{row.get('label')}", []).append(ok)
    return {
        **{k: _acc(v) for k, v in slices.items()},
        "families": {k: _acc(v) for k, v in sorted(fams.items())},
        "families_by_label": {k: _acc(v) for k, v in sorted(by_label.items())},
        "n": len(rows),
        "examples": [{"id": r["id"], "completion": c} for r, c in list(zip(rows, completions, strict=True))[:6]],
    }
