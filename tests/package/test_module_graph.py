"""The package's import graph, read from the source (every import, module-level or inside a function).

A cycle means two modules each need the other's pieces: the shared pieces belong in a third module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import resnet_core

ROOT = Path(resnet_core.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("resnet_core", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """The package's modules an import statement names."""
    if isinstance(node, ast.ImportFrom):
        base = package
        for _ in range(max(node.level - 1, 0)):
            base = base.rpartition(".")[0]
        module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
        return [next((c for c in (f"{module}.{a.name}", module) if c in modules), "") for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """The statements that run when the module is imported (``if TYPE_CHECKING:`` blocks left out)."""
    out: list[ast.AST] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending += node.orelse
            continue
        out.append(node)
        pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
    return out


def _packages(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``: the packages whose ``__init__`` runs before ``name`` is imported."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(module_level: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports.

    By default every import counts, wherever it stands, and packages' ``__init__`` re-exports are left
    out. With ``module_level``, only the imports that run when the module itself is imported count, and
    importing ``a.b.c`` counts as importing the packages ``a.b`` and ``a`` too (their ``__init__`` runs
    first): the graph Python executes at import time.
    """
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        nodes = _top_level(tree) if module_level else list(ast.walk(tree))
        inside = {*_packages(name), name}  # already initialising when this module runs
        deps = set()
        for node in nodes:
            for target in _targets(node, package, modules):
                if target not in modules or target == name:
                    continue
                if module_level:
                    deps |= {t for t in (*_packages(target), target) if t in modules and t not in inside}
                elif modules[target].name != "__init__.py":
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = 2
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n, [n]))), None)


def test_graph_reader_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    # timm_resnetv2 imports _timm at module level and _torch inside functions: both are seen
    assert {"resnet_core.peers._timm", "resnet_core.peers._torch"} <= graph["resnet_core.peers.timm_resnetv2"]


def test_no_import_cycles():
    assert _cycle(import_graph()) is None


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the package's units: each top-level module, and each subpackage as a whole."""
    unit = lambda module: ".".join(module.split(".")[:2])  # noqa: E731
    units: dict[str, set[str]] = {}
    for module, deps in graph.items():
        own = units.setdefault(unit(module), set())
        own.update(unit(d) for d in deps if unit(d) not in (unit(module), "resnet_core"))
    return units


def test_no_module_level_import_cycles():
    """What Python runs at import time, package ``__init__`` files included, has no cycle, between modules
    or between a subpackage and a module (``io`` <-> ``keras_spec`` was one): with a cycle, which module
    is imported first decides which one sees the other half initialised."""
    graph = import_graph(module_level=True)
    assert _cycle(graph) is None
    assert _cycle(unit_graph(graph)) is None


def test_unit_graph_finds_a_cycle_through_a_package():
    graph = {"resnet_core.io": {"resnet_core.io.api"}, "resnet_core.io.api": set(), "resnet_core.io.infer": set(),
             "resnet_core.io.h5": {"resnet_core.kspec"},
             "resnet_core.kspec": {"resnet_core.io", "resnet_core.io.infer"}}
    assert _cycle(graph) is None  # module by module there is none
    assert _cycle(unit_graph(graph)) == ["resnet_core.io", "resnet_core.kspec", "resnet_core.io"]


def test_module_level_graph_counts_package_inits():
    graph = import_graph(module_level=True)
    # peers.timm_resnetv2 imports _torch only inside functions: not at import time
    assert "resnet_core.peers._torch" not in graph["resnet_core.peers.timm_resnetv2"]
    assert "resnet_core.peers._timm" in graph["resnet_core.peers.timm_resnetv2"]
    # importing resnet_core.io.infer from outside io runs io's __init__ first; from inside, io is already running
    assert "resnet_core.io" in graph["resnet_core.sources.folder"] or "resnet_core.io" in graph["resnet_core.api"]
    assert "resnet_core.io" not in graph["resnet_core.io.api"]


def test_production_code_does_not_import_testing():
    """``testing.py`` is for tests and examples; the library's own helpers live in production modules."""
    graph = import_graph()
    assert sorted(m for m, deps in graph.items() if "resnet_core.testing" in deps) == []


def test_io_reads_peer_namings_without_importing_a_peer():
    """Weight files in transformers' or keras.applications' naming are read through name_tables, not the peers."""
    graph = import_graph()
    io = {m: sorted(d for d in deps if d.startswith("resnet_core.peers")) for m, deps in graph.items()
          if m.startswith("resnet_core.io.")}
    assert {m: deps for m, deps in io.items() if deps} == {}
    assert "resnet_core.name_tables" in graph["resnet_core.io.formats"] | graph["resnet_core.io.keras_h5"]


def test_a_checkout_adds_backends_alone_to_the_package():
    """Started in a source checkout's root, ``resnet_core.backends`` is the checkout's ``backends/`` folder
    (installed, it is a subpackage); no other top-level folder becomes ``resnet_core.<folder>``."""
    import subprocess
    import sys

    checkout = ROOT.parent
    code = ("import importlib.util as u, resnet_core.backends as b; print(b.__file__); "
            "print([n for n in ('tests', 'scripts', 'docs', 'benchmarks') if u.find_spec('resnet_core.' + n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"})
    backends, others = out.stdout.splitlines()
    assert Path(backends).parent in (checkout / "backends", ROOT / "backends")
    assert others == "[]"


def test_adapters_build_from_the_plan_they_are_given():
    """An adapter only turns plan entries into layers: it never lays out a spec again (``make_plan``)."""
    backends = ROOT.parent / "backends" if (ROOT.parent / "backends").is_dir() else ROOT / "backends"
    called = {path.name: sorted({node.id if isinstance(node, ast.Name) else node.attr
                                 for node in ast.walk(ast.parse(path.read_text()))
                                 if isinstance(node, (ast.Name, ast.Attribute))
                                 and (node.id if isinstance(node, ast.Name) else node.attr) == "make_plan"})
              for path in sorted(backends.glob("*.py"))}
    assert "torch_adapter.py" in called and "keras_adapter.py" in called
    assert {name: found for name, found in called.items() if found} == {}


# The layers, top down: a unit may import its own layer's units and lower layers' only
# (commands -> api/parity/export -> sources/io/peers -> plan -> spec).
LAYERS = (
    {"cli", "commands"},
    {"api", "parity", "export", "bench", "testing"},
    {"sources", "io", "peers", "finetune", "precision", "diagram", "table1", "trained_with", "preprocess",
     "backends", "fold"},
    {"plan", "mapping", "name_tables", "keras_graph", "random_weights", "tensor_roles", "arrays", "quiet",
     "keras_sknet"},
    {"spec", "presets", "pruned_widths", "widths", "layouts", "errors", "weights_info", "selection", "_source_tree",
     "spec_parts", "cpu_features", "spec_sknet", "drop_rates", "spec_blocks"},
)
# Upward imports allowed: none (save_pretrained, which builds models, lives in export beside the other writers).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def test_dependencies_point_one_way():
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    graph = unit_graph(import_graph())
    short = lambda unit: unit.removeprefix("resnet_core.")  # noqa: E731
    units = {short(u) for u in graph} - {"resnet_core"}
    assert units <= set(layer), f"units in no layer: {sorted(units - set(layer))}"
    upward = {(short(a), short(b)) for a, deps in graph.items() if a != "resnet_core"
              for b in deps if layer[short(b)] < layer[short(a)]}
    assert upward <= KNOWN_UPWARD
