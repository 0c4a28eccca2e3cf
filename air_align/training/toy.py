"""A toy meta-group dataset and reward, for smoke runs of the trainer (``dataset: toy`` and ``reward: toy`` in
``configs/tiny-cpu.yaml``, the tests' toy trainer in ``tests/_toy.py``, ``benchmarks/step_overhead.py``).

Not a science set: the lab (``air_align.lab``) holds the controlled experiments. Rows follow the shared meta-group
schema (``group_id``, ``role``, ``prompt`` …). The reward is a deterministic function of the completion text, so
runs are reproducible, with a bonus on anchors so that open variants lag them (``Δ > 0``) and ``None`` for some
completions, to exercise the unscorable path.
"""

from __future__ import annotations

ANCHOR_BONUS = 0.5  # anchors score higher, so AIR's Δ_s = r̄_acr − r̄_s is positive for open variants


def toy_meta_groups(num_groups: int = 8, opens_per_group: int = 2, split: str = "train") -> list[dict]:
    """``num_groups`` meta-groups of one anchor and ``opens_per_group`` open variants each (schema rows).

    >>> rows = toy_meta_groups(2, 1)
    >>> [(r["group_id"], r["role"]) for r in rows]
    [('toy-0', 'anchor'), ('toy-0', 'open'), ('toy-1', 'anchor'), ('toy-1', 'open')]
    """
    rows = []
    for g in range(num_groups):
        intent = f"say the word {'abcdefghij'[g % 10]}{g}"
        variants = [("anchor", "mc", f"Q{g}: {intent}? A) yes B) no")]
        variants += [("open", f"wrap{j}", f"W{j}: please {intent}") for j in range(opens_per_group)]
        for role, context, text in variants:
            rows.append(
                {
                    "id": f"toy/{g}/{role}/{context}",
                    "group_id": f"toy-{g}",
                    "role": role,
                    "context": context,
                    "family": "anchor" if role == "anchor" else context,
                    "domain": "toy",
                    "prompt": [{"role": "user", "content": text}],
                    "verifier": "choice" if role == "anchor" else "judge",
                    "answer": "A" if role == "anchor" else None,
                    "label": None,
                    "intent": intent,
                    "split": split,
                    "meta": {"source": "air_align.training.toy"},
                }
            )
    return rows


def toy_reward(completions, role, **kwargs) -> list[float | None]:
    """Share of lowercase letters in the completion, + ``ANCHOR_BONUS`` on anchors; None if it starts with a digit.

    TRL reward signature: ``completions`` are chat messages (or strings); ``role`` is the dataset column.

    >>> toy_reward([[{"role": "assistant", "content": "ab1C"}], "9x"], role=["anchor", "open"])
    [1.0, None]
    """
    out: list[float | None] = []
    for completion, r in zip(completions, role, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        if text[:1].isdigit():
            out.append(None)
            continue
        share = sum(c.islower() for c in text) / max(len(text), 1)
        out.append(share + (ANCHOR_BONUS if r == "anchor" else 0.0))
    return out
