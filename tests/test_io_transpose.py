"""The blocked layout transpose gives exactly the bytes of the plain one, for every layout, dtype and size."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_core.io.transpose import BLOCK, to_framework
from resnet_core.layouts import Layout

SHAPES = {Layout.CONV: [(1, 1, 1, 1), (BLOCK - 1, 3, 3, 3), (BLOCK + 5, 7, 1, 1), (3 * BLOCK, 2, 7, 7)],
          Layout.DENSE: [(1, 1), (BLOCK + 1, 9), (1000, 64)], Layout.SAME: [(5,), (BLOCK * 2 + 3,)]}


@pytest.mark.parametrize("layout", list(SHAPES), ids=lambda layout: layout.name)
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_same_bytes_as_the_plain_transpose(layout, dtype):
    rng = np.random.default_rng(0)
    for shape in SHAPES[layout]:
        array = rng.normal(size=shape).astype(dtype)
        expected = np.ascontiguousarray(layout.to_framework(array))
        got = to_framework(layout, array)
        assert got.flags.c_contiguous and got.dtype == array.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()
        assert np.array_equal(layout.to_canonical(got), array)
