"""Keras's layout of a ``.weights.h5`` file, derived from the Keras adapter's own layer list.

``model.save_weights`` stores each layer at ``layers/<snake_case class>[_N]/vars/<i>``, numbered in
``model.layers`` order, which Keras derives from the graph (depth from the output, then traversal
order). :func:`keras_layout` reproduces that order from :func:`resnet_core.keras_graph.keras_graph`,
the very layer list the Keras adapter instantiates. This copies private Keras behaviour, so it is
trusted only for the Keras versions it was verified on (:data:`VERIFIED_KERAS`); the tests check it
against real models and files on every engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

from ..keras_graph import KerasLayer, keras_graph
from ..mapping import keras_table
from ..plan import Plan

# Keras releases (major.minor) whose save_weights layout this module was checked against.
VERIFIED_KERAS = ("3.15",)


def installed_keras() -> str | None:
    """The installed Keras version, without importing Keras (None when it is not installed)."""
    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None


def layout_verified(version: str | None) -> bool:
    """Whether files laid out by :func:`keras_layout` are what ``save_weights`` of Keras ``version`` writes.
    Without Keras there is nothing to differ from: the layout is the verified one."""
    return version is None or ".".join(version.split(".")[:2]) in VERIFIED_KERAS


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: how Keras names a layer's group in a weights file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass(frozen=True)
class StoredLayer:
    """One layer of the Keras model as a weights file stores it."""

    name: str
    cls: str  # Keras class name
    inputs: tuple[str, ...]
    variables: tuple[str, ...]
    group: str  # h5 path, e.g. "layers/conv2d_3"


def _ordered(layers: dict[str, KerasLayer], output: str) -> list[str]:
    """model.layers order, as keras.src.ops.function.map_graph computes it."""
    index: dict[str, int] = {}
    post: list[str] = []  # nodes from inputs to output (DFS post-order)
    finished: set[str] = set()
    index[output] = 0
    stack = [(output, iter(layers[output].inputs))]
    while stack:
        node, pending = stack[-1]
        parent = next(pending, None)
        if parent is None:
            stack.pop()
            finished.add(node)
            post.append(node)
        elif parent not in finished:
            index.setdefault(parent, len(index))
            stack.append((parent, iter(layers[parent].inputs)))
    depth: dict[str, int] = {}
    for node in reversed(post):
        d = depth.setdefault(node, 0)
        for parent in layers[node].inputs:
            depth[parent] = max(d + 1, depth.get(parent, 0))
    return sorted(post, key=lambda n: (-depth[n], index[n]))


def keras_layout(plan: Plan) -> list[StoredLayer]:
    """Every layer of the Keras model of ``plan`` in ``model.layers`` order, with its h5 group.

    The layers are the Keras adapter's own (:func:`resnet_core.keras_graph.keras_graph`); only Keras's
    ordering and group naming are reproduced here.
    """
    graph, output = keras_graph(plan)
    layers = {layer.name: layer for layer in graph}
    counts: dict[str, int] = {}
    out = []
    for name in _ordered(layers, output):
        layer = layers[name]
        snake = snake_case(layer.cls)
        n = counts[snake] = counts.get(snake, -1) + 1
        out.append(StoredLayer(layer.name, layer.cls, layer.inputs, layer.variables,
                               f"layers/{snake}" + (f"_{n}" if n else "")))
    # The table and the graph must agree on every weighted layer, or the file would be wrong.
    table: dict[str, list[str]] = {}
    for row in keras_table(plan):
        table.setdefault(row.layer, []).append(row.variable)
    weighted = {layer.name: list(layer.variables) for layer in out if layer.variables}
    if weighted != table:  # pragma: no cover - guards the graph and the conversion table against drifting apart
        raise NotImplementedError(
            "The Keras weights layout and the conversion table disagree for this plan: "
            f"only in the layout {sorted(set(weighted) - set(table))}, "
            f"only in the table {sorted(set(table) - set(weighted))}")
    return out
