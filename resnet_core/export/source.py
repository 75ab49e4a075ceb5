"""What to export: a model built by resnet_core, a ``(spec, weights)`` pair, or any source
:func:`resnet_core.sources.resolve` reads, as a spec and float32 canonical weights."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputTypeError
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo


class Source(NamedTuple):
    spec: ResNetSpec
    weights: dict[str, np.ndarray]  # canonical names and layouts, float32
    note: str  # where the weights came from, for people
    info: WeightsInfo | None = None  # what the weights were trained with, when their source records it


def _live_model(value: Any) -> bool:
    return ("torch" in sys.modules or "keras" in sys.modules) and hasattr(value, "spec") and hasattr(value, "plan")


def resolve_source(source: Any, spec: str | ResNetSpec | None = None, seed: int = 0) -> Source:
    """A spec and float32 canonical weights from a model built by resnet_core, a ``(spec, weights)`` pair, or
    any source :func:`resnet_core.sources.resolve` reads: a weights file (or canonical ``.npz``), a model
    folder, a hub name; an architecture (preset name, ResNetSpec, spec ``.json``) gets non-trivial random
    weights (``seed``)."""
    from ..sources import architecture, float32, resolve

    if _live_model(source):
        from ..api import get_weights

        return Source(source.spec, float32(get_weights(source)), f"a {type(source).__name__}",
                      getattr(source, "weights_info", None))
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], Mapping):
        return Source(architecture(source[0]), float32(source[1]), "given weights")
    if isinstance(source, (str, os.PathLike, ResNetSpec)):
        found = resolve(source, spec=spec)
        if found.weights is None:
            from ..random_weights import random_weights

            return Source(found.spec, random_weights(found.spec, seed=seed), f"random weights (seed {seed})")
        return Source(found.spec, float32(found.weights), found.origin, found.info)
    raise InputTypeError(f"Cannot export {type(source).__name__}: expected a resnet_core model, a (spec, weights) "
                         "pair, a weights file, a model folder, a hub name or a preset name")
