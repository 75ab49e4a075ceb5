"""The blocked layout transpose gives exactly the bytes of the plain one, for every layout, dtype and size."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_core.io.transpose import BLOCK, to_framework
from resnet_core.layouts import Layout

SHAPES = {Layout.CONV: [(1, 1, 1, 1), (BLOCK - 1, 3, 3, 3), (BLOCK + 5, 7, 1, 1), (3 * BLOCK, 2, 7, 7)],
          Layout.DENSE: [(1, 1), (BLOCK + 1, 9), (1000, 64)], Layout.SAME: [(5,), (BLOCK * 2 + 3,)],
          Layout.IMAGES: [(2, 3, 5, 7)]}


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


def test_images_go_channels_last_and_back():
    from resnet_core.testing import to_channels_first, to_channels_last

    images = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)  # N, C, H, W
    nhwc = to_channels_last(images)
    assert nhwc.shape == (2, 5, 7, 3) and nhwc.flags.c_contiguous
    assert nhwc[1, 4, 6, 2] == images[1, 2, 4, 6]
    assert np.array_equal(to_channels_first(nhwc), images)
    logits = images[:, :, 0, 0]
    assert to_channels_last(logits) is logits  # not a batch of images: left alone
