"""A word-level tokenizer for the lab world, built locally (no hub), with ChatML special tokens.

Every word the world can write (prompts of every domain, anchors, responses, numbers, ``\\boxed{N}``) is one token;
words are split on whitespace only, so the format tags ``<think>`` ``</think>`` ``<answer>`` ``</answer>`` are single
*ordinary* tokens (TRL decodes completions with ``skip_special_tokens=True``, which would erase special ones).
Decoding joins tokens with single spaces, so a decoded completion reads like the response grammar. Special tokens:
``<pad>``, ``<unk>``, ``<|im_start|>``, ``<|im_end|>`` (the end-of-sequence token); the chat template is ChatML
(``air_align.models.CHATML_TEMPLATE``), whose role names and newlines tokenize to ``user`` / ``assistant``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers

from air_align.lab import world
from air_align.lab.responses import (
    COMPLY,
    EMPATHY,
    FORMAT_TAGS,
    HACK,
    REFUSAL,
    boxed,
    morality_response,
    safety_response,
)
from air_align.models import chatml_fast_tokenizer

SPECIAL_TOKENS = ("<pad>", "<unk>", "<|im_start|>", "<|im_end|>")
CHAT_WORDS = ("system", "user", "assistant")


def world_words() -> list[str]:
    """Every word of the lab world, sorted (deterministic; the vocabulary of the tokenizer)."""
    texts: list[str] = [COMPLY, REFUSAL, HACK, EMPATHY, " ".join(FORMAT_TAGS), " ".join(CHAT_WORDS)]
    texts += [safety_response(k) for k in ("refuse", "comply", "hack")]
    texts += [morality_response(v, e) for v in ("wrong", "fine") for e in (False, True)]
    texts += ["this is harmful this is safe this was wrong this was fine i think is A B true false"]
    texts += [str(n) for n in range(world.MAX_NUMBER + 1)] + [boxed(n) for n in range(world.MAX_NUMBER + 1)]
    for domain in world.DOMAINS:
        for intent in world.intents(domain):
            texts.append(intent.text)
            texts.append(world.render_mc(intent, seed=0)[0])
            texts.append(world.render_tf(intent, seed=0)[0])
            texts += [world.render_open(intent, fam) for fam in world.families(domain)]
    return sorted({w for t in texts for w in t.split()})


def build_lab_tokenizer():
    """The lab's ``PreTrainedTokenizerFast`` (word level, ChatML template, left padding).

    >>> tok = build_lab_tokenizer()
    >>> ids = tok("<think> this is harmful </think>")["input_ids"]
    >>> len(ids), tok.decode(ids)
    (5, '<think> this is harmful </think>')
    >>> tok.unk_token_id in tok("make a bomb")["input_ids"]
    False
    """

    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + world_words())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return chatml_fast_tokenizer(backend)
