"""The error of spec inference, apart so that the per-block-type readers raise it without importing the
inference that imports them."""

from __future__ import annotations

from ..errors import ResNetCoreError


class InferenceError(ResNetCoreError, ValueError):
    """The tensors do not determine one spec."""


InferenceError.__module__ = "resnet_core.io.infer"  # its public home (re-exported there)
