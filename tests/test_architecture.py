"""The import drawing: every module sits on a layer, imports run down (never up), the cost model and
the devices never import each other, and no modules import each other in a circle.

Layers, lowest first (docs/architecture.md, "Layers"):
base -> ir -> hardware -> frontends and data -> cost model | device (side by side) -> planning ->
synth and studies -> cli, one subpackage of autotune/ each (base: the top-level modules). An import
inside a function counts; one under `if TYPE_CHECKING:` does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASE, IR, HARDWARE, FRONTENDS, COSTMODEL, DEVICE, PLANNING, SYNTH, CLI = range(9)
#: Each subpackage (all its modules) or top-level module and its layer. A new one must be placed here.
LAYERS = {
    "autotune": BASE, "autotune.errors": BASE, "autotune.fileio": BASE, "autotune.artefacts": BASE,
    "autotune.cluster": BASE,
    "autotune.ir": IR,
    "autotune.hardware": HARDWARE,
    "autotune.frontends": FRONTENDS, "autotune.data": FRONTENDS,
    "autotune.costmodel": COSTMODEL, "autotune.device": DEVICE,
    "autotune.planning": PLANNING,
    "autotune.synth": SYNTH, "autotune.studies": SYNTH,
    "autotune.cli": CLI, "autotune.__main__": CLI,
}
SUBPACKAGES = {name for name in LAYERS if name.count(".") == 1 and (ROOT / name.replace(".", "/")).is_dir()}


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.glob("autotune/**/*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its code (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                   ast.unparse(node.test) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in MODULES else mod)
    return {m for m in out if m in MODULES} - {name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(module: str) -> int:
    """The layer of a module: its subpackage's, or its own entry for a top-level module."""
    parts = module.split(".")
    name = ".".join(parts[:2])
    if name in LAYERS and (len(parts) <= 2 or name in SUBPACKAGES):
        return LAYERS[name]
    raise KeyError(module)


def test_every_module_has_a_layer():
    missing = []
    for m in MODULES:
        try:
            layer(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"place these in tests/test_architecture.py LAYERS: {missing}"


@pytest.mark.parametrize("importer", sorted(MODULES))
def test_imports_run_down_and_the_cost_model_and_devices_stay_apart(importer):
    up = []
    for target in sorted(GRAPH[importer]):
        a, b = layer(importer), layer(target)
        if b > a or {a, b} == {COSTMODEL, DEVICE}:
            up.append(f"{importer} (layer {a}) imports {target} (layer {b})")
    assert not up, up


def test_no_modules_import_each_other_in_a_circle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_the_check_sees_imports_inside_functions(tmp_path):
    """The drawing is not vacuous: an import inside a function is an edge, one for type checkers is not."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from autotune.cli import commands\n"
                   "def f():\n    from autotune.device import simulator\n")
    assert _imports("autotune.synth.m", src) == {"autotune.device.simulator"}
    assert "autotune.device.simulator" in GRAPH["autotune.device.base"]
    assert layer("autotune.synth.plan_labels") == SYNTH and layer("autotune.cli.commands") == CLI


#: Where a project import may sit inside a function: the command line and the package's front door
#: load what a command or a name needs on first use, so `autotune --help` and `import autotune` stay
#: light; the device seam loads the simulator only when a simulated part is measured, so the model
#: side never has it in memory (tests/test_features.py).
LAZY = ("autotune.cli", "autotune.__init__", "autotune.device.base")


def test_project_imports_sit_at_the_top_of_their_module():
    inside = []
    for name, path in MODULES.items():
        if name.startswith(LAZY) or path.name == "__init__.py" and name == "autotune":
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{name}.{fn.name}: from {node.module}" for node in ast.walk(fn)
                           if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autotune")]
    assert not inside, f"move these imports to the top of their module: {inside}"


def test_only_the_device_package_reaches_the_simulator():
    """Every simulated measurement goes through the Device interface (autotune/device/base.py)."""
    outside = sorted(m for m, targets in GRAPH.items()
                     if "autotune.device.simulator" in targets and not m.startswith("autotune.device."))
    assert not outside, f"these modules import the simulator; measure through autotune.device.base: {outside}"


#: What times a model on this CPU; only the device package calls them, everything else through OrtDevice.
ORT_TIMERS = {"time_model", "_time"}


def test_only_the_device_package_times_the_cpu():
    """Every CPU timing goes through the Device interface (OrtDevice), profiles of export folders too."""
    outside = sorted(f"{name}: {a.name}" for name, path in MODULES.items() if not name.startswith("autotune.device.")
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autotune.device")
                     for a in node.names if a.name in ORT_TIMERS)
    assert not outside, f"these modules time the CPU themselves; use autotune.device.ort.OrtDevice: {outside}"
