"""A stem adapted to another channel count carries a normalisation for that count (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.finetune import adapt_normalisation, fine_tune
from resnet_core.testing import random_weights
from resnet_core.weights_info import IMAGENET_MEAN, IMAGENET_STD, WeightsInfo

SPEC = "tiny_resnext"


def test_gray_input_is_normalised_by_the_rgb_average():
    spec = rc.get_spec(SPEC)
    info = WeightsInfo(input_size=(3, 64, 64), crop_pct=0.9)
    new, weights, got = fine_tune(spec, random_weights(spec), info, in_channels=1)
    assert new.in_channels == 1 and weights["conv1.weight"].shape[1] == 1
    assert got.input_size == (1, 64, 64) and got.crop_pct == 0.9
    assert got.mean == pytest.approx((np.mean(IMAGENET_MEAN),)) and got.std == pytest.approx((np.mean(IMAGENET_STD),))
    gray = np.arange(0, 256, dtype=np.uint8).reshape(16, 16, 1)
    out = rc.preprocess(gray, got)  # refused before: three means for one channel
    expected = (gray.astype(np.float32) / 255.0 - np.float32(got.mean[0])) / np.float32(got.std[0])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_more_channels_cycle_through_rgb_like_the_tiled_kernel():
    info = WeightsInfo(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    got = adapt_normalisation(info, 5)
    assert got.mean == (0.5, 0.4, 0.3, 0.5, 0.4) and got.std == (0.2, 0.25, 0.3, 0.2, 0.25)


def test_caffe_becomes_mean_subtraction_of_the_new_channels_and_tf_is_unchanged():
    caffe = WeightsInfo(preprocessing="caffe")
    assert adapt_normalisation(caffe, 3) == caffe  # same channels: nothing to adapt, BGR kept
    gray = adapt_normalisation(caffe, 1)
    assert gray.preprocessing == "torch"
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 5, 7, 1)).astype(np.float32)
    # keras.applications' caffe mode subtracts a per-channel mean on [0, 255]; one channel: their average
    np.testing.assert_allclose(rc.preprocess(x, gray), x - np.mean([103.939, 116.779, 123.68]), rtol=1e-5,
                               atol=1e-3)
    tf = WeightsInfo(preprocessing="tf", input_size=(3, 32, 32))
    assert adapt_normalisation(tf, 4) == tf.replace(input_size=(4, 32, 32))
