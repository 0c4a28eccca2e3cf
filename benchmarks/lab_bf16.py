"""bf16 autocast against fp32 for the lab model's loss forward and backward, on one CPU thread (docs/performance.md).

The lab's policy shape (``lab/warmstart.py``'s ``Recipe``: 2 layers, hidden 96, 4 heads, the safety world's
vocabulary), a batch the size of a lab step (64 rows of 54 positions, about what a loss batch holds with its
padding), log-softmax over the last 32 positions, backward. Weights are random: the time does not depend on them.
The two modes alternate, ``--rounds`` times ``--reps`` steps each; the medians are printed with their ratio.
``--flops`` also profiles the fp32 step (``torch.profiler``, ``with_flops=True``) and prints the matrix products'
share of its time and their rate: how close the step is to this core's arithmetic.

    python benchmarks/lab_bf16.py --rounds 5
    python benchmarks/lab_bf16.py --rounds 1 --flops
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

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -32:]
            loss = torch.log_softmax(logits.float(), -1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    times = {False: [], True: []}
    for bf16 in times:
        step(bf16)  # warm-up
    for _ in range(args.rounds):
        for bf16 in times:
            start = time.process_time()
            for _ in range(args.reps):
                step(bf16)
            times[bf16].append((time.process_time() - start) / args.reps)
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"fp32 {1000 * fp32:.1f} ms, bf16 autocast {1000 * bf16:.1f} ms a step (medians), ratio {bf16 / fp32:.2f}")
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
