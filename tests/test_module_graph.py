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


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (packages' ``__init__`` re-exports left out)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
                targets = [next((c for c in (f"{module}.{a.name}", module) if c in modules), "") for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            deps |= {t for t in targets if t in modules and t != name and modules[t].name != "__init__.py"}
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


def test_io_reads_peer_namings_without_importing_a_peer():
    """Weight files in transformers' or keras.applications' naming are read through name_tables, not the peers."""
    graph = import_graph()
    io = {m: sorted(d for d in deps if d.startswith("resnet_core.peers")) for m, deps in graph.items()
          if m.startswith("resnet_core.io.")}
    assert {m: deps for m, deps in io.items() if deps} == {}
    assert "resnet_core.name_tables" in graph["resnet_core.io.formats"] | graph["resnet_core.io.keras_h5"]
