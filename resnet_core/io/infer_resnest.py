"""What ResNeSt weights show of their blocks (split attention under ``conv2``: ``conv2.conv``, ``conv2.fc1``,
``conv2.fc2``), for spec inference from tensor names and shapes (:mod:`resnet_core.io.infer`).

The radix and the cardinality follow from the shapes; the avd pools hold no tensors, so weights do not show
them: inference assumes what every ResNeSt preset (timm's) has, ``avd=True, avd_first=False``, unless a preset
matches; a Keras model's layers settle them (:mod:`resnet_core.io.keras_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..spec import ResNetSpec
from ..spec_parts import ResNeSt

Shapes = Mapping[str, tuple[int, ...]]
ASSUMED = ResNeSt(avd=True)  # the avd choice of timm's ResNeSt presets, for weights that cannot show it
AVD_CHOICES = ((True, False), (True, True), (False, False))  # (avd, avd_first), the assumed choice first


def is_resnest_stage(shapes: Shapes, stage: int) -> bool:
    return f"layer{stage}.0.conv2.conv.weight" in shapes


def main_widths(shapes: Shapes, prefix: str) -> tuple[int, int, int] | None:
    """conv1's, each split's and conv3's widths of the block at ``prefix`` (None: a tensor is missing)."""
    names = [f"{prefix}.conv1.weight", f"{prefix}.conv2.conv.weight", f"{prefix}.conv2.fc1.weight",
             f"{prefix}.conv2.fc2.weight", f"{prefix}.conv3.weight"]
    if not all(n in shapes and len(shapes[n]) == 4 for n in names):
        return None
    conv1, conv, fc1, fc2, conv3 = (shapes[n] for n in names)
    groups = max(1, fc1[0] // max(1, fc2[1]))  # fc2 takes fc1's output per group
    width = fc1[1] * groups  # fc1 takes one split's width per group
    return conv1[0], width, conv3[0]


def block_spec(shapes: Shapes, stage: int) -> ResNeSt:
    """The sub-spec the first block of ``stage`` shows: its radix and cardinality; avd assumed (see above)."""
    prefix = f"layer{stage}.0"
    fc1, fc2 = shapes[f"{prefix}.conv2.fc1.weight"], shapes[f"{prefix}.conv2.fc2.weight"]
    groups = max(1, fc1[0] // max(1, fc2[1]))
    width = fc1[1] * groups
    radix = max(1, shapes[f"{prefix}.conv2.conv.weight"][0] // max(1, width))
    return dataclasses.replace(ASSUMED, groups=groups, radix=radix)


def avd_changes(spec: ResNetSpec) -> list[dict[str, Any]]:
    """The avd choices to try for a ResNeSt spec's graph (Keras recovery): one block_spec change each."""
    sub = spec.block_spec
    if not isinstance(sub, ResNeSt):
        return []
    return [{"block_spec": dataclasses.replace(sub, avd=avd, avd_first=first)} for avd, first in AVD_CHOICES]
