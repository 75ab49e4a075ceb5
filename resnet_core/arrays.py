"""Framework arrays <-> numpy, exactly: the one place bfloat16 (which numpy itself lacks) is handled.

A torch bfloat16 tensor becomes an ``ml_dtypes.bfloat16`` array through its bits (``.numpy()`` refuses
it, and widening to float32 would change the dtype a caller asked for). torch is imported only when
handed a torch tensor or asked for one, so this module stays framework-free.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

import numpy as np

from .errors import InputError, MissingDependencyError
from .layouts import Layout


def bfloat16() -> np.dtype:
    """numpy's bfloat16, from ml_dtypes (installed with the ``io`` extra, and by JAX and TensorFlow)."""
    try:
        return np.dtype(importlib.import_module("ml_dtypes").bfloat16)
    except ImportError as exc:  # pragma: no cover - installed with the io extra
        raise MissingDependencyError("bfloat16 tensors need the 'ml_dtypes' package: "
                                     "pip install 'resnet-core[io]'") from exc


def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor exists only if torch is loaded: nothing is imported
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value: Any) -> np.ndarray:
    """numpy from numpy, a torch tensor (requiring grad, on any device, bfloat16 kept bit for bit),
    or a TensorFlow / JAX / Keras array. Shares memory with a CPU tensor when it can."""
    if _is_torch_tensor(value):
        import torch

        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(bfloat16())
        return tensor.numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf tensors, Keras variables
        value = value.numpy()
    return np.asarray(value)


def to_torch(array: Any) -> Any:
    """A CPU torch tensor sharing ``array``'s memory when possible; bfloat16 through its bits."""
    import torch

    if _is_torch_tensor(array):
        return array
    array = np.ascontiguousarray(to_numpy(array))
    with warnings.catch_warnings():  # read-only memory maps: the tensor is never written
        warnings.simplefilter("ignore", UserWarning)
        if array.dtype.name == "bfloat16":
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)


def relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    """max |output - reference| / max |reference|: the figure every parity claim here uses."""
    output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    if output.shape != reference.shape:
        raise InputError(f"Shapes differ: output {output.shape} vs reference {reference.shape}")
    scale = np.abs(reference).max()
    return float(np.abs(output - reference).max() / (scale if scale > 0 else 1.0))


def to_channels_last(images: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC (contiguous), by :attr:`Layout.IMAGES`; other ranks are returned as they are."""
    return np.ascontiguousarray(Layout.IMAGES.to_framework(images)) if np.ndim(images) == 4 else images


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW (contiguous): the inverse of :func:`to_channels_last`."""
    return np.ascontiguousarray(Layout.IMAGES.to_canonical(images)) if np.ndim(images) == 4 else images
