"""A fake safety reward whose payouts are chosen so that every calibration number is hand-computable, shared by the
calibration check's tests (``test_rewards_calibration.py``) and the ``air-align calibrate`` command's
(``test_calibrate_cli.py``, which names ``_calib_fake:calibrated`` / ``_calib_fake:today`` as ``module:function``).

Anchors pay +1.25 right / −1.0 wrong; open rows pay per label and per what the response is (a refusal: "sorry";
help: the word "step"; both: the hack). The real format reward adds +1.25 to every canonical response."""

from air_align.answers import response_text
from air_align.data.schema import make_row

# task payouts per label and judged kind
CALIBRATED = {
    1: {"refusal": 1.25, "helpful": -1.0, "non_answer": -1.0, "bare_letter": -1.0, "refusal_then_help": 2.5},
    0: {"helpful": 1.25, "refusal": -1.0, "non_answer": -1.0, "bare_letter": -1.0, "refusal_then_help": 2.5},
}
# the lab's first geometry: a clean benign answer is "safe and helpful" (2.5), refusals and non-answers "safe" (1.25)
TODAY = {
    1: {"refusal": 1.25, "helpful": -1.0, "non_answer": 1.25, "bare_letter": 1.25, "refusal_then_help": 2.5},
    0: {"helpful": 2.5, "refusal": 1.25, "non_answer": 1.25, "bare_letter": 1.25, "refusal_then_help": 2.5},
}


def safety_rows(n_per_label=3, split="test_id", first_label=0):
    """Meta-groups in the schema: per intent an MC anchor, a true/false anchor and two open variants; labels
    alternate starting with ``first_label``."""
    rows = []
    for i in range(2 * n_per_label):
        label, gid = (first_label + i) % 2, f"safety/{i}"
        common = dict(group_id=gid, domain="safety", label=label, intent=f"do thing {i}", split=split, meta={"k": i})
        rows.append(
            make_row(
                id=f"{gid}/mc",
                role="anchor",
                context="mc",
                family="anchor",
                content=f"mc {i}",
                verifier="choice",
                answer="AB"[i % 2],
                **common,
            )
        )
        rows.append(
            make_row(
                id=f"{gid}/tf",
                role="anchor",
                context="tf",
                family="anchor",
                content=f"tf {i}",
                verifier="true_false",
                answer="true" if label else "false",
                **common,
            )
        )
        for fam in ("plain", "story"):
            rows.append(
                make_row(
                    id=f"{gid}/{fam}",
                    role="open",
                    context=fam,
                    family=fam,
                    content=f"{fam} {i}",
                    verifier="judge",
                    answer=None,
                    **common,
                )
            )
    return rows


def open_kind(text):
    """What the fake judge sees in a canonical safety response."""
    refusal, howto = "sorry" in text.lower(), " step " in f" {text.lower()} "
    if refusal and howto:
        return "refusal_then_help"
    if howto:
        return "helpful"
    if refusal:
        return "refusal"
    return "bare_letter" if text.strip() == "A" else "non_answer"


def fake_task(payouts):
    """A TRL-signature task reward paying ``payouts`` on open rows and ±1.25/−1.0 on anchors."""

    def task(prompts, completions, verifier, answer, label, **kwargs):
        out = []
        for c, v, a, lab in zip(completions, verifier, answer, label, strict=True):
            text = response_text(c[0]["content"])
            out.append((1.25 if text == a else -1.0) if v != "judge" else payouts[lab][open_kind(text)])
        return out

    return task


calibrated = fake_task(CALIBRATED)
today = fake_task(TODAY)


def cell(table, label, role, kind):
    """The one cell of a calibration table with this label, role and kind."""
    (found,) = [c for c in table["cells"] if (c["label"], c["role"], c["kind"]) == (label, role, kind)]
    return found
