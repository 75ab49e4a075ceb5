"""The conversion table: canonical tensor names <-> framework variables, derived from the plan.

One declarative row per canonical tensor. Both directions read the same row (the layout's inverse
is derived in :mod:`resnet_core.layouts`), so loading and saving cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputTypeError, ResNetCoreError
from .layouts import Layout
from .plan import Param, Plan
from .tensor_roles import CANONICAL_SUFFIX, KERAS_VARIABLE, ROLE_OF_KERAS_VARIABLE  # noqa: F401 - declared there

# Keras layer names may contain neither '.' (the torch engine rejects it) nor '/': each canonical
# module's '.' becomes '_'. Canonical module names hold no '_' but SKNet's two below, so the rule is inverted exactly.
_KERAS_NAME_RULE = {".": "_"}
_TO_KERAS = str.maketrans(_KERAS_NAME_RULE)
_FROM_KERAS = str.maketrans({keras: canonical for canonical, keras in _KERAS_NAME_RULE.items()})
# The module name parts that hold a '_' of their own (timm's SKNet attention), restored after the rule above.
_UNDERSCORED = {part.replace("_", "."): part for part in ("fc_reduce", "fc_select")}


def keras_layer_name(module: str) -> str:
    """The Keras layer name of a canonical module, e.g. ``layer1.0.conv1`` -> ``layer1_0_conv1``."""
    return module.translate(_TO_KERAS)


def canonical_module(layer: str) -> str:
    """The inverse of :func:`keras_layer_name`."""
    parts = layer.translate(_FROM_KERAS).split(".")
    for i in range(len(parts) - 1):  # e.g. attn.fc.reduce -> attn.fc_reduce
        pair = f"{parts[i]}.{parts[i + 1]}"
        if pair in _UNDERSCORED:
            parts[i:i + 2] = [_UNDERSCORED[pair], ""]
    return ".".join(p for p in parts if p)


def canonical_name(layer: str, variable: str) -> str:
    """The canonical tensor of a Keras layer's variable: (``layer1_0_bn1``, ``gamma``) -> ``layer1.0.bn1.weight``."""
    return f"{canonical_module(layer)}.{CANONICAL_SUFFIX[ROLE_OF_KERAS_VARIABLE[variable]]}"


@dataclass(frozen=True)
class KerasRow:
    canonical: str
    layer: str
    variable: str
    layout: Layout
    shape: tuple[int, ...]  # canonical shape

    @property
    def path(self) -> str:
        """Keras 3 variable path, as ``model.save_weights`` and ``variable.path`` spell it."""
        return f"{self.layer}/{self.variable}"


def keras_table(plan: Plan) -> tuple[KerasRow, ...]:
    return tuple(_keras_row(p) for p in plan.params)


def _keras_row(p: Param) -> KerasRow:
    return KerasRow(p.name, keras_layer_name(p.module), KERAS_VARIABLE[p.role], p.layout, p.shape)


class WeightsMismatchError(ResNetCoreError, ValueError):
    """Weights do not fit a model; lists every missing, unexpected and mis-shaped key at once."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple, tuple]],
                 context: str = ""):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_clip(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_clip(unexpected)}")
        if mismatched:
            shown = ", ".join(f"{k}: expected {tuple(e)}, got {tuple(g)}" for k, e, g in mismatched[:20])
            more = f" (+{len(mismatched) - 20} more)" if len(mismatched) > 20 else ""
            parts.append(f"shape mismatch in {len(mismatched)} key(s): {shown}{more}")
        where = f" for {context}" if context else ""
        super().__init__(f"Weights do not fit the model{where}: " + "; ".join(parts))


def _clip(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_weights(plan: Plan, weights: Mapping[str, Any], strict: bool = True) -> list[str]:
    """Validate ``weights`` against the plan; return the canonical names to load.

    Shape mismatches always raise. With ``strict``, missing and unexpected keys raise too, all in
    one error. Non-float tensors are refused: they cannot be weights of this network.
    """
    expected = plan.param_index
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    mismatched = []
    for name, p in expected.items():
        if name in weights:
            shape = tuple(np.shape(weights[name]))
            if shape != p.shape:
                mismatched.append((name, p.shape, shape))
    if mismatched or (strict and (missing or unexpected)):
        raise WeightsMismatchError(missing if strict else [], unexpected if strict else [], mismatched,
                                   context=plan.spec.name)
    for name in expected:
        if name in weights:
            dtype = np.asarray(weights[name]).dtype if not hasattr(weights[name], "dtype") else weights[name].dtype
            if not _is_float_dtype(dtype):
                raise InputTypeError(f"Weight {name!r} has dtype {dtype}; expected a floating-point tensor")
    return [name for name in expected if name in weights]


def _is_float_dtype(dtype: object) -> bool:
    text = str(dtype).replace("torch.", "")
    return text in ("float16", "float32", "float64", "bfloat16") or getattr(dtype, "kind", "") == "f"
