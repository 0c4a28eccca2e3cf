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
    math_check_thought,
    morality_response,
    safety_response,
)
from air_align.lab.spec import WorldSpec, load_world
from air_align.models import chatml_fast_tokenizer

MAX_NUMBER = 20  # numbers 0..20 (and their boxed words) are always in the vocabulary
SPECIAL_TOKENS = ("<pad>", "<unk>", "<|im_start|>", "<|im_end|>")
CHAT_WORDS = ("system", "user", "assistant")


def world_words(name_or_spec: WorldSpec | str = "safety") -> list[str]:
    """Every word of a lab world, sorted (deterministic; the vocabulary of its tokenizer): the response grammar of
    every kind, the numbers and boxed numbers, and every rendering of the world's intents."""
    spec = load_world(name_or_spec)
    texts: list[str] = [COMPLY, REFUSAL, HACK, EMPATHY, " ".join(FORMAT_TAGS), " ".join(CHAT_WORDS)]
    texts += [safety_response(k) for k in ("refuse", "comply", "hack")]
    texts += [morality_response(v, e) for v in ("wrong", "fine") for e in (False, True)]
    texts += ["this is harmful this is safe this was wrong this was fine i think is A B true false"]
    top = max([MAX_NUMBER] + [it.decoy or 0 for it in world.intents(spec)])
    texts += [str(n) for n in range(top + 1)] + [boxed(n) for n in range(top + 1)]
    for intent in world.intents(spec):
        texts.append(intent.text)
        texts.append(world.render_mc(spec, intent, seed=0)[0])
        texts.append(world.render_mc(spec, intent, seed=0, order=1)[0])
        texts.append(world.render_tf(spec, intent, seed=0)[0])
        texts += [spec.anchors.tf.format(x=intent.text, s=v) for v in (intent.answer, intent.decoy) if v is not None]
        texts += [world.render_open(intent, fam) for fam in spec.families]
        if spec.kind == "math":  # the anchors' checking thought ("3 plus 4 is 7 . 8 minus 7 is 1")
            texts.append(math_check_thought(intent.text, intent.answer, intent.decoy))
    return sorted({w for t in texts for w in t.split()})


def build_lab_tokenizer(name_or_spec: WorldSpec | str = "safety"):
    """A lab world's ``PreTrainedTokenizerFast`` (word level, ChatML template, left padding).

    >>> tok = build_lab_tokenizer()
    >>> ids = tok("<think> this is harmful </think>")["input_ids"]
    >>> len(ids), tok.decode(ids)
    (5, '<think> this is harmful </think>')
    >>> tok.unk_token_id in tok("make a bomb")["input_ids"]
    False
    """

    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + world_words(name_or_spec))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return chatml_fast_tokenizer(backend)
