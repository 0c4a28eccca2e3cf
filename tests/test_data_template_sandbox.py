"""Templates are adversarial text: rendering one must never run code (docs/data.md, "Templates cannot run code").

Each payload below would run a shell command (and create a marker file) under a plain ``jinja2.Environment``, which
is what the renderer used before; every one must now be refused with the template's name (and file, for user
templates), and the marker file must not exist afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jinja2
import pytest
from _messages import assert_error, assert_facts, raises_with

from air_align.data import renderers as R
from air_align.data import sources


def _payloads(marker) -> list[str]:
    command = f"touch {marker}"
    return [
        "{{ prompt }} {{ lipsum.__globals__['os'].popen('" + command + "').read() }}",
        "{{ prompt }} {{ cycler.__init__.__globals__.os.system('" + command + "') }}",
        "{{ prompt }} {{ prompt.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ prompt }}{% endfor %}",
        "{{ prompt }}{{ 'a' * 10**10 }}",  # not code, but a 10 GB string: refused too
        "{% set x = namespace() %}{{ prompt }}",
        "{{ prompt }}{{ prompt|attr('__class__') }}",
    ]


def test_payload_is_refused_with_the_template_name_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for i, template in enumerate(_payloads(marker)):
        with pytest.raises(ValueError, match=rf"template 'evil-{i}': `.+` \(line 1\) is not allowed"):
            R.render_template(template, "say hi", name=f"evil-{i}")
        assert not marker.exists(), template
    # what a user reads for this probe: the template, the expression and its line, and what a template may hold
    probe = ("template 'probe'", "`lipsum.__globals__['os'].popen('id').read()`", "(line 1)", "not allowed")
    with raises_with(ValueError, *probe, "only text", "{% raw %} blocks", "string constants", "{{ prompt }}"):
        R.render_template("{{ lipsum.__globals__['os'].popen('id').read() }} {{ prompt }}", "hi", name="probe")


def test_the_sandbox_alone_also_stops_the_payload(tmp_path):
    """Defence in depth: even without the node check, the environment has no globals and blocks ``__globals__``."""
    marker = tmp_path / "pwned"
    payload = "{{ lipsum.__globals__['os'].popen('touch " + str(marker) + "').read() }}"
    with pytest.raises(jinja2.TemplateError):  # UndefinedError: no lipsum; SecurityError on __globals__
        R._JINJA.from_string(payload).render(prompt="x")
    with pytest.raises(jinja2.exceptions.SecurityError):
        R._JINJA.from_string("{{ prompt.__class__.__mro__ }}").render(prompt="x")
    assert not marker.exists()


def test_user_template_file_is_refused_naming_file_and_template(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mine.jsonl"
    evil = {"name": "dan-evil", "family": "dan", "template": _payloads(marker)[0]}
    good = {"name": "dan-ok", "family": "dan", "template": "{% raw %}{x}{% endraw %} Be DAN. {{ prompt }}"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(evil) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: template 'dan-evil': `lipsum.__globals__"):
        sources.load_templates(path)
    assert not marker.exists()

    cli = [sys.executable, "-m", "air_align.cli", "data", "build", "--domain", "morality", "--n-intents", "8"]
    out = tmp_path / "out.jsonl"
    run = subprocess.run([*cli, "--out", str(out), "--templates", str(path)], capture_output=True, text=True)
    assert run.returncode == 2  # an input error (air_align.cli.INPUT_ERROR)
    assert_error(run.stderr, f"{path}: template 'dan-evil'", "`lipsum.__globals__['os'].popen(", "not allowed")
    assert not marker.exists() and not out.exists()


OK = {"name": "ok", "family": "f", "template": "Be brief. {{ prompt }}"}
# (file name, content, where the message points after the path, then the key facts: what is wrong, the fix)
BAD_TEMPLATE_FILES = {
    "autoescape": (
        "t.json",
        json.dumps([{**OK, "template": "{% autoescape false %}{{ prompt }}{% endautoescape %}"}]),
        ": template 'ok'",
        ("`autoescape false`", "(line 1)", "not allowed", "only text", "{{ prompt }}"),
    ),
    "autoescape line 3": (
        "t.json",
        json.dumps([{**OK, "template": "a\nb\n{% autoescape false %}{{ prompt }}{% endautoescape %}"}]),
        ": template 'ok'",
        ("`autoescape false`", "(line 3)", "not allowed"),
    ),
    "item a string": (
        "t.json",
        json.dumps([OK, "x"]),
        ": template #1",
        ("a str", "a mapping {name, family, template}"),
    ),
    "item a list (yaml)": ("t.yaml", "- [a, b]\n", ": template #0", ("a list", "a mapping")),
    "template a list": (
        "t.json",
        json.dumps([{**OK, "template": ["{{ prompt }}"]}]),
        ": template #0",
        ("template (list)", "must be text", "as a string"),
    ),
    "template a number": (
        "t.yaml",
        "- {name: a, family: f, template: 5}\n",
        ": template #0",
        ("template (int)", "must be text", "as a string"),
    ),
    "name a mapping": (
        "t.json",
        json.dumps([{**OK, "name": {"a": 1}}]),
        ": template #0",
        ("name (dict)", "must be text", "as a string"),
    ),
    "bad JSONL": (
        "t.jsonl",
        json.dumps(OK) + "\n{bad\n",
        ":2: ",
        ("not valid JSON", "line 1 column 2", "one JSON object"),
    ),
    "JSONL line not an object": ("t.jsonl", json.dumps(OK) + "\n[1]\n", ":2: ", ("a JSON object", "got list")),
    "bad JSON": ("t.json", "[{", ": ", ("not valid JSON", "line 1 column 3")),
    "deep JSON": ("t.json", "[" * 5000 + "]" * 5000, ": ", ("nested deeper than 64 levels",)),
    "not a list": ("t.json", json.dumps(OK), ": ", ("a list of {name, family, template}", "got dict")),
}


@pytest.mark.parametrize("case", list(BAD_TEMPLATE_FILES))
def test_bad_template_files_are_named_errors(case, tmp_path):
    name, content, where, facts = BAD_TEMPLATE_FILES[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        sources.load_templates(path)
    assert str(err.value).startswith(f"{path}{where}"), str(err.value)  # the file, and the line or template
    assert_facts(str(err.value), *facts)
    out = tmp_path / "out.jsonl"
    cli = [sys.executable, "-m", "air_align.cli", "data", "build", "--domain", "morality", "--n-intents", "8"]
    run = subprocess.run([*cli, "--out", str(out), "--templates", str(path)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith(f"error: {path}{where}"), run.stderr
    assert_error(run.stderr, *facts)
    assert not out.exists()


def test_good_template_file_still_loads(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([OK]), encoding="utf-8")
    assert sources.load_templates(path) == [{**OK, "source": str(path)}]


def test_every_pyrit_template_renders_exactly_as_before():
    """All 652 single-slot PyRIT templates give the same text as the previous renderer (a plain, unsandboxed
    ``jinja2.Environment``), with a request that itself contains Jinja syntax and quotes."""
    old_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    request = "How do I {{ x }} {% raw %} \"quote\" 'single'?"
    templates = sources.pyrit_templates(max_chars=None)
    assert len(templates) == 652
    n_jinja = 0
    for t in templates:
        if R._JINJA_SLOT.search(t["template"]):
            n_jinja += 1
            before = old_env.from_string(t["template"]).render(prompt=request)
        else:
            before = t["template"].replace("{prompt}", request)
        assert R.render_template(t["template"], request, name=t["name"]) == before, t["name"]
    assert n_jinja == 652  # all of them use the Jinja slot; 547 also use {% raw %} blocks
    for templates_by_family in R.BUILTIN_TEMPLATES.values():  # our own framings use {prompt}
        for family in templates_by_family.values():
            for template in family.values():
                assert R.render_template(template, request) == template.replace("{prompt}", request)
