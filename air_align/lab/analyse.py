"""``air-align lab analyse DIR``: rebuild a grid's table and intervals from its committed files.

A grid's directory (``air-align reproduce --out DIR``) holds ``results.json`` (setup, warm starts, calibration, λ,
every run's metrics; or the same gzipped, ``results.json.gz``, the committed form of a grid whose results pass
1 MiB) and ``outcomes.json.gz`` (every run's per-prompt outcomes, ``outcomes.py``). :func:`analyse` decodes the
outcomes, recomputes each run's metrics from them and checks that they equal the recorded ones, then recomputes the
summary, the paired comparisons with every interval and the verdicts, and writes the results (in the form they were
read), ``table.md`` and the plots (``report.rebuild``). A grid from before outcomes were kept
(``docs/results/lab-v2/``) is rebuilt from its per-run metrics alone: everything but the two-level bootstrap over
meta-groups, which needs the per-prompt verdicts.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from air_align.lab import outcomes
from air_align.lab.analysis import split_summary
from air_align.lab.report import rebuild

RESULTS_NAMES = ("results.json", "results.json.gz")
"""A grid's results file, plain or gzipped (``gzip -n results.json`` turns one into the other)."""


def results_path(directory: Path) -> Path:
    """The results file of the grid in ``directory``: ``results.json`` or ``results.json.gz``, exactly one."""
    found = [directory / name for name in RESULTS_NAMES if (directory / name).is_file()]
    if not found:
        raise ValueError(
            f"{directory / RESULTS_NAMES[0]}: no such file (nor {RESULTS_NAMES[1]}); give the --out directory of an "
            "`air-align reproduce` grid"
        )
    if len(found) > 1:
        raise ValueError(
            f"{directory}: has both {RESULTS_NAMES[0]} and {RESULTS_NAMES[1]}, so which one to analyse is unclear; "
            "remove the one that is not the grid's"
        )
    return found[0]


def read_results(path: Path) -> dict:
    """The JSON object of a grid's results file, plain or gzipped (by its suffix)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); restore it from the repository or rerun the grid") from err


def load_results(directory: Path) -> dict:
    path = results_path(directory)
    results = read_results(path)
    if not isinstance(results, dict):
        raise ValueError(f"{path}: not a lab grid's results (a JSON object); give an `air-align reproduce` --out")
    missing = [
        k for k in ("preset", "runs", "worlds", "calibration", "lambda", "sweep", "seconds") if k not in results
    ]
    if missing:
        raise ValueError(f"{path}: not a lab grid's results (missing {missing}); give an `air-align reproduce` --out")
    return results


def attach_records(results: dict, directory: Path) -> list[dict] | None:
    """The main runs of ``results`` with their per-prompt ``records`` from ``outcomes.json.gz`` (None when the grid
    has no such file), after checking that every run's metrics recompute exactly from them."""
    path = directory / outcomes.FILENAME
    if not path.exists():
        return None
    decoded = outcomes.read(path)
    recorded = [*results["runs"], *(r for runs in results["sweep"].values() for r in runs)]
    if len(decoded) != len(recorded):
        raise ValueError(
            f"{path}: {len(decoded)} runs, results.json has {len(recorded)}; the two files are from "
            "different grids (rerun `air-align reproduce` into DIR to write both)"
        )
    full = []
    for i, (run, coded) in enumerate(zip(recorded, decoded, strict=True)):
        for key in outcomes.IDENTITY:
            if key in run and run[key] != coded[key]:
                raise ValueError(
                    f"{path}: run {i} is {key}={coded[key]!r} there but {run[key]!r} in results.json; "
                    "the two files are from different grids"
                )
        for split, records in coded["records"].items():
            again = split_summary(records, split)["summary"]
            if again != run["metrics"][split]:
                wrong = sorted(k for k in again if again[k] != run["metrics"][split].get(k))
                raise ValueError(
                    f"{path}: run {i} ({run.get('cell')} {run['method']} seed {run['seed']}), {split}: "
                    f"the outcomes give other metrics than results.json ({wrong})"
                )
        if i < len(results["runs"]):
            full.append({**run, "records": coded["records"]})
    return full


def analyse(directory: str | Path, out: str | Path | None = None) -> dict:
    """Rebuild the grid in ``directory``; write its results.json, table.md and plots to ``out`` (default: in place).
    Returns the rebuilt results."""
    directory = Path(directory)
    results = load_results(directory)
    full = attach_records(results, directory)
    out = Path(out) if out is not None else directory
    out.mkdir(parents=True, exist_ok=True)
    return rebuild(results, out, full, compressed=results_path(directory).suffix == ".gz")


def check(directory: str | Path) -> list[str]:
    """Rebuild ``directory`` elsewhere and compare with its ``table.md``: the differing lines (``-`` committed,
    ``+`` rebuilt), empty when the rebuild is exact."""
    directory = Path(directory)
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = analyse(directory, tmp)["table"] + "\n"
    committed = (directory / "table.md").read_text(encoding="utf-8")
    if committed == rebuilt:
        return []
    old, new = committed.splitlines(), rebuilt.splitlines()
    diff = [f"-{a}\n+{b}" for a, b in zip(old, new, strict=False) if a != b]
    if len(old) != len(new):
        diff.append(f"(table.md has {len(old)} lines, the rebuild {len(new)})")
    return diff
