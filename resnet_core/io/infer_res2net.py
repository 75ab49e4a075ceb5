"""Res2Net's spec fields read off tensor names and shapes (``layerN.i.convs.K.weight``): for :mod:`.infer`.

A Bottle2neck has no conv2; its splits' 3x3 convs tell the split width (their outputs) and the cardinality
(their inputs per group), conv1 over the split width the scale, conv3 the stage's planes.
"""

from __future__ import annotations

from typing import Any

from ..spec import Res2Net
from ..widths import EXPANSION, stage_planes, width_per_group_fitting
from .infer_errors import InferenceError

Shapes = dict[str, tuple[int, ...]]


def fields(shapes: Shapes, layers: list[int]) -> dict[str, Any]:
    """The Res2Net sub-spec and width fields, and ``stages`` (each stage's type and block widths); empty when the
    tensors hold no Res2Net splits. Raises (a ``ValueError``) when they hold some, but not a Res2Net's."""
    if "layer1.0.convs.0.weight" not in shapes:
        return {}
    kinds: set[tuple[int, int]] = set()
    stages = []
    for s, depth in enumerate(layers, 1):
        widths = []
        for i in range(depth):
            p = f"layer{s}.{i}."
            split = shapes.get(f"{p}convs.0.weight")
            if split is None or f"{p}conv3.weight" not in shapes:
                raise _error(f"no tensor {p}convs.0.weight or {p}conv3.weight, which every Res2Net block has")
            wide = shapes[f"{p}conv1.weight"][0]
            kinds.add((wide // split[0], split[0] // max(1, split[1])))
            widths.append((wide, wide, shapes[f"{p}conv3.weight"][0]))
        stages.append(("res2net", widths))
    if len(kinds) > 1:
        raise _error(f"Res2Net blocks of different (scale, cardinality) {sorted(kinds)}: the sub-spec has one")
    scale, groups = kinds.pop()
    planes = tuple(blocks[0][-1] // EXPANSION["res2net"] for _, blocks in stages)
    per_group = width_per_group_fitting([(p, blocks[0][1] // scale) for p, (_, blocks) in
                                         zip(planes, stages, strict=True)], groups)
    if per_group is None:
        raise _error(f"Res2Net split widths {[b[0][1] // scale for _, b in stages]} follow no width_per_group")
    return {"block_spec": Res2Net(groups=groups, width_per_group=per_group, scale=scale), "groups": groups,
            "base_planes": planes[0], "planes": None if planes == stage_planes(planes[0], len(planes)) else planes,
            "stages": stages}


def _error(message: str) -> Exception:
    return InferenceError(message)



