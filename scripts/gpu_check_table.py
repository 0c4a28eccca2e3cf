"""The GPU acceptance check's Markdown table (``scripts/gpu_check.py`` writes it as ``gpu_check.md``)."""

from __future__ import annotations


def _num(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _head(name: str, sec: dict) -> list[str]:
    line = f"### {name}: {sec['status']} ({sec.get('seconds', '?')} s)"
    return [line, ""] + ([f"Reason: {sec['reason']}", ""] if sec.get("reason") else [])


def markdown(report: dict) -> str:
    env, sizes, secs = report["environment"], report["sizes"], report["sections"]
    lines = ["# GPU acceptance check", ""]
    lines.append(", ".join(f"{k} {v}" for k, v in env.items()))
    lines.append(f"Model: {sizes['model']}; wall time {report.get('wall_s', '?')} s.")
    lines.append("")

    sec = secs["identity"]
    lines += _head("One-step identity (∇ air = ∇ none + independent aux ∇, λ = 0.5)", sec)
    if "rows" in sec:
        lines += [
            "| precision | completions | max abs aux ∇ | aux ∇ / GRPO ∇ | max abs error | relative error "
            "| tolerance | pass |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sec["rows"]:
            lines.append(
                f"| {r['precision']} | {r['completions']} | {_num(r['max_abs_aux_grad'])} | "
                f"{_num(r['aux_over_grpo_grad'])} | {_num(r['max_abs_error'])} | {_num(r['relative_error'])} | "
                f"{_num(r['tolerance'])} | {r['pass']} |"
            )
        lines.append("")

    sec = secs["overhead"]
    lines += _head("Step time and peak memory, fixed-length completions", sec)
    if "rows" in sec:
        lines.append(
            f"Batch {sec['batch']} completions of exactly {sec['completion_tokens']} tokens (EOS suppressed), "
            "checkpointing off. Median step: TRL's step_time (generation included) over every run's steps but its "
            "first; / none: the median over rounds of the ratio of run medians within a round; peak memory above the "
            "weights and buffers held before training."
        )
        lines += [
            "",
            "| invariance | runs | steps measured | median step (s) | / none | peak (MiB) | / none "
            "| logged lengths | aux loss ≠ 0 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sec["rows"]:
            lines.append(
                f"| {r['invariance']} | {r['runs']} | {r['steps_measured']} | {_num(r['median_step_s'], '.4f')} | "
                f"{_num(r['time_ratio'], '.3f')} | {_num(r['peak_mib'], '.1f')} | {_num(r['memory_ratio'], '.3f')} | "
                f"{r['mean_lengths']} | {r['aux_loss_nonzero']} |"
            )
        note = next((r["memory_note"] for r in sec["rows"] if r["memory_note"]), "")
        lines += [""] + ([f"Memory: {note}.", ""] if note else [])

    sec = secs["checkpointing"]
    lines += _head("Gradient checkpointing on vs off (invariance=air)", sec)
    if "rows" in sec:
        lines += [
            "| requested | model flag after build | after train | peak (MiB) | median step (s) |",
            "|---|---|---|---|---|",
        ]
        for r in sec["rows"]:
            lines.append(
                f"| {r['checkpointing']} | {r['model_flag_after_build']} | {r['model_flag_after_train']} | "
                f"{_num(r['peak_mib'], '.1f')} | {_num(r['median_step_s'], '.4f')} |"
            )
        lines += ["", f"Peak on / off: {_num(sec.get('memory_on_over_off'), '.3f')}.", ""]

    sec = secs["judge"]
    lines += _head("Composite reward's frozen-policy judge", sec)
    if "policy" in sec:

        def at(where):
            return "—" if where is None else f"{where['device']} ({where['dtype']}, training={where['training']})"

        lines.append(
            f"Policy on {sec['policy']['device']} ({sec['policy']['dtype']}); judge before its first call on "
            f"{at(sec['judge_before_call'])}, after it on {at(sec['judge_after_call'])}; one reward call on 9 "
            f"completions ({sec['judged_rows']} judged): {_num(sec['reward_call_s'], '.3f')} s."
        )
        lines.append("")

    sec = secs["deepspeed"]
    lines += _head("DeepSpeed ZeRO-2 and ZeRO-3, one process", sec)
    if "rows" in sec:
        lines += [
            "| stage | status | steps | losses | embedding max change | peak (MiB) | train (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sec["rows"]:
            if r["status"] in ("ok", "fail"):
                losses = ", ".join(_num(x, ".4g") for x in r["losses"])
                lines.append(
                    f"| {r['stage']} | {r['status']} | {r['steps']} | {losses} | {_num(r['embedding_max_change'])} | "
                    f"{_num(r['peak_mib'], '.1f')} | {_num(r['train_s'], '.1f')} |"
                )
            else:
                reason = r.get("reason", "").replace("\n", " ")[-300:]
                lines.append(f"| {r['stage']} | {r['status']} | — | {reason} | — | — | — |")
        lines.append("")
    return "\n".join(lines) + "\n"
