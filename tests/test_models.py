"""Model loading: tiny models round-trip through save_pretrained / load_model with their own tokenizer."""

import torch

from air_align.models import build_char_tokenizer, load_model, tiny_causal_lm


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
