"""The import drawing: every module sits on a layer, imports run down (never up), the cost model and
the devices never import each other, and no modules import each other in a circle.

Layers, lowest first (docs/architecture.md, "Layers"):
base -> ir and hardware -> frontends and data -> cost model | device (side by side) -> planning ->
synth and studies -> cli. An import inside a function counts; one under `if TYPE_CHECKING:` does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASE, IR, FRONTENDS, COSTMODEL, DEVICE, PLANNING, SYNTH, CLI = range(8)
#: Each module (or package: all its modules) and its layer. A new module must be placed here.
LAYERS = {
    "autotune": BASE, "autotune.__main__": CLI, "autotune.errors": BASE, "autotune.fileio": BASE,
    "autotune.artefacts": BASE, "autotune.cluster": BASE,
    "autotune.graph": IR, "autotune.tables": IR, "autotune.ops": IR, "autotune.hardware": IR, "autotune.host": IR,
    "autotune.family": IR,
    "autotune.analytic": FRONTENDS, "autotune.zoo": FRONTENDS, "autotune.zoo_transformers": FRONTENDS,
    "autotune.loader": FRONTENDS, "autotune.converters": FRONTENDS, "autotune.onnx_nodes": FRONTENDS,
    "autotune.onnx_proto": FRONTENDS, "autotune.onnx_import": FRONTENDS, "autotune.onnx_patterns": FRONTENDS,
    "autotune.onnx_batch": FRONTENDS, "autotune.onnx_export": FRONTENDS, "autotune.onnx_standard": FRONTENDS,
    "autotune.dataset": FRONTENDS, "synth": FRONTENDS, "synth.generator": FRONTENDS,
    "autotune.costmodel": COSTMODEL, "autotune.features": COSTMODEL, "autotune.feature_cache": COSTMODEL,
    "autotune.calibration": COSTMODEL, "autotune.members": COSTMODEL, "autotune.probes": COSTMODEL,
    "autotune.boosters": COSTMODEL, "autotune.memory": COSTMODEL, "autotune.training": COSTMODEL,
    "autotune.universal": COSTMODEL, "autotune.adapt": COSTMODEL,
    "autotune.device": DEVICE, "autotune.simulator": DEVICE, "autotune.ort": DEVICE,
    "autotune.costs": PLANNING, "autotune.planner": PLANNING, "autotune.strategies": PLANNING,
    "autotune.refine": PLANNING, "autotune.evaluation": PLANNING,
    "autotune.study": SYNTH, "autotune.study_layers": FRONTENDS,
    "autotune.effects_study": SYNTH, "synth.*": SYNTH,
    "autotune.cli": CLI,
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in [*ROOT.glob("autotune/**/*.py"), *ROOT.glob("synth/**/*.py")]:
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
    """The layer of a module: its own entry, else its package's, else its top package's wildcard."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        if name in LAYERS and (k == len(parts) or name not in ("autotune", "synth")):
            return LAYERS[name]
        if f"{name}.*" in LAYERS and k < len(parts):
            return LAYERS[f"{name}.*"]
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


def test_the_check_sees_imports_inside_functions():
    """The drawing is not vacuous: the lazy import of the simulator in device.py is an edge."""
    assert "autotune.simulator" in GRAPH["autotune.device"]
    assert layer("synth.plan_labels") == SYNTH and layer("autotune.cli.commands") == CLI
