"""Paired bootstrap CIs of a method difference: hand cases, a plain-loop reference on the same draws, errors."""

import numpy as np
import pytest
from _messages import raises_with

from air_align.evaluation.compare import draw_indices, group_order, paired_bootstrap, paired_differences
from air_align.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    balanced_group_accuracy,
    group_accuracy,
)

METRIC_FUNCTIONS = {
    "acc": accuracy,
    "acc_group": group_accuracy,
    "balanced_acc": balanced_accuracy,
    "balanced_acc_group": balanced_group_accuracy,
}


def group(gid, label, outcomes, split="test_id"):
    """One meta-group: an anchor then open variants, ``outcomes`` their correctness (None: unscored)."""
    roles = ["anchor"] + ["open"] * (len(outcomes) - 1)
    return [
        {
            "id": f"{gid}/{k}",
            "group_id": gid,
            "role": role,
            "domain": "safety",
            "label": label,
            "correct": c,
            "split": split,
        }
        for k, (role, c) in enumerate(zip(roles, outcomes, strict=True))
    ]


def constant_run(n_groups, correct):
    return [r for g in range(n_groups) for r in group(f"g{g}", g % 2, [correct] * 3)]


def test_always_right_against_always_wrong_is_exactly_one():
    runs = {("A", s): constant_run(8, True) for s in range(3)} | {("B", s): constant_run(8, False) for s in range(3)}
    out = paired_differences(runs, "A", "B", n_boot=200)
    for metric in ("acc", "acc_group", "balanced_acc", "balanced_acc_group"):
        assert out[metric]["diff"] == 1.0 and out[metric]["ci"] == [1.0, 1.0], metric
        assert out[metric]["n_valid"] == 200 and out[metric]["n_seeds"] == 3 and out[metric]["n_groups"] == 8


def test_identical_outcomes_give_exactly_zero_and_swapped_seeds_contain_zero():
    rng = np.random.default_rng(1)
    outcomes = {s: [list(rng.random(4) < 0.7) for _ in range(12)] for s in range(3)}

    def run(s):
        return [r for g, o in enumerate(outcomes[s]) for r in group(f"g{g}", g % 2, o)]

    same = {(m, s): run(s) for m in ("A", "B") for s in range(3)}
    for res in paired_differences(same, "A", "B", n_boot=300).values():
        assert res["diff"] == 0.0 and res["ci"] == [0.0, 0.0]
    # A = B in distribution but not outcome by outcome: B's seeds are A's, rotated; the point estimate is 0 and the
    # interval must contain it
    rotated = {("A", s): run(s) for s in range(3)} | {("B", s): run((s + 1) % 3) for s in range(3)}
    for res in paired_differences(rotated, "A", "B", n_boot=300).values():
        assert res["diff"] == pytest.approx(0.0, abs=1e-12)
        assert res["ci"][0] < 0.0 < res["ci"][1]


def test_hand_computed_point_estimate_and_per_seed_values():
    # 4 groups (2 per label). A seed 0: all right (Acc_group 1); A seed 1: g0 (label 0) wrong (3/4);
    # B seed 0: g0, g1 wrong (2/4); B seed 1: g1 wrong (3/4).
    # mean A = (1 + 0.75) / 2 = 0.875; mean B = (0.5 + 0.75) / 2 = 0.625; D = 0.25
    # balanced: A seed 0 min(1, 1) = 1, A seed 1 min(1/2, 1) = 0.5; B seed 0 min(1/2, 1/2) = 0.5, B seed 1 0.5
    # -> A 0.75, B 0.5, D = 0.25
    def run(wrong):
        return [r for g in range(4) for r in group(f"g{g}", g % 2, [True, g not in wrong])]

    runs = {("A", 0): run(()), ("A", 1): run((0,)), ("B", 0): run((0, 1)), ("B", 1): run((1,))}
    out = paired_differences(runs, "A", "B", n_boot=50)
    assert out["acc_group"]["a"] == 0.875 and out["acc_group"]["b"] == 0.625 and out["acc_group"]["diff"] == 0.25
    assert out["acc_group"]["per_seed"] == {"0": {"a": 1.0, "b": 0.5}, "1": {"a": 0.75, "b": 0.75}}
    assert out["balanced_acc_group"]["a"] == 0.75 and out["balanced_acc_group"]["b"] == 0.5
    assert out["acc"]["diff"] == pytest.approx((8 + 7) / 16 - (6 + 7) / 16)  # prompts right: A 8, 7; B 6, 7
    assert out["acc_group"]["label_classes"] == ["safety/0", "safety/1"]


def random_runs(n_groups, seeds, rng, p=None, unscored=0.0):
    """Random groups of 2-5 prompts, labels 0/1/1 (unequal classes); per (method, seed) random outcomes."""
    p = p or {"A": 0.8, "B": 0.7}
    sizes = rng.integers(2, 6, size=n_groups)
    runs = {}
    for m, prob in p.items():
        for s in seeds:
            records = []
            for g, size in enumerate(sizes):
                outs = [bool(x) for x in rng.random(size) < prob]
                outs = [None if rng.random() < unscored else o for o in outs]
                records += group(f"g{g}", int(g % 3 != 0), outs)
            runs[(m, s)] = records
    return runs


def loop_bootstrap(runs, a, b, metric, n_boot, seed, alpha=0.05):
    """The plain version: rebuild each draw's records and call the record-level metric functions."""
    seeds = sorted({s for (m, s) in runs if m == a})
    gids, _, sizes = group_order(runs[(a, seeds[0])])
    seed_idx, group_idx = draw_indices(len(seeds), sizes, n_boot, np.random.default_rng(seed))
    fn = METRIC_FUNCTIONS[metric]
    by_group = {key: {} for key in runs}
    for key, records in runs.items():
        for r in records:
            by_group[key].setdefault(r["group_id"], []).append(r)
    diffs = []
    for bi in range(n_boot):
        means = []
        for m in (a, b):
            values = []
            for si in seed_idx[bi]:
                drawn = []
                for k, gi in enumerate(group_idx[bi]):  # a group drawn twice counts as two groups
                    drawn += [{**r, "group_id": f"{gids[gi]}#{k}"} for r in by_group[(m, seeds[si])][gids[gi]]]
                values.append(fn(drawn))
            means.append(sum(values) / len(values))
        diffs.append(means[0] - means[1])
    return [float(v) for v in np.percentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])]


@pytest.mark.parametrize("metric", ["acc", "acc_group", "balanced_acc", "balanced_acc_group"])
def test_vectorised_equals_plain_loop_on_random_data(metric):
    runs = random_runs(9, [0, 1, 2], np.random.default_rng(7), unscored=0.05)
    fast = paired_bootstrap(runs, "A", "B", metric, n_boot=60, seed=5)
    assert fast["n_valid"] == 60
    np.testing.assert_allclose(fast["ci"], loop_bootstrap(runs, "A", "B", metric, 60, seed=5), rtol=0, atol=1e-12)
    # the point estimate is the plain mean over seeds of the record-level metric
    plain = [METRIC_FUNCTIONS[metric](runs[(m, s)]) for m in ("A", "B") for s in range(3)]
    assert fast["diff"] == pytest.approx(sum(plain[:3]) / 3 - sum(plain[3:]) / 3, abs=1e-12)


def test_deterministic_for_a_seed_and_narrower_with_more_groups():
    runs = random_runs(20, [0, 1, 2, 3, 4], np.random.default_rng(0), p={"A": 0.9, "B": 0.8})
    first = paired_bootstrap(runs, "A", "B", n_boot=500, seed=3)
    assert first == paired_bootstrap(runs, "A", "B", n_boot=500, seed=3)
    assert first["ci"] != paired_bootstrap(runs, "A", "B", n_boot=500, seed=4)["ci"]
    many = random_runs(320, [0, 1, 2, 3, 4], np.random.default_rng(0), p={"A": 0.9, "B": 0.8})
    wide = first["ci"][1] - first["ci"][0]
    narrow = paired_bootstrap(many, "A", "B", n_boot=500, seed=3)["ci"]
    # 16x the groups: the group-level part of the spread shrinks ~4x
    assert narrow[1] - narrow[0] < 0.5 * wide
    assert narrow[0] <= paired_bootstrap(many, "A", "B", n_boot=500, seed=3)["diff"] <= narrow[1]


def test_split_slices_with_borrowed_anchors():
    # each group: an ID anchor (right), an ID open (right) and an OOD open: A right, B wrong on OOD
    def run(ood_ok):
        out = []
        for g in range(4):
            out += group(f"g{g}", g % 2, [True, True])
            out += [{**group(f"g{g}", g % 2, [None, ood_ok], split="test_ood")[1], "id": f"g{g}/ood"}]
        return out

    runs = {("A", 0): run(True), ("B", 0): run(False)}
    ood = paired_bootstrap(runs, "A", "B", "acc", split="test_ood", n_boot=20)
    assert ood["diff"] == 0.5  # OOD slice = anchor (right for both) + OOD open: A 2/2, B 1/2
    assert paired_bootstrap(runs, "A", "B", "acc_group", split="test_id", n_boot=20)["diff"] == 0.0


def test_bad_inputs_are_named():
    runs = {("A", 0): constant_run(4, True), ("A", 1): constant_run(4, True), ("B", 0): constant_run(4, False)}
    with raises_with(ValueError, "paired seeds differ", "'A' has seeds [0, 1]", "'B' has [0]", "the same seeds"):
        paired_bootstrap(runs, "A", "B")
    with pytest.raises(ValueError, match="no runs of method 'C'"):
        paired_bootstrap(runs, "A", "C")
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(runs, "A", "B", "accuracy")
    other = {("A", 0): constant_run(4, True), ("B", 0): constant_run(5, True)}
    with pytest.raises(ValueError, match="different meta-groups or labels"):
        paired_bootstrap(other, "A", "B")
    with pytest.raises(ValueError, match="no records in split 'test_ood'"):
        id_only = {("A", 0): constant_run(2, True), ("B", 0): constant_run(2, True)}
        paired_bootstrap(id_only, "A", "B", split="test_ood")
