"""Every command block of README.md and docs/*.md that is marked runnable works as written.

The marker (for writers: README.md, "Development") is an HTML comment on the line right before a fence, invisible
once rendered::

    <!-- runnable -->                  the block runs as written
    <!-- runnable: model=tiny -->      the same, with the tiny test model where a real one would load
                                       (exactly the rewrites of ``substitute_tiny_model``, nothing else)
    <!-- runnable: slow -->            run only by ``make test-slow`` (minutes)
    <!-- runnable: file=NAME -->       not run: the block's text is saved as NAME, a file that a later command reads

Options combine with commas (``model=tiny, slow``). The marked blocks of one page run in page order in one fresh
directory holding a copy of ``configs/``, ``scripts/`` and ``benchmarks/``, as for a user following the page from the
repository root. A ``bash`` block runs command by command (a line, or lines joined by a trailing backslash; comment
lines skipped), each in its own ``bash -c``, so a command cannot rely on a variable that an earlier line set; a
``python`` block runs as one script. ``air-align``, ``python`` and ``python3`` resolve to this checkout and this
interpreter, and the Hugging Face offline flags are set: a marked block must run offline. A command passes when it
exits 0 and leaves the outputs its subcommand promises (``expected_outputs``); a failure names the page, the line and
the command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COPIED = ("configs", "scripts", "benchmarks")  # what the documented commands read from the repository root
SHELL_LANGS = ("bash", "sh", "shell")
REAL_MODELS = ("smollm2-135m",)  # load_model names of pretrained models that `model=tiny` replaces
COMMAND_TIMEOUT_S = 1800
VERDICTS = {"calibrate": "verdict: NOT calibrated"}
"""Commands whose exit status 1 is a finding, not a failure, when their output says so (`air-align calibrate --help`:
0 calibrated, 1 not calibrated, 2 an error; a crash also exits 1, without the verdict line)."""
# a tqdm bar, "desc: 40%|███ | 4/10 [00:01<00:02]"; a message printed right after one, on its line, stays
PROGRESS_BAR = re.compile(r"[^\r\n]*?\d+%\|[^|\r\n]*\|[^\[\r\n]*\[[^\]\r\n]*\]")

MARKER = re.compile(r"^<!--\s*runnable\s*(?::\s*(?P<options>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    options: dict  # {"model": "tiny", "slow": True, "file": "mine.jsonl"}
    lines: tuple  # ((line number, text), ...) of the block's body

    @property
    def where(self) -> str:
        return f"{page_name(self.page)}:{self.line}"


def page_name(page: Path) -> str:
    """A page as a failure names it: relative to the repository, or the full path of a page outside it."""
    return str(page.relative_to(ROOT) if page.is_relative_to(ROOT) else page)


class DocCommandFailed(AssertionError):
    """A documented command that did not work as written."""


def parse_options(text: str | None, where: str) -> dict:
    """``"model=tiny, slow"`` → ``{"model": "tiny", "slow": True}``; an unknown option or value is an error.

    >>> parse_options("model=tiny, slow", "x.md:1")
    {'model': 'tiny', 'slow': True}
    >>> parse_options(None, "x.md:1")
    {}
    """
    options: dict = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, _, value = (part.strip() for part in item.partition("="))
        valid = {"model": value == "tiny", "slow": not value, "file": True}
        if not valid.get(key, False):
            raise ValueError(
                f"{where}: unknown runnable option {item!r}; use 'model=tiny', 'slow' or 'file=NAME' "
                "(tests/test_docs_commands.py)"
            )
        if key == "file" and not value:
            raise ValueError(f"{where}: 'file=' needs a file name, e.g. file=mine.jsonl")
        options[key] = value or True
    return options


def marked_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` that a runnable marker precedes, in page order; a marker that is not directly
    followed by a fence, or a runnable block in a language that cannot run without ``file=``, is an error."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, text in enumerate(lines):
        marker = MARKER.match(text.strip())
        if not marker:
            continue
        where = f"{page_name(page)}:{i + 1}"
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence:
            raise ValueError(f"{where}: a runnable marker must be the line right before a ``` fence")
        options = parse_options(marker.group("options"), where)
        lang = fence.group("lang")
        if "file" not in options and lang not in (*SHELL_LANGS, "python"):
            raise ValueError(f"{where}: a runnable ```{lang} block needs file=NAME (only bash and python blocks run)")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == fence.group("fence")), None)
        if end is None:
            raise ValueError(f"{where}: the block's fence is never closed")
        body = tuple((j + 1, lines[j]) for j in range(i + 2, end))
        blocks.append(Block(page, i + 2, lang, options, body))
    return blocks


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """``(line, command)`` for each command of a shell block: lines joined at a trailing backslash; blank and
    comment lines skipped."""
    commands, pending, start = [], "", 0
    for number, text in block.lines:
        if not pending and (not text.strip() or text.lstrip().startswith("#")):
            continue
        start = start if pending else number
        text = text.strip()
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        commands.append((start, pending + text))
        pending = ""
    if pending:
        raise ValueError(f"{block.where}: the block ends inside a continued (backslash) line")
    return commands


def split_command(command: str) -> tuple[dict, list[str]]:
    """The leading ``NAME=value`` assignments and the remaining words of a command (shell comment dropped).

    >>> split_command("OUT=runs/x MODEL=tiny bash scripts/gpu_study.sh  # a comment")
    ({'OUT': 'runs/x', 'MODEL': 'tiny'}, ['bash', 'scripts/gpu_study.sh'])
    """
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def subcommand(words: list[str]) -> str | None:
    """``"data build"``, ``"train"``, … for an ``air-align`` command; None for any other program."""
    if not words or words[0] != "air-align" or len(words) < 2:
        return None
    return " ".join(words[1:3]) if words[1] in ("data", "lab") else words[1]


def substitute_tiny_model(command: str) -> str:
    """The command with the tiny test model where it would load a real one; these three rewrites and no other:
    ``air-align train`` gets ``model=tiny`` appended (the last key=value wins), ``--model smollm2-135m`` becomes
    ``--model tiny``, and ``air-align calibrate --config FILE`` without ``--model`` gets ``--model tiny`` appended.
    A command that needs none of them is returned unchanged (``air-align eval --model runs/x/final`` evaluates the
    model a tiny train wrote).

    >>> substitute_tiny_model("air-align train --config configs/smollm2-cpu.yaml max_steps=4")
    'air-align train --config configs/smollm2-cpu.yaml max_steps=4 model=tiny'
    >>> substitute_tiny_model("air-align audit --model smollm2-135m --out runs/a --threads 1   # 8 intents")
    'air-align audit --model tiny --out runs/a --threads 1'
    >>> substitute_tiny_model("air-align calibrate --config c.yaml --reward-config '{judge: {model: none}}'")
    "air-align calibrate --config c.yaml --reward-config '{judge: {model: none}}' --model tiny"
    >>> substitute_tiny_model("air-align eval --model runs/x/final --data d.jsonl --out runs/e")
    'air-align eval --model runs/x/final --data d.jsonl --out runs/e'
    """
    env, words = split_command(command)
    sub = subcommand(words)
    if sub is None:
        return command
    new = list(words)
    for i, word in enumerate(words[:-1]):
        if word == "--model" and words[i + 1] in REAL_MODELS:
            new[i + 1] = "tiny"
    if sub == "train":
        new.append("model=tiny")
    elif sub == "calibrate" and "--config" in words and "--model" not in words:
        new += ["--model", "tiny"]
    if new == words:
        return command
    if any(word in ("|", "||", "&&", ";", "&", ">", ">>", "<") for word in words):
        raise ValueError(f"cannot substitute the tiny model into a compound command: {command}")
    return shlex.join([f"{name}={value}" for name, value in env.items()] + new)


def option_value(words: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``words``, or None."""
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word[len(name) + 1 :]
    return None


def expected_outputs(command: str, cwd: Path) -> list[Path]:
    """The files a documented command promises to write (docs/*.md), relative to ``cwd``.

    >>> [str(p) for p in expected_outputs("air-align eval --model m --data d.jsonl --out runs/e", Path("."))]
    ['runs/e/results.json', 'runs/e/report.md']
    >>> [str(p) for p in expected_outputs("OUT=runs/s MODEL=tiny bash scripts/gpu_study.sh", Path("."))]
    ['runs/s/study.json', 'runs/s/study.md']
    """
    env, words = split_command(command)
    if words[:2] == ["bash", "scripts/gpu_study.sh"]:
        out = cwd / env.get("OUT", "gpu_study_out")
        return [out / "study.json", out / "study.md"]
    sub, out = subcommand(words), option_value(words, "--out")
    if (sub in ("data build", "report", "lab world") or words[0] in ("python", "python3")) and out:
        return [cwd / out]
    if sub == "train":
        overrides = dict(w.split("=", 1) for w in words[2:] if "=" in w and not w.startswith("-"))
        output_dir = overrides.get("output_dir")
        if output_dir is None:
            output_dir = yaml.safe_load((cwd / option_value(words, "--config")).read_text())["output_dir"]
        return [cwd / output_dir / "final" / "config.json", cwd / output_dir / "log.jsonl"]
    promised = {
        "eval": ("results.json", "report.md"),
        "audit": ("results.json", "audit.json", "report.md"),
        "calibrate": ("calibration.json", "calibration.md"),
        "reproduce": ("results.json", "table.md"),
        "study": ("study.json", "study.md"),
    }
    if sub in promised:
        return [cwd / (out or "runs/calibration") / name for name in promised[sub]]
    return []


def tool_env(bin_dir: Path) -> dict:
    """The environment a documented command runs in: ``air-align`` / ``python`` / ``python3`` scripts in
    ``bin_dir`` that run this checkout with this interpreter, then the interpreter's own bin (torchrun,
    accelerate); offline."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {"air-align": '-m air_align.cli "$@"', "python": '"$@"', "python3": '"$@"'}
    for name, args in scripts.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}\n')
        path.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", **offline}


def last_lines(output: str, n: int = 30) -> str:
    """The last ``n`` lines of a command's output, progress bars left out (a message printed right after a bar, on
    its line, is kept).

    >>> last_lines("warm start:   0%|     | 0/256 [00:00<?, ?it/s]error: bad\\rstep: 50%|#  | 1/2 [00:01<00:01]\\n")
    'error: bad'
    """
    lines = re.split(r"[\r\n]+", PROGRESS_BAR.sub("", output))
    return "\n".join([line for line in lines if line.strip()][-n:])


def check_ran(
    where: str, shown: str, argv: list[str], cwd: Path, env: dict, outputs: list[Path], verdict: str | None = None
) -> None:
    """Run ``argv`` in ``cwd``; a non-zero exit (but 1 with the ``verdict`` line in its output), a time-out or a
    promised output missing or empty (a ``.json`` one unreadable) raises DocCommandFailed naming ``where``
    (page:line) and the command ``shown``."""
    try:
        run = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DocCommandFailed(f"{where}: `{shown}` ran past {COMMAND_TIMEOUT_S} s") from None
    finding = verdict is not None and run.returncode == 1 and verdict in run.stdout
    if run.returncode != 0 and not finding:
        tail = last_lines(run.stdout + "\n" + run.stderr)
        raise DocCommandFailed(f"{where}: `{shown}` exited {run.returncode} (in {cwd}); last lines:\n{tail}")
    for path in outputs:
        if not path.is_file() or path.stat().st_size == 0:
            raise DocCommandFailed(f"{where}: `{shown}` exited 0 but did not write {path.relative_to(cwd)}")
        if path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise DocCommandFailed(
                    f"{where}: `{shown}` wrote {path.relative_to(cwd)}, not JSON: {error}"
                ) from None


def run_block(block: Block, cwd: Path, env: dict, bin_dir: Path) -> None:
    """Run one marked block in ``cwd`` (or save it, with ``file=``)."""
    text = "\n".join(line for _, line in block.lines) + "\n"
    if "file" in block.options:
        (cwd / block.options["file"]).write_text(text, encoding="utf-8")
        return
    if block.lang == "python":
        script = bin_dir / f"block-{block.line}.py"
        script.write_text(text, encoding="utf-8")
        first = next((line for _, line in block.lines if line.strip()), "")
        check_ran(f"{block.where} (python block)", first, [sys.executable, str(script)], cwd, env, [])
        return
    for line, command in shell_commands(block):
        ran = substitute_tiny_model(command) if block.options.get("model") == "tiny" else command
        shown = command if ran == command else f"{command}` run as `{ran}"
        where = f"{page_name(block.page)}:{line}"
        verdict = VERDICTS.get(subcommand(split_command(ran)[1]))
        argv = ["bash", "-o", "pipefail", "-c", ran]
        check_ran(where, shown, argv, cwd, env, expected_outputs(ran, cwd), verdict)


def run_page(blocks: list[Block], work: Path) -> Path:
    """Run ``blocks`` (one page's, in order) in ``work/page``, a fresh directory with ``COPIED`` copied from the
    repository; returns that directory."""
    cwd = work / "page"
    cwd.mkdir(parents=True)
    for name in COPIED:
        shutil.copytree(ROOT / name, cwd / name)
    bin_dir = work / "bin"
    env = tool_env(bin_dir)
    for block in blocks:
        run_block(block, cwd, env, bin_dir)
    return cwd


def pages_with(slow: bool) -> list[str]:
    """Pages (relative paths) with a fast block (``slow=False``) or a slow block (``slow=True``)."""
    return [
        str(p.relative_to(ROOT)) for p in PAGES if any(b.options.get("slow", False) == slow for b in marked_blocks(p))
    ]


@pytest.mark.parametrize("page", pages_with(slow=False))
def test_marked_blocks_of_a_page_run_as_written(page, tmp_path):
    blocks = [b for b in marked_blocks(ROOT / page) if not b.options.get("slow")]
    cwd = run_page(blocks, tmp_path)
    if page == "README.md":  # the walkthrough's evaluation covers the test splits of the data it built
        results = json.loads((cwd / "runs/smollm2-cpu/eval/results.json").read_text())
        assert set(results["slices"]) == {"test_id", "test_ood"}
        assert all(s["n_prompts"] > 0 and s["n_groups"] > 0 for s in results["slices"].values())


@pytest.mark.slow
@pytest.mark.parametrize("page", pages_with(slow=True))
def test_every_marked_block_of_a_page_runs_as_written(page, tmp_path):
    run_page(marked_blocks(ROOT / page), tmp_path)


def test_the_readme_walkthrough_is_marked_and_runs_with_the_tiny_model():
    """The parser finds the README's real-data walkthrough, so the test above cannot silently run nothing."""
    (block,) = [b for b in marked_blocks(ROOT / "README.md") if "data build" in "".join(t for _, t in b.lines)]
    assert block.lang == "bash" and block.options == {"model": "tiny"}
    ran = [substitute_tiny_model(command) for _, command in shell_commands(block)]
    assert ran == [
        "air-align data build --domain safety --out safety.jsonl",
        "air-align train --config configs/smollm2-cpu.yaml dataset=safety.jsonl reward=composite max_steps=4 "
        "model=tiny",
        "air-align eval --model runs/smollm2-cpu/final --data safety.jsonl --out runs/smollm2-cpu/eval",
    ]
    assert "README.md" in pages_with(slow=False)


def test_the_runner_names_page_line_and_command_of_a_failing_block(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text(
        "# A page\n\n<!-- runnable -->\n```bash\n# builds nothing\nair-align data build --domain safety \\\n"
        "    --out data/s.jsonl --n-intents 0\n```\n"
    )
    (block,) = marked_blocks(page)
    assert shell_commands(block) == [(6, "air-align data build --domain safety --out data/s.jsonl --n-intents 0")]
    with pytest.raises(DocCommandFailed) as failure:
        run_page([block], tmp_path / "work")
    message = str(failure.value)
    assert message.startswith(f"{page}:6: `air-align data build --domain safety ")
    assert "exited 2" in message and "error:" in message  # the command's own error line is shown


def test_a_command_that_exits_0_without_its_promised_output_fails(tmp_path):
    page = tmp_path / "quiet.md"
    page.write_text("<!-- runnable -->\n```bash\nair-align eval --help --out runs/e\n```\n")
    with pytest.raises(DocCommandFailed, match=r"quiet.md:3: .* exited 0 but did not write runs/e/results.json"):
        run_page(marked_blocks(page), tmp_path / "work")


def test_a_file_block_is_saved_for_the_commands_after_it(tmp_path):
    page = tmp_path / "file.md"
    page.write_text(
        "<!-- runnable: file=note.txt -->\n```text\nhello\n```\n\n"
        "<!-- runnable -->\n```bash\ngrep -q hello note.txt\n```\n"
        "<!-- runnable -->\n```python\nassert open('note.txt').read() == 'hello\\n'\n```\n"
    )
    blocks = marked_blocks(page)
    assert [(b.line, b.lang, b.options) for b in blocks] == [
        (2, "text", {"file": "note.txt"}),
        (7, "bash", {}),
        (11, "python", {}),
    ]
    assert (run_page(blocks, tmp_path / "work") / "note.txt").read_text() == "hello\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- runnable: modle=tiny -->\n```bash\ntrue\n```\n", "unknown runnable option 'modle=tiny'"),
        ("<!-- runnable: model=smollm2 -->\n```bash\ntrue\n```\n", "unknown runnable option 'model=smollm2'"),
        ("<!-- runnable -->\n\n```bash\ntrue\n```\n", "must be the line right before a ``` fence"),
        ("<!-- runnable -->\n```yaml\na: 1\n```\n", "needs file=NAME"),
        ("<!-- runnable -->\n```bash\ntrue\n", "never closed"),
    ],
)
def test_a_bad_marker_is_an_error_naming_the_line(tmp_path, text, problem):
    page = tmp_path / "marks.md"
    page.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{page}:1: ") + ".*" + re.escape(problem)):
        marked_blocks(page)


def test_exit_1_passes_only_with_the_commands_verdict_line(tmp_path):
    # calibrate: 0 calibrated, 1 NOT calibrated (a finding), 2 an error; a Python crash exits 1 without the verdict
    verdict = VERDICTS["calibrate"]
    finding = f"echo '{verdict} within tolerance 0.25'; exit 1"
    check_ran("p.md:1", "finding", ["sh", "-c", finding], tmp_path, dict(os.environ), [], verdict)
    for script, status in [("echo Traceback; exit 1", 1), (f"echo '{verdict}'; exit 2", 2)]:
        with pytest.raises(DocCommandFailed, match=f"p.md:1: `crash` exited {status}"):
            check_ran("p.md:1", "crash", ["sh", "-c", script], tmp_path, dict(os.environ), [], verdict)
    with pytest.raises(DocCommandFailed, match="p.md:1: `finding` exited 1"):  # no verdict expected: 1 fails
        check_ran("p.md:1", "finding", ["sh", "-c", finding], tmp_path, dict(os.environ), [])
