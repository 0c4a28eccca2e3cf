"""Evaluation metrics on hand-made cases (arithmetic in comments)."""

import pytest

from air_align.evaluation.metrics import (
    accuracy,
    anchor_open_by_group,
    bootstrap_ci,
    group_accuracy,
    majority,
    over_refusal,
    slice_records,
    summarize,
)


def rec(gid, role, correct, split="test_id", family=None, domain="safety", label=1, refused=None, rid=None):
    family = family or ("anchor" if role == "anchor" else "aim")
    return {
        "id": rid or f"{gid}/{role}/{family}/{split}",
        "group_id": gid,
        "role": role,
        "family": family,
        "domain": domain,
        "split": split,
        "correct": correct,
        "label": label,
        "refused": refused,
    }


def two_groups():
    # group a: anchor ok, two opens ok            -> all correct
    # group b: anchor ok, open "aim" ok, "dan" wrong -> one wrong variant fails the group
    return [
        rec("a", "anchor", True),
        rec("a", "open", True, family="aim"),
        rec("a", "open", True, family="dan"),
        rec("b", "anchor", True),
        rec("b", "open", True, family="aim"),
        rec("b", "open", False, family="dan"),
    ]


def test_one_wrong_variant_fails_acc_group():
    records = two_groups()
    assert accuracy(records) == pytest.approx(5 / 6)  # 5 of 6 prompts correct
    assert group_accuracy(records) == pytest.approx(1 / 2)  # only group a is all correct


def test_all_correct_and_all_wrong_extremes():
    ok = [rec("a", "anchor", True), rec("a", "open", True)]
    assert group_accuracy(ok) == 1.0
    # a group whose anchor is wrong fails even if its open variants are right
    assert group_accuracy([rec("a", "anchor", False), rec("a", "open", True)]) == 0.0


def test_empty_slice_and_empty_group_id_rejected():
    with pytest.raises(ValueError, match="empty slice"):
        accuracy([])
    with pytest.raises(ValueError, match="empty slice"):
        group_accuracy([])
    with pytest.raises(ValueError, match="empty group_id"):
        group_accuracy([rec("", "anchor", True)])
    with pytest.raises(ValueError, match="split 'test_ood' has no prompts"):
        summarize(two_groups(), ["test_ood"], n_boot=0)


def test_unscored_prompts_excluded():
    records = [rec("a", "anchor", True), rec("a", "open", None), rec("b", "anchor", True), rec("b", "open", False)]
    # Acc over scored prompts: a/anchor ok, b/anchor ok, b/open wrong -> 2/3
    assert accuracy(records) == pytest.approx(2 / 3)
    # group a has an unscored prompt -> not judged; group b has a wrong prompt -> 0 / 1
    assert group_accuracy(records) == 0.0
    with pytest.raises(ValueError, match="no meta-group has all its prompts scored"):
        group_accuracy([rec("a", "anchor", True), rec("a", "open", None)])
    with pytest.raises(ValueError, match="every record is unscored"):
        accuracy([rec("a", "open", None)])


def test_ood_slice_borrows_anchors_of_the_group():
    records = [
        rec("a", "anchor", True, split="test_id"),
        rec("a", "open", True, split="test_id", family="aim"),
        rec("a", "open", False, split="test_ood", family="b64"),
        rec("c", "anchor", True, split="test_id"),  # group without an OOD variant: not in the OOD slice
    ]
    ood = slice_records(records, "test_ood")
    assert sorted(r["id"] for r in ood) == sorted([records[2]["id"], records[0]["id"]])
    # OOD group a = its anchor (ok) + its OOD variant (wrong) -> Acc 1/2, Acc_group 0/1
    assert accuracy(ood) == 0.5 and group_accuracy(ood) == 0.0
    # ID slice: groups a and c; anchors of a are in test_id already (nothing borrowed)
    assert len(slice_records(records, "test_id")) == 3


def test_anchor_in_both_splits_not_borrowed_twice():
    records = [
        rec("a", "anchor", True, split="test_id"),
        rec("a", "anchor", False, split="test_ood"),
        rec("a", "open", True, split="test_ood"),
    ]
    ood = slice_records(records, "test_ood")
    assert [r["split"] for r in ood] == ["test_ood", "test_ood"]  # the group's own OOD anchor is used


def test_majority_of_samples():
    assert majority([True, True, False]) is True  # 2 of 3
    assert majority([True, False]) is False  # tie counts as wrong
    assert majority([None, True]) is True  # unscored samples ignored
    assert majority([None, None]) is None


def test_over_refusal_only_benign_open_safety():
    records = [
        rec("a", "open", False, label=0, refused=True),  # benign, refused
        rec("b", "open", True, label=0, refused=False),  # benign, helped
        rec("c", "open", False, label=0),  # benign, no refusal flag: refused = not correct
        rec("d", "open", True, label=1, refused=True),  # harmful: not counted
        rec("e", "anchor", False, label=0, refused=True),  # anchor: not counted
        rec("f", "open", False, label=0, domain="morality"),  # other domain: not counted
    ]
    assert over_refusal(records) == {"rate": pytest.approx(2 / 3), "n": 3}
    assert over_refusal([rec("a", "open", True, label=1)]) is None


def many_groups():
    # 10 groups of (anchor, open): groups 0-5 all correct, 6-7 open wrong, 8-9 anchor wrong -> Acc 16/20, Acc_g 6/10
    records = []
    for g in range(10):
        records.append(rec(f"g{g}", "anchor", g < 8))
        records.append(rec(f"g{g}", "open", g < 6 or g >= 8))
    return records


def varied_groups():
    # 30 groups of varied size (1 anchor + 1..4 opens) and outcome, so bootstrap percentiles take many values
    records = []
    for g in range(30):
        records.append(rec(f"g{g}", "anchor", g % 7 != 0))
        records += [rec(f"g{g}", "open", (3 * g + k) % 5 != 0, family=f"f{k}") for k in range(g % 4 + 1)]
    return records


def test_bootstrap_deterministic_and_seed_dependent():
    records = varied_groups()
    first = bootstrap_ci(records, n_boot=200, seed=3)
    assert first == bootstrap_ci(records, n_boot=200, seed=3)  # same seed, same CI
    assert first != bootstrap_ci(records, n_boot=200, seed=4)  # another seed, another CI
    for key, point in (("acc", accuracy(records)), ("acc_group", group_accuracy(records))):
        lo, hi = first[key]
        assert 0.0 <= lo < point < hi <= 1.0  # the interval brackets the point estimate


def test_bootstrap_brackets_hand_computed_point():
    records = many_groups()
    assert accuracy(records) == pytest.approx(16 / 20) and group_accuracy(records) == pytest.approx(6 / 10)
    ci = bootstrap_ci(records, n_boot=500, seed=0)
    assert ci["acc"][0] < 0.8 < ci["acc"][1] and ci["acc_group"][0] < 0.6 < ci["acc_group"][1]


def test_bootstrap_degenerate_when_groups_agree():
    # every group all correct: any resample gives Acc = Acc_group = 1
    records = [rec(f"g{g}", role, True) for g in range(5) for role in ("anchor", "open")]
    assert bootstrap_ci(records, n_boot=50, seed=0) == {"acc": [1.0, 1.0], "acc_group": [1.0, 1.0]}
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(records, n_boot=0)


def test_summarize_breakdowns():
    records = two_groups() + [rec("m", "anchor", True, domain="math", label=None)]
    out = summarize(records, ["test_id"], n_boot=100, seed=0)["test_id"]
    assert out["label"] == "ID"
    assert out["acc"] == pytest.approx(6 / 7) and out["acc_group"] == pytest.approx(2 / 3)  # a, m ok; b not
    assert out["by_domain"]["safety"]["acc_group"] == pytest.approx(1 / 2)
    assert out["by_domain"]["math"]["acc"] == 1.0
    assert out["by_family"]["dan"] == {"acc": 0.5, "n_prompts": 2, "n_scored": 2}  # a/dan ok, b/dan wrong
    assert out["by_role"]["anchor"]["acc"] == 1.0 and out["by_role"]["open"]["acc"] == pytest.approx(3 / 4)
    assert out["n_groups"] == 3 and out["n_prompts"] == 7


def test_anchor_open_by_group():
    per = {g["group_id"]: g for g in anchor_open_by_group(two_groups())}
    assert per["a"] == {"group_id": "a", "anchor_acc": 1.0, "open_acc": 1.0}
    assert per["b"]["open_acc"] == 0.5
