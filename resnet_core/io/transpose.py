"""Layout transposes for writing, in blocks: the cost that dominates writing ``.weights.h5``."""

from __future__ import annotations

import numpy as np

from ..layouts import Layout

BLOCK = 16  # output channels per copy: whole cache lines written, the source rows still in cache


def to_framework(layout: Layout, array: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
    """``layout.to_framework(array)`` as a C-contiguous array, the same bytes: a new one, or a view of the
    bytes ``buffer`` (uint8, at least ``array.nbytes`` long) starts with. A layout that moves nothing gives
    ``array`` itself when it is already contiguous.

    Conv and dense layouts move the output-channel axis, the slowest in PyTorch's layout, to the
    fastest; one numpy transpose then reads each element from another page. Copying a few output
    channels at a time is about twice as fast (four times for 1x1 convolutions).
    """
    if not layout.axes or array.ndim != len(layout.axes):
        return np.ascontiguousarray(layout.to_framework(array))
    shape = layout.framework_shape(array.shape)
    out = np.empty(shape, array.dtype) if buffer is None else \
        buffer[:array.nbytes].view(array.dtype).reshape(shape)
    if layout.axes[-1] != 0:
        np.copyto(out, layout.to_framework(array))
        return out
    for start in range(0, array.shape[0], BLOCK):
        out[..., start:start + BLOCK] = layout.to_framework(array[start:start + BLOCK])
    return out

