"""Our Keras model holding given tensors, for the writers that need Keras itself (``.keras`` files, and
``.weights.h5`` through ``save_weights`` where Keras's private layout was not verified)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..plan import make_plan
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .formats import TensorInfo


def keras_model(spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
                 progress: Callable[[int], None]) -> Any:
    """Our Keras model holding the tensors, built in their dtype (needs Keras in the process)."""
    from ..backends import load_adapter

    dtypes = sorted({info.dtype.name for info in tensors.values()})
    if len(dtypes) > 1:
        raise InputError(f"A Keras model holds one dtype, but these weights mix {', '.join(dtypes)}; "
                         "pass --dtype to cast them")
    weights = {}
    for name in tensors:
        weights[name] = get(name)
        progress(weights[name].nbytes)
    return load_adapter("keras").build(make_plan(spec), weights=weights, dtype=dtypes[0] if dtypes else "float32")


def save_weights_through_keras(path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo],
                               get: Callable[[str], np.ndarray], progress: Callable[[int], None],
                               info: WeightsInfo | None = None) -> None:
    """``model.save_weights`` of Keras itself: the writer for Keras versions whose layout was not verified."""
    model = keras_model(spec, tensors, get, progress)
    with without_tensorflow_probe():
        model.save_weights(path)


@contextlib.contextmanager
def without_tensorflow_probe() -> Iterator[None]:
    """Keep ``model.save`` from importing TensorFlow on the jax and torch engines.

    Keras's serializer imports TensorFlow, when installed, only to ask whether objects are TF types;
    while TF is not loaded, none can be. The import costs seconds, and TF loaded beside torch's
    triton crashes the process (a segfault importing triton after TF). Keras-private, so best effort.
    """
    lazy = getattr(sys.modules.get("keras.src.utils.module_utils"), "tensorflow", None)
    if "tensorflow" in sys.modules or lazy is None or getattr(lazy, "_available", True) is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        if getattr(lazy, "module", None) is None:
            lazy._available = None
