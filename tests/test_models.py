"""Model loading: tiny models round-trip through save_pretrained / load_model with their own tokenizer."""

from pathlib import Path

import pytest
import torch
from _messages import assert_error, assert_facts

from air_align.models import build_char_tokenizer, load_model, tiny_causal_lm

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_tiny_model_round_trip_keeps_its_tokenizer(tmp_path):
    # transformers 5 would load a qwen2 directory's tokenizer as Qwen2Tokenizer (BPE) and re-tokenise silently.
    tokenizer = build_char_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=32, seed=1)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded_model, loaded_tok = load_model(str(tmp_path))
    text = "<|im_start|>user\nhello world<|im_end|>\n"
    assert loaded_tok(text).input_ids == tokenizer(text).input_ids
    assert loaded_tok.decode(loaded_tok(text).input_ids) == text
    assert loaded_tok.padding_side == "left" and loaded_tok.pad_token == "<pad>"
    ids = torch.tensor([tokenizer(text).input_ids])
    torch.testing.assert_close(loaded_model(ids).logits, model(ids).logits)


def test_char_tokenizer_chat_template():
    tok = build_char_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    # one token per character, special tokens atomic: 1 + 4 ("user") + 1 ("\n") + 4 ("2+2?") + 1 + 1 + 1 + 9 + 1
    assert len(tok(text).input_ids) == 23


class RunsACommand:
    """What a hostile pickle holds: unpickling it calls ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_checkpoint_that_holds_more_than_weights_is_refused_with_the_reason(tmp_path, capsys):
    from air_align.cli import INPUT_ERROR, main

    model, tokenizer = load_model("tiny")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    ran = tmp_path / "ran"
    torch.save({**model.state_dict(), "payload": RunsACommand(ran)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError) as err:
        load_model(str(folder))
    # the file, what it refers to, what air-align loads instead and why, and the fix
    facts = (f"{folder / 'pytorch_model.bin'}: ", "pickle checkpoint", "posix.system", "safetensors", "arbitrary code")
    assert_facts(str(err.value), *facts, "save it with save_pretrained()")
    assert not ran.exists()
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--config",
                str(CONFIGS / "tiny-cpu.yaml"),
                f"model={folder}",
                f"output_dir={tmp_path / 'run'}",
                "max_steps=1",
            ]
        )
        == INPUT_ERROR
    )
    err = capsys.readouterr().err
    assert_error(err, *facts, "save it with save_pretrained()")
    assert "weights_only" not in err
    assert not ran.exists()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # tensors only: loads
    loaded, _ = load_model(str(folder))
    assert all(a.equal(b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
