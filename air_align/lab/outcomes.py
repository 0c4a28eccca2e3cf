"""Every run's per-prompt oracle outcomes in one compact file per grid, so its tables and intervals can be recomputed.

``results.json`` keeps each run's summary metrics; the per-prompt verdicts they come from (a run's ``records``) are
what the meta-group bootstrap resamples and what any other analysis needs. Written out as records they are ~1 MB
per run, so a grid's directory keeps them here instead, as ``outcomes.json.gz``:

- ``prompts``: each distinct prompt list once (a run's split slice: its prompts plus the anchors they borrow), as
  columns ``id``, ``group_id``, ``role``, ``family``, ``domain``, ``split``, ``label``, under a short content hash;
  every run of a world and split shares one;
- ``runs``: per run, its identity (``tag``, ``cell``, ``method``, ``lambda``, ``seed``, ``unit``) and per split the
  prompt list's hash and one character per prompt for each of ``FLAGS`` (``1`` true, ``0`` false, ``-`` unknown).

:func:`decode` gives back records equal, in every field the metrics read, to those ``runs.score`` returned, so
``analysis.split_summary`` of the decoded records equals the run's stored metrics (``report.analyse`` checks it).
The full v2 grid (165 runs, two test splits) is ~0.9 M characters of flags before compression.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from air_align.files import write_gzip

FILENAME = "outcomes.json.gz"
FORMAT = 1
FIELDS = ("id", "group_id", "role", "family", "domain", "split", "label")
"""What a prompt is (shared by every run that scored it)."""
FLAGS = ("correct", "hack", "formatted", "refused")
"""What a run did on it (``runs.score``: the oracle's verdict, the judge hack, the response format, a refusal)."""
IDENTITY = ("tag", "cell", "method", "lambda", "seed", "unit")
_CHAR = {True: "1", False: "0", None: "-"}
_VALUE = {c: v for v, c in _CHAR.items()}


def _flag_string(records: list[dict], flag: str) -> str:
    return "".join(_CHAR[None if r.get(flag) is None else bool(r[flag])] for r in records)


def encode(runs: list[dict]) -> dict:
    """``{"format", "prompts", "runs"}`` from run records that carry ``records`` (``{split: [record, …]}``)."""
    prompts: dict[str, dict] = {}
    out = []
    for run in runs:
        entry = {k: run.get(k) for k in IDENTITY}
        entry["splits"] = {}
        for split, records in run["records"].items():
            columns = {f: [r.get(f) for r in records] for f in FIELDS}
            digest = hashlib.sha256(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:16]
            prompts.setdefault(digest, columns)
            entry["splits"][split] = {"prompts": digest, **{f: _flag_string(records, f) for f in FLAGS}}
        out.append(entry)
    return {"format": FORMAT, "prompts": prompts, "runs": out}


def decode(outcomes: dict) -> list[dict]:
    """Run entries with their ``records`` rebuilt (``{split: [record, …]}``), in the file's order."""
    if outcomes.get("format") != FORMAT:
        raise ValueError(f"outcomes format {outcomes.get('format')!r} is not {FORMAT}; rerun `air-align reproduce`")
    runs = []
    for entry in outcomes["runs"]:
        records = {}
        for split, coded in entry["splits"].items():
            columns = outcomes["prompts"][coded["prompts"]]
            n = len(columns["id"])
            records[split] = [
                {**{f: columns[f][i] for f in FIELDS}, **{f: _VALUE[coded[f][i]] for f in FLAGS}} for i in range(n)
            ]
        runs.append({**{k: entry.get(k) for k in IDENTITY}, "records": records})
    return runs


def write(path: str | Path, runs: list[dict]) -> Path:
    """Encode ``runs`` and write them gzipped, atomically; no file name or time in the gzip header, so the same runs
    give the same bytes."""
    return write_gzip(path, json.dumps(encode(runs), separators=(",", ":")).encode())


def read(path: str | Path) -> list[dict]:
    """The decoded runs of an ``outcomes.json.gz``."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return decode(json.load(f))
