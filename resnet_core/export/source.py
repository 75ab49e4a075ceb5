"""What to export: one function turns any source into a spec and canonical weights.

Kept in one place so a resolver of named sources (hub names, local folders) can replace it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputTypeError
from ..presets import get_spec
from ..spec import ResNetSpec


class Source(NamedTuple):
    spec: ResNetSpec
    weights: dict[str, np.ndarray]  # canonical names and layouts, float32
    note: str  # where the weights came from, for people


def _float32(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from ..parity.core import _as_float32

    return {k: _as_float32(v) for k, v in weights.items()}


def _live_model(value: Any) -> bool:
    return ("torch" in sys.modules or "keras" in sys.modules) and hasattr(value, "spec") and hasattr(value, "plan")


def resolve_source(source: Any, spec: str | ResNetSpec | None = None, seed: int = 0) -> Source:
    """A spec and float32 canonical weights from a model built by resnet_core, a ``(spec, weights)`` pair,
    a weights file (any format :func:`resnet_core.read_weights` reads, or canonical ``.npz``), or a preset
    name / ResNetSpec (non-trivial random weights, ``seed``)."""
    from ..io.api import resolve_spec

    if _live_model(source):
        from ..api import get_weights

        return Source(source.spec, _float32(get_weights(source)), f"a {type(source).__name__}")
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], Mapping):
        return Source(resolve_spec(source[0]), _float32(source[1]), "given weights")
    if isinstance(source, ResNetSpec) or (isinstance(source, str) and not os.path.exists(source)
                                          and not source.lower().endswith((".npz", ".pth", ".pt", ".safetensors",
                                                                           ".h5", ".keras"))):
        from ..random_weights import random_weights

        resolved = get_spec(source)
        return Source(resolved, random_weights(resolved, seed=seed), f"random weights (seed {seed})")
    if isinstance(source, (str, os.PathLike)):
        from ..parity.core import read_weights_file

        path = Path(source)
        resolved, weights, note = read_weights_file(path, resolve_spec(spec) if spec is not None else None)
        return Source(resolved, weights, note)
    raise InputTypeError(f"Cannot export {type(source).__name__}: expected a resnet_core model, a (spec, weights) "
                         "pair, a weights file or a preset name")
