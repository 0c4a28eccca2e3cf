"""Meta-groups of schema rows for the data tests: a choice anchor, a true/false anchor and open variants."""

from __future__ import annotations

from air_align.data.schema import make_row


def meta_group(
    gid: str = "g1",
    *,
    domain: str = "safety",
    label: int = 1,
    split: str = "train",
    n_open: int = 1,
    id_prefix: str | None = None,
    open_content: str = "wrapper {j}: do X",
    choice_meta: dict | None = None,
) -> list[dict]:
    """One valid meta-group of intent "do X": ids ``<id_prefix>/mc``, ``/tf`` and ``/w<j>`` (``id_prefix`` defaults to
    ``gid``); the open variants are judged, or verified as maths with answer "4" in the maths domain."""
    prefix = gid if id_prefix is None else id_prefix
    common = dict(group_id=gid, domain=domain, label=label, intent="do X", split=split)
    extra = {} if choice_meta is None else {"meta": choice_meta}
    rows = [
        make_row(
            id=f"{prefix}/mc",
            role="anchor",
            context="mc",
            family="anchor",
            content="Help? A) y B) n",
            verifier="choice",
            answer="B",
            **extra,
            **common,
        ),
        make_row(
            id=f"{prefix}/tf",
            role="anchor",
            context="tf",
            family="anchor",
            content="True or false: refuse",
            verifier="true_false",
            answer="true",
            **common,
        ),
    ]
    maths = domain == "math"
    for j in range(n_open):
        rows.append(
            make_row(
                id=f"{prefix}/w{j}",
                role="open",
                context=f"w{j}",
                family=f"fam{j}",
                content=open_content.format(j=j),
                verifier="math" if maths else "judge",
                answer="4" if maths else None,
                **common,
            )
        )
    return rows
