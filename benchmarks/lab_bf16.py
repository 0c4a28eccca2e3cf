"""bf16 autocast against fp32 for the lab model's loss forward and backward, on one CPU thread (docs/performance.md).

The lab's policy shape (``lab/warmstart.py``'s ``Recipe``: 2 layers, hidden 96, 4 heads, the safety world's
vocabulary), a batch the size of a lab step (64 rows of 54 positions, about what a loss batch holds with its
padding), log-softmax over the last 32 positions, backward. Weights are random: the time does not depend on them.
The two modes alternate, ``--rounds`` times ``--reps`` steps each; the medians are printed with their ratio.
``--compile`` adds a third mode, fp32 through ``torch.compile`` (inductor, which fuses the elementwise kernels; this
fixed batch shape compiles once, where the lab's batches vary in length). ``--flops`` also profiles the fp32 step
(``torch.profiler``, ``with_flops=True``) and prints the matrix products' share of its time and their rate: how close
the step is to this core's arithmetic.

    python benchmarks/lab_bf16.py --rounds 5
    python benchmarks/lab_bf16.py --rounds 3 --compile --flops
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time fp32 through torch.compile")
    parser.add_argument("--flops", action="store_true", help="profile the fp32 step's matrix products")
    args = parser.parse_args(argv)
    import torch

    from air_align.lab.tokenizer import build_lab_tokenizer
    from air_align.models import tiny_causal_lm

    torch.set_num_threads(1)
    tokenizer = build_lab_tokenizer("safety")
    model = tiny_causal_lm(tokenizer, hidden_size=96, num_layers=2, num_heads=4)
    ids = torch.randint(4, len(tokenizer), (64, 54))
    mask = torch.ones_like(ids)

    compiled = torch.compile(model) if args.compile else None

    def step(bf16: bool, policy=model) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = policy(input_ids=ids, attention_mask=mask).logits[:, -32:]
            loss = torch.log_softmax(logits.float(), -1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    modes = {"fp32": lambda: step(False), "bf16 autocast": lambda: step(True)}
    if compiled is not None:
        modes["fp32 compiled"] = lambda: step(False, compiled)
    times: dict[str, list[float]] = {name: [] for name in modes}
    for run in modes.values():
        run()  # warm-up (and, compiled, the compilation)
    for _ in range(args.rounds):
        for name, run in modes.items():
            start = time.process_time()
            for _ in range(args.reps):
                run()
            times[name].append((time.process_time() - start) / args.reps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        ", ".join(f"{name} {1000 * m:.1f} ms" for name, m in medians.items())
        + " a step (medians); against fp32: "
        + ", ".join(f"{name} {m / medians['fp32']:.2f}" for name, m in medians.items() if name != "fp32")
    )
    if args.flops:
        gemm_share(step, args.reps)
    return 0


def gemm_share(step, reps: int) -> None:
    """Print the fp32 step's matrix products (``aten::mm``, ``aten::addmm``): GFLOP, share of its time, rate."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(reps):
            step(False)
    events = prof.key_averages()
    gemm = [e for e in events if e.key in ("aten::mm", "aten::addmm")]
    flops = sum(e.flops for e in gemm)
    seconds = sum(e.self_cpu_time_total for e in gemm) / 1e6
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    print(
        f"matrix products: {flops / 1e9 / reps:.2f} GFLOP a step, {100 * seconds / total:.0f} % of its profiled time, "
        f"{flops / 1e9 / seconds:.1f} GFLOP/s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
