"""Layout transposes for writing, in blocks: the cost that dominates writing ``.weights.h5``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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


def fresh_in_framework_layout(items: Sequence[tuple[Layout, np.ndarray]]) -> list[np.ndarray]:
    """``to_framework`` of every ``(layout, array)``, each a new C-contiguous array (never an input, nor a view
    of one), copied in threads.

    numpy lets go of the GIL while it copies, so the copies, and the page faults of the fresh memory they
    fill, run on every core. Measured building resnet50 on 2 cores: 0.05-0.15 s in one thread (the page
    faults' cost varies with the kernel's state), 0.035-0.045 s in two.
    """
    def fresh(item: tuple[Layout, np.ndarray]) -> np.ndarray:
        layout, array = item
        out = to_framework(layout, array)
        return out if out is not array and out.flags.owndata else np.array(out)

    workers = min(4, os.cpu_count() or 1, len(items))
    if workers < 2:
        return [fresh(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fresh, items))
