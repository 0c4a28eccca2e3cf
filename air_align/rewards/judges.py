"""LLM judges that answer yes/no questions, scored by the log-probabilities of the answer tokens (paper §4: "Safety
calculates log-odds over 10 facets; Morality uses YES/NO token log-probs").

A judge is anything with a ``name`` and ``log_odds(prompts: list[str]) -> list[float]``, where each prompt is the
judge's *user message* and the result is ``log p(yes) − log p(no)`` for the judge's first answer token:

- :class:`LogprobJudge`: any Hugging Face causal LM in process, under its chat template, batched with left padding.
- :class:`air_align.rewards.server_judge.ServerJudge`: the same over an OpenAI-compatible server (vLLM at scale).
- :func:`frozen_judge_from`: the paper's training judge, a frozen copy of the initial policy (App. C.2.1, as the
  unofficial reproduction reports it); ``build_trainer`` builds it on the trainer's device instead
  (:mod:`air_align.rewards.training_judge`).

Probabilities are summed over the spelling variants of each answer ("YES", "Yes", "yes", …), so that a judge that
prefers "Yes" to "YES" is not read as uncertain.

A judge may also have an ``identity``: everything its scores depend on, which keys the judge cache
(:func:`air_align.rewards.cache.judge_identity`); ``name`` is only a label for logs. A judge never returns a
non-finite log-odds: it raises instead, so that a broken score becomes neither a reward nor a cache entry.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
from typing import Protocol

import torch
from tqdm.auto import tqdm

YES_VARIANTS = ("YES", "Yes", "yes", " YES", " Yes", " yes")
NO_VARIANTS = ("NO", "No", "no", " NO", " No", " no")
TRUE_VARIANTS = ("True", "TRUE", "true", " True", " TRUE", " true")
FALSE_VARIANTS = ("False", "FALSE", "false", " False", " FALSE", " false")


class YesNoJudge(Protocol):
    """What the safety and morality judges need from a judge model."""

    name: str

    def log_odds(self, prompts: list[str]) -> list[float]: ...


def weights_fingerprint(model, chunk: int = 1 << 22) -> str:
    """A short hash of a model's parameters (name, shape, dtype and the float64 sums of x and x² of each): two
    models with different weights get different fingerprints, without hashing every byte. Sums run over chunks of
    ``chunk`` elements, so the float64 copy stays small whatever the tensor (a 14B model's embedding included).

    >>> model = torch.nn.Linear(2, 1)
    >>> before = weights_fingerprint(model)
    >>> with torch.no_grad():
    ...     _ = model.bias.add_(1.0)
    >>> weights_fingerprint(model) != before, len(before)
    (True, 16)
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            total = torch.zeros(2, dtype=torch.float64, device=flat.device)
            for start in range(0, flat.numel(), chunk):
                part = flat[start : start + chunk].double()
                total += torch.stack([part.sum(), part.square().sum()])
            digest.update(f"{name}|{tuple(param.shape)}|{param.dtype}|{total.tolist()!r};".encode())
    return digest.hexdigest()[:16]


def answer_token_ids(tokenizer, yes_tokens, no_tokens) -> tuple[list[int], list[int]]:
    """Token ids that stand for "yes" and for "no" as the judge's first answer token.

    Variants that encode to a single token are used. A side none of whose variants is a single token (a character
    tokenizer: "YES" → "Y", "E", "S") falls back to each variant's first token. Ids on both sides (" YES" and " NO"
    both start with " " in a character tokenizer) are ambiguous and dropped.

    Raises:
        ValueError: when a side is left with no token.
    """

    def ids_for(variants) -> list[int]:
        encoded = [tokenizer.encode(v, add_special_tokens=False) for v in variants]
        single = [e[0] for e in encoded if len(e) == 1]
        chosen = single if single else [e[0] for e in encoded if e]
        return list(dict.fromkeys(chosen))

    yes_ids, no_ids = ids_for(yes_tokens), ids_for(no_tokens)
    shared = set(yes_ids) & set(no_ids)
    yes_ids = [i for i in yes_ids if i not in shared]
    no_ids = [i for i in no_ids if i not in shared]
    if not yes_ids or not no_ids:
        raise ValueError(
            f"no usable answer tokens: yes variants {yes_tokens!r} -> {yes_ids}, no variants {no_tokens!r} -> "
            f"{no_ids} (ids on both sides are dropped); pass yes_tokens/no_tokens this tokenizer encodes distinctly"
        )
    return yes_ids, no_ids


def accepts_logits_to_keep(model) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (every transformers 5 causal LM; a wrapper passing
    ``**kwargs`` on is taken to)."""
    parameters = inspect.signature(model.forward).parameters.values()
    return any(p.name == "logits_to_keep" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class LogprobJudge:
    """A Hugging Face causal LM as a yes/no judge: ``log p(yes) − log p(no)`` of its first answer token.

    Args:
        model: any ``AutoModelForCausalLM``; used as is (call :func:`frozen_judge_from` for a frozen copy).
        tokenizer: its tokenizer, with a chat template (the prompt is rendered as one user turn plus the
            generation prompt).
        yes_tokens, no_tokens: spelling variants of the two answers; probabilities are summed over each side.
        batch_size: prompts per forward pass.
        name: names the judge in caches and logs.
        system_prompt: an optional system message (else the template's default, if any).
        max_length: longer rendered prompts keep their last ``max_length`` tokens (the question and the generation
            prompt are at the end, so the middle of a long response is what is lost).
        progress: tqdm bar over batches (``None``: only when there are more than 4 batches).
    """

    def __init__(
        self,
        model,
        tokenizer,
        yes_tokens=YES_VARIANTS,
        no_tokens=NO_VARIANTS,
        batch_size: int = 8,
        name: str = "judge",
        system_prompt: str | None = None,
        max_length: int = 2048,
        progress: bool | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the judge tokenizer has no pad token; set tokenizer.pad_token (e.g. to eos_token)")
        self.model, self.tokenizer = model, tokenizer
        self.yes_ids, self.no_ids = answer_token_ids(tokenizer, yes_tokens, no_tokens)
        self.batch_size, self.name = batch_size, name
        self.system_prompt, self.max_length, self.progress = system_prompt, max_length, progress
        path = getattr(getattr(model, "config", None), "_name_or_path", "") or "<in memory>"
        parts = [path, weights_fingerprint(model), self.yes_ids, self.no_ids, system_prompt, max_length]
        self.identity = "hf:" + json.dumps(parts)
        """What the scores depend on, for the cache key: model path, a fingerprint of the weights (a frozen copy of
        a different policy under the same path differs), answer token ids, system prompt and truncation."""
        # the lm_head on the last position only: all of them would be B × T × V values (5 GB in bf16 for a 14B
        # judge, 8 prompts of 2048 tokens), which the GPU memory tables of docs/scaling.md do not have room for
        self._last_position_only = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}

    def render(self, prompt: str) -> str:
        """The judge's input text: ``prompt`` as the user turn, then the assistant's generation prompt."""
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def log_odds(self, prompts: list[str]) -> list[float]:
        """``log Σ_yes p − log Σ_no p`` at the first answer position, one float per prompt."""
        if isinstance(prompts, str):
            raise ValueError("log_odds takes a list of prompts, got a single string; wrap it in a list")
        encoded = [
            self.tokenizer.encode(self.render(p), add_special_tokens=False)[-self.max_length :] for p in prompts
        ]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        show = self.progress if self.progress is not None else len(batches) > 4
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out = [math.nan] * len(prompts)
        try:
            for batch in tqdm(batches, desc=f"judge {self.name}", disable=not show, leave=False):
                width = max(len(encoded[i]) for i in batch)
                pad = self.tokenizer.pad_token_id
                ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch])  # (B, T)
                mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding must not shift positions
                logits = self.model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    **self._last_position_only,
                ).logits[:, -1, :]  # (B, V)
                logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
                yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)  # (B,)
                no = torch.logsumexp(logp[:, self.no_ids], dim=-1)  # (B,)
                for i, value in zip(batch, (yes - no).tolist(), strict=True):
                    out[i] = value
        finally:
            self.model.train(was_training)
        bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
        if bad:
            raise ValueError(
                f"judge {self.name} gave non-finite log-odds ({out[bad[0]]}) for {len(bad)} of {len(out)} prompts "
                f"(first: #{bad[0]}); its logits are not finite: load the judge in float32 or bfloat16 instead of "
                "float16, or check its weights"
            )
        return out


def frozen_judge_from(model, tokenizer, name: str = "frozen-policy", **kwargs) -> LogprobJudge:
    """The paper's training judge: a frozen deep copy of the (initial) policy, in eval mode, without gradients
    (App. C.2.1, unofficial reproduction). Later updates to ``model`` do not reach the judge.
    """
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return LogprobJudge(frozen, tokenizer, name=name, **kwargs)
