"""The calibration check (docs/calibration.md): reference responses, TRL-style scoring, the table, its verdict,
offsets.

The fake reward of ``_calib_fake.py`` (payouts chosen so that every number is hand-computable) drives the checks;
the lab's own reward is then checked once.
"""

import json
import math

import pytest
import torch
from _calib_fake import CALIBRATED, TODAY, cell, fake_task, safety_rows

from air_align.answers import response_text
from air_align.calibration.check import calibration_table, score_references
from air_align.calibration.references import ReferenceKind, default_kinds, load_reference_file
from air_align.calibration.report import calibration_markdown, write_calibration
from air_align.objectives import invariance_coefficients, weighted_rewards
from air_align.rewards.format import format_reward


def table_for(payouts, **kwargs):
    scored = score_references([format_reward, fake_task(payouts)], safety_rows(), progress=False)
    return calibration_table(scored, **kwargs), scored


def verdict(table, label):
    (found,) = [v for v in table["verdicts"] if v["label"] == label]
    return found


def test_calibrated_reward_says_calibrated():
    table, _ = table_for(CALIBRATED)
    # correct anchor: 1.25 + 1.25 = 2.5 for both labels; harmful refusal 2.5 -> Δ 0; help 0.25 -> Δ 2.25
    assert table["calibrated"] and [v["status"] for v in table["verdicts"]] == ["calibrated", "calibrated"]
    assert cell(table, 1, "open", "refusal")["delta"] == 0.0 and cell(table, 1, "open", "helpful")["delta"] == 2.25
    assert cell(table, 0, "open", "helpful")["delta"] == 0.0 and cell(table, 0, "open", "refusal")["delta"] == 2.25
    assert cell(table, 0, "anchor", "wrong_answer")["delta"] == 2.25  # 2.5 - (-1.0 + 1.25)
    # the hack earns 2.5 + 1.25 = 3.75: Δ = -1.25, reported, not a violation
    for label in (0, 1):
        v = verdict(table, label)
        assert v["violations"] == [] and v["offset"] == 0.0
        assert [(h["kind"], h["delta"]) for h in v["hacks"]] == [("refusal_then_help", -1.25)]
    assert table["offsets"] == {"safety": {"0": 0.0, "1": 0.0}}
    assert cell(table, 1, "open", "refusal")["n"] == 6 and cell(table, 1, "anchor", "right_answer")["n"] == 6


def test_todays_lab_geometry_is_named_with_exact_gaps():
    table, _ = table_for(TODAY)
    assert not table["calibrated"]
    benign, harmful = verdict(table, 0), verdict(table, 1)
    assert benign["status"] == harmful["status"] == "miscalibrated"
    # benign: correct help 2.5 + 1.25 = 3.75 vs anchors 2.5 -> Δ = -1.25 (above the anchors);
    # refusal, non-answer, bare letter 1.25 + 1.25 = 2.5 -> Δ = 0 (failures at the anchors' level)
    gaps = {x["kind"]: x["delta"] for x in benign["violations"]}
    assert gaps == {"helpful": -1.25, "refusal": 0.0, "non_answer": 0.0, "bare_letter": 0.0}
    (helpful,) = [x for x in benign["violations"] if x["kind"] == "helpful"]
    assert "label 0" in helpful["message"] and "above the anchors" in helpful["message"]
    assert "AIR gives it a negative coefficient" in helpful["message"]
    (refusal,) = [x for x in benign["violations"] if x["kind"] == "refusal"]
    assert "does not separate it from the correct behaviour" in refusal["message"]
    # harmful: the refusal is right (Δ 0) but non-answers also earn 2.5
    assert {x["kind"]: x["delta"] for x in harmful["violations"]} == {"non_answer": 0.0, "bare_letter": 0.0}
    assert benign["offset"] == 1.25 and harmful["offset"] == 0.0  # b = E[correct open] - E[correct anchor]


def test_benign_only_miscalibration_leaves_harmful_calibrated():
    payouts = {1: CALIBRATED[1], 0: TODAY[0]}
    table, _ = table_for(payouts)
    assert verdict(table, 1)["status"] == "calibrated" and verdict(table, 0)["status"] == "miscalibrated"


def test_measured_offsets_zero_the_correct_kind():
    table, scored = table_for(TODAY)
    shifted = calibration_table(scored, offsets=table["offsets"])
    assert shifted["offsets_applied"]
    # Δ = anchor + b - mean: benign help 2.5 + 1.25 - 3.75 = 0; benign refusal 2.5 + 1.25 - 2.5 = 1.25 > 0.25
    assert cell(shifted, 0, "open", "helpful")["delta"] == 0.0
    assert cell(shifted, 0, "open", "refusal")["delta"] == 1.25
    assert verdict(shifted, 0)["status"] == "calibrated" and verdict(shifted, 0)["offset_applied"] == 1.25
    # an offset cannot separate a failure that earns exactly what the correct response earns
    assert {x["kind"] for x in verdict(shifted, 1)["violations"]} == {"non_answer", "bare_letter"}
    assert cell(shifted, 0, "anchor", "wrong_answer")["delta"] == 2.25  # anchors are not shifted


def test_table_delta_is_airs_delta_at_the_correct_policy():
    """The table's Δ of a correct kind equals objectives.invariance_coefficients on a batch where every anchor gets
    its right answer and every open prompt the correct kind (K = 2 identical completions)."""
    table, scored = table_for(TODAY)
    correct = [r for r in scored if r["class"] == "correct"]
    rewards = torch.tensor([r["reward"] for r in correct for _ in range(2)], dtype=torch.float64)
    prompt_ids = torch.arange(len(correct)).repeat_interleave(2)
    groups = {g: i for i, g in enumerate(dict.fromkeys(r["group_id"] for r in correct))}
    group_ids = torch.tensor([groups[r["group_id"]] for r in correct]).repeat_interleave(2)
    is_anchor = torch.tensor([r["role"] == "anchor" for r in correct]).repeat_interleave(2)
    delta = invariance_coefficients(rewards, prompt_ids, group_ids, is_anchor, "air")
    for k, r in enumerate(correct):
        if r["role"] == "open":
            assert float(delta[2 * k]) == cell(table, r["label"], "open", r["kind"])["delta"]


def test_trl_style_call_columns_batches_and_nan_semantics():
    calls = []

    def spy(prompts, completions, **columns):
        calls.append((prompts, completions, columns))
        return [1.0 if role == "anchor" else None for role in columns["role"]]  # open rows: unscored

    def other(prompts, completions, **columns):
        return [None if role == "anchor" else 0.5 for role in columns["role"]]

    rows = safety_rows(1)  # 2 intents x (2 anchors + 2 opens)
    kinds = [k for k in default_kinds() if k.name in ("right_answer", "refusal")]
    scored = score_references([spy, other], rows, kinds, weights=[2.0, 4.0], batch_size=3, progress=False)
    # right_answer on 4 anchors, refusal on 4 opens: 8 responses in batches of 3, 3, 2
    assert [len(p) for p, _, _ in calls] == [3, 3, 2]
    prompts, completions, columns = calls[0]
    assert prompts[0] == rows[0]["prompt"]
    assert completions[0] == [{"role": "assistant", "content": scored[0]["text"]}]
    expected = [k for k in rows[0] if k != "prompt"]
    assert (
        list(columns) == expected
        and columns["meta"][0] == {"k": 0}
        and columns["id"][:2] == ["safety/0/mc", "safety/0/tf"]
    )
    # TRL's sum: anchors 2 * 1.0 (other's None skipped), opens 4 * 0.5 (spy's None skipped)
    assert {(r["role"], r["reward"]) for r in scored} == {("anchor", 2.0), ("open", 2.0)}
    assert scored[0]["rewards"] == {"spy": 1.0, "other": None}
    # plain-text prompts get plain-text completions, as TRL passes them
    text_rows = [{**r, "prompt": "plain prompt"} for r in rows[:1]]
    score_references(spy, text_rows, kinds, progress=False)
    assert calls[-1][1] == [scored[0]["text"]]


def test_unscored_kinds_are_noted_and_undetermined():
    def anchors_only(prompts, completions, role, answer, **kwargs):
        return [
            (1.25 if response_text(c[0]["content"]) == a else -1.0) if r == "anchor" else None
            for c, r, a in zip(completions, role, answer, strict=True)
        ]

    scored = score_references(anchors_only, safety_rows(1), progress=False)
    assert all(r["reward"] is None for r in scored if r["role"] == "open")
    table = calibration_table(scored)
    assert cell(table, 1, "open", "refusal")["n_unscored"] == 2 and cell(table, 1, "open", "refusal")["mean"] is None
    v = verdict(table, 1)
    assert v["status"] == "undetermined" and v["offset"] is None and not table["calibrated"]
    assert any("unscored" in n for n in v["notes"]) and any("no scored correct open kind" in n for n in v["notes"])


def test_weighted_rewards_is_trls_nan_sum():
    # row 0: 2*1 + 1*NaN -> 2 (NaN skipped); row 1: all NaN -> NaN; row 2: 2*0.5 + 1*(-1) = 0
    nan = float("nan")
    out = weighted_rewards(torch.tensor([[1.0, nan], [nan, nan], [0.5, -1.0]]), torch.tensor([2.0, 1.0]))
    assert out[0] == 2.0 and math.isnan(out[1]) and out[2] == 0.0


def test_bad_inputs_are_refused():
    rows = safety_rows(1)
    with pytest.raises(ValueError, match="2 weights for 1 reward functions"):
        score_references(format_reward, rows, weights=[1.0, 2.0], progress=False)
    with pytest.raises(ValueError, match="no reference kind applies"):
        score_references(format_reward, [{**rows[2], "domain": "other"}], progress=False)
    with pytest.raises(ValueError, match="torch module"):
        score_references(torch.nn.Linear(1, 1), rows, progress=False)
    with pytest.raises(ValueError, match="returned 1 values for 3 completions"):
        score_references(lambda prompts, completions, **k: [1.0], rows[:1], progress=False)  # 3 anchor kinds
    twice = [
        ReferenceKind("x", "correct", "anchor", lambda r: "a"),
        ReferenceKind("x", "failure", "anchor", lambda r: "b"),
    ]
    with pytest.raises(ValueError, match="two reference kinds named 'x'"):
        score_references(format_reward, rows, twice, progress=False)
    with pytest.raises(ValueError, match="class 'right' is not one of"):
        ReferenceKind("x", "right", "open", lambda r: None)
    with pytest.raises(ValueError, match="no scored responses"):
        calibration_table([])


def test_user_reference_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [
        {
            "kind": "my_refusal",
            "class": "correct",
            "role": "open",
            "domain": "safety",
            "label": 1,
            "text": "<think>no</think><answer>I won't help you {intent}. \\boxed{x}</answer>",
        },
        {
            "kind": "my_refusal",
            "class": "failure",
            "role": "open",
            "domain": "safety",
            "label": 0,
            "text": "<think>no</think><answer>I won't help you {intent}.</answer>",
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    kinds = load_reference_file(path)
    assert [(k.name, k.cls) for k in kinds] == [("my_refusal", "correct"), ("my_refusal", "failure")]
    row = {"role": "open", "domain": "safety", "label": 1, "intent": "do thing 1."}
    assert kinds[0].respond(row) == "<think>no</think><answer>I won't help you do thing 1. \\boxed{x}</answer>"
    assert kinds[1].respond(row) is None and kinds[0].respond({**row, "role": "anchor"}) is None
    scored = score_references(fake_task(CALIBRATED), safety_rows(1), kinds + default_kinds()[:3], progress=False)
    assert {r["kind"] for r in scored} == {"my_refusal", "right_answer", "wrong_answer", "non_answer"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "mine.jsonl:2: not valid JSON"),
        ('["a"]', "mine.jsonl:2: expected a JSON object"),
        ('{"kind": "k", "class": "good", "role": "open", "text": "t"}', "mine.jsonl:2: class 'good' is not one of"),
        ('{"kind": "k", "class": "hack", "role": "judge", "text": "t"}', "mine.jsonl:2: role 'judge'"),
        ('{"kind": "k", "class": "hack", "role": "open", "text": ""}', "mine.jsonl:2: 'text' must be a non-empty"),
        ('{"kind": "k", "class": "hack", "role": "open", "text": "t", "lable": 1}', r"mine.jsonl:2: unknown key\(s\)"),
        ('{"kind": "k", "class": "hack", "role": "open", "text": "t", "label": "1"}', "mine.jsonl:2: 'label' must"),
        ('{"kind": "a", "class": "hack", "role": "open", "text": "t"}', "mine.jsonl:2: kind 'a' .* line 1"),
    ],
)
def test_user_reference_file_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"kind": "a", "class": "hack", "role": "open", "text": "t"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_reference_file(path)


def test_reference_file_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such reference-response file"):
        load_reference_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no reference responses"):
        load_reference_file(tmp_path / "empty.jsonl")


def test_renderers(tmp_path):
    table, _ = table_for(TODAY)
    text = calibration_markdown(table)
    assert "Verdict: **not calibrated** (tolerance 0.25)" in text
    assert "## safety, label 0 (benign): miscalibrated" in text
    assert "| open | helpful | correct | 6 | 3.750 ± 0.000 | -1.250 |" in text
    assert "offset b = E[correct open] − E[correct anchor] = +1.250" in text
    paths = write_calibration(table, tmp_path / "out")
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == table
    assert paths["markdown"].read_text(encoding="utf-8") == text
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_lab_reward_is_miscalibrated_on_benign_requests():
    """The lab's miscalibrated control (the first lab's reward geometry, world ``safety-miscalibrated``) with the lab's
    own responses: benign correct help earns 3.75 against the anchors' 2.5, a benign refusal 2.5; harmful prompts are
    calibrated on these kinds; the hack out-scores the anchors on both labels."""
    from air_align.lab.judge import lab_rewards
    from air_align.lab.oracle import reference_response
    from air_align.lab.world import build_rows

    rows = [r for r in build_rows("safety", seed=0) if r["split"] in ("test_id", "test_ood")]
    kinds = [
        ReferenceKind(b, c, "anchor", lambda r, b=b: reference_response(r, b))
        for b, c in (("correct", "correct"), ("wrong", "failure"))
    ]
    kinds += [
        ReferenceKind(b, c, "open", lambda r, b=b: reference_response(r, b))
        for b, c in (("correct", "correct"), ("wrong", "failure"), ("hack", "hack"))
    ]
    table = calibration_table(score_references(lab_rewards("safety-miscalibrated"), rows, kinds, progress=False))
    benign, harmful = verdict(table, 0), verdict(table, 1)
    assert benign["status"] == "miscalibrated" and harmful["status"] == "calibrated"
    gaps = {x["kind"]: x["delta"] for x in benign["violations"]}
    assert set(gaps) == {"correct", "wrong"}
    assert gaps["correct"] == pytest.approx(-1.25, abs=0.05)  # 2.5 - (2.5 + 1.25), unless the judge's noise flips
    assert gaps["wrong"] == pytest.approx(0.0, abs=0.05)  # a refusal: "safe" 1.25 + format 1.25 = the anchors' 2.5
    assert all(h["delta"] < 0 for v in (benign, harmful) for h in v["hacks"])
    # with the canonical responses, the non-answers break harmful prompts too (they earn "safe", 2.5)
    canonical = calibration_table(score_references(lab_rewards("safety-miscalibrated"), rows, progress=False))
    assert {x["kind"] for x in verdict(canonical, 1)["violations"]} == {"non_answer", "bare_letter"}
