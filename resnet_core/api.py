"""The public entry points: build a model, read and write its canonical weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .backends import adapter_for, load_adapter
from .plan import make_plan
from .presets import get_spec
from .selection import get_backend
from .spec import ResNetSpec


def build(spec: str | ResNetSpec = "resnet50", backend: str | None = None, dtype: str | None = None,
          **overrides: Any) -> Any:
    """A model of ``spec`` (a preset name or a spec) for ``backend``.

    ``overrides`` replace spec fields, e.g. ``build("resnet50", num_classes=10)``. The torch backend
    returns a ``torch.nn.Module`` taking NCHW input; keras returns a ``keras.Model`` taking NHWC.
    ``dtype`` ("bfloat16", "float16") builds the whole model in that precision (see ``resnet_core.precision``).
    """
    resolved = get_spec(spec)
    if overrides:
        resolved = resolved.replace(**overrides)
    if dtype is not None:
        from .precision import build_in_dtype

        return build_in_dtype(make_plan(resolved), get_backend(backend), dtype)
    return load_adapter(get_backend(backend)).build(make_plan(resolved))


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
    """The spec a resnet_core model was built from."""
    adapter_for(model)
    return model.spec
