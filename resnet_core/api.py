"""The public entry points: build a model, read and write its canonical weights."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .backends import adapter_for, load_adapter
from .plan import make_plan
from .presets import get_spec
from .selection import get_backend
from .spec import ResNetSpec


def build(spec: str | ResNetSpec = "resnet50", backend: str | None = None,
          weights: Mapping[str, Any] | str | os.PathLike | None = None, dtype: str | None = None,
          **overrides: Any) -> Any:
    """A model of ``spec`` (a preset name or a spec) for ``backend``.

    ``overrides`` replace spec fields, e.g. ``build("resnet50", num_classes=10)``. The torch backend
    returns a ``torch.nn.Module`` taking NCHW input; keras returns a ``keras.Model`` taking NHWC.
    ``weights`` (canonical tensors, or a weights file read for this spec) are loaded strictly, and the
    random initialisation they would overwrite is skipped. ``dtype`` ("bfloat16", "float16") builds the
    whole model in that precision (see ``resnet_core.precision``).
    """
    resolved = get_spec(spec)
    if overrides:
        resolved = resolved.replace(**overrides)
    if isinstance(weights, (str, os.PathLike)):
        from .io import read_weights

        weights = read_weights(weights, spec=resolved).weights
    if dtype is not None:
        from .precision import build_in_dtype

        model = build_in_dtype(make_plan(resolved), get_backend(backend), dtype)
        if weights is not None:
            set_weights(model, weights)
        return model
    return load_adapter(get_backend(backend)).build(make_plan(resolved), weights=weights)


def get_weights(model: Any) -> dict[str, np.ndarray]:
    """The canonical weights of ``model``: torchvision names, PyTorch layouts, numpy arrays."""
    return adapter_for(model).get_weights(model)


def set_weights(model: Any, weights: Mapping[str, Any], strict: bool = True) -> list[str]:
    """Load canonical ``weights`` into ``model``; return the names loaded.

    With ``strict``, one error lists every missing, unexpected and mis-shaped key. Shape mismatches
    raise even when not strict.
    """
    return adapter_for(model).set_weights(model, weights, strict=strict)


def spec_of(model: Any) -> ResNetSpec:
    """The spec a resnet_core model was built from; for a Keras model loaded by plain Keras, recovered
    from its layers."""
    return adapter_for(model).spec_of(model)


def register_keras_objects(only_if_imported: bool = False) -> None:
    """Register resnet-core's own Keras layers, so ``keras.saving.load_model`` finds them (safe mode on).

    Networks of built-in layers need none of this: their ``.keras`` files load in any Keras. Importing
    ``resnet_core`` after ``keras`` calls this; after ``import resnet_core; import keras``, call it yourself.
    ``only_if_imported`` does nothing unless Keras is already imported (``import resnet_core`` imports no framework).
    """
    if not only_if_imported:
        load_adapter("keras")  # the adapter's layers register themselves as it is imported
    elif "keras" in sys.modules:
        try:
            load_adapter("keras")
        except ImportError:  # a Keras the adapter cannot use (e.g. Keras 2): nothing to register
            pass
