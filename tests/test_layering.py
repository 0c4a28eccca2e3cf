"""The package's layers hold: no module imports a module of a higher layer, the lab and the real tier do not import
each other, and there is no import cycle. Imports are read with ``ast`` from every module, including the imports
inside functions, so a lazy import cannot hide an upward edge."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "air_align"

# Lowest first. ``models`` sits above ``data`` because it finds the SmolLM2 registry package with
# ``data.sources.package_dir`` (the one place that knows the registry packages and how to install them).
LAYERS = (
    (
        "air_align.answers",
        "air_align.configs",
        "air_align.extras",
        "air_align.files",
        "air_align.objectives",
        "air_align.safe_yaml",
        "air_align.theory",
        "air_align.threads",
        "air_align.version",
    ),
    ("air_align.data",),
    ("air_align.models",),
    ("air_align.rewards",),
    ("air_align.evaluation",),
    ("air_align.training",),
    ("air_align.calibration", "air_align.audit"),  # features over the library, each in its own package
    ("air_align.lab", "air_align.real"),  # siblings: neither imports the other
    ("air_align.cli", "air_align"),  # the command line, and the root's re-exports (the module itself only)
)
ROOT = "air_align"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def area(module: str) -> str:
    """The entry of ``LAYERS`` a module belongs to (the longest prefix)."""
    names = [name for layer in LAYERS for name in layer]
    return max((n for n in names if module == n or (n != ROOT and module.startswith(n + "."))), key=len)


def test_command_line_is_one_package_on_top():
    # argument parsing lives in air_align.cli only: a command-line module elsewhere would sit in its area's layer
    # (no exemption), and nothing below the command line imports it
    modules = graph()
    stray = [m for m in modules if not m.startswith("air_align.cli") and ("cli" in m.split(".") or m.endswith("_cli"))]
    assert stray == []
    assert {layer(m) for m in modules if m.startswith("air_align.cli")} == {len(LAYERS) - 1}
    users = sorted(m for m, deps in modules.items() if any(d.startswith("air_align.cli") for d in deps))
    assert all(m.startswith("air_align.cli") for m in users), users


def layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if area(module) in names)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in the file (``from a import b`` counts ``a.b`` if a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "air_align"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "air_align":
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            out |= subs
            if len(subs) < len(node.names):  # names that are not modules come from node.module itself
                out.add(node.module)
    return out


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) - {module_name(p)} for p in paths}


def test_layer_table_covers_every_module():
    for module in graph():
        layer(module)  # raises StopIteration / ValueError for a module outside the table


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in graph().items()
        for d in sorted(deps)
        if layer(d) > layer(m)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_lab_and_real_do_not_import_each_other():
    crossing = [
        f"{m} imports {d}"
        for m, deps in graph().items()
        for d in deps
        if {area(m), area(d)} == {"air_align.lab", "air_align.real"}
    ]
    assert not crossing, crossing


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(edges.get(module, ())):
            if state.get(dep) == 1:
                return path + [module, dep]
            if dep not in state:
                cycle = visit(dep, path + [module])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]) :])


def test_the_checker_sees_an_upward_import(tmp_path):
    # the checker itself: an evaluation module importing the lab is flagged, a lazy import included
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from air_align.lab import world\n")
    found = imports(source, {"air_align.lab.world"})
    assert found == {"air_align.lab.world"} and layer("air_align.lab.world") > layer("air_align.evaluation.metrics")
