"""Tensor layouts: each transpose is declared once; its inverse is derived, never written by hand."""

from __future__ import annotations

import enum

import numpy as np


class Layout(enum.Enum):
    """How a canonical (PyTorch-layout) tensor is laid out in a channels-last framework."""

    SAME = ()
    # canonical conv kernel (out, in/groups, kh, kw) -> Keras (kh, kw, in/groups, out)
    CONV = (2, 3, 1, 0)
    # canonical 1D conv kernel (out, in, k) -> Keras Conv1D (k, in, out)
    CONV1D = (2, 1, 0)
    # canonical dense weight (out, in) -> Keras (in, out)
    DENSE = (1, 0)
    # canonical images and activations (N, C, H, W) -> channels last (N, H, W, C)
    IMAGES = (0, 2, 3, 1)

    @property
    def axes(self) -> tuple[int, ...]:
        return self.value

    @property
    def inverse_axes(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.argsort(self.value))

    def to_framework(self, array: np.ndarray) -> np.ndarray:
        """Canonical -> framework layout (a view when possible; values are never touched)."""
        return np.transpose(array, self.axes) if self.axes else array

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Framework -> canonical layout: the exact inverse of :meth:`to_framework`."""
        return np.transpose(array, self.inverse_axes) if self.axes else array

    def framework_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape[i] for i in self.axes) if self.axes else tuple(shape)

    def canonical_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The inverse of :meth:`framework_shape`."""
        return tuple(shape[i] for i in self.inverse_axes) if self.axes else tuple(shape)
