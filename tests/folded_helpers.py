"""Specs whose batch norms fold, shared by the folded-norm tests (tests/spec/test_folded.py, the torch and the
Keras tests in tests/backends/): tiny widths, one block per stage."""

from __future__ import annotations

import numpy as np

import resnet_core as rc
from resnet_core.testing import random_weights

TINY = rc.ResNetSpec(layers=(1, 1), block="bottleneck", base_planes=8, stem_width=8, num_classes=7, name="tiny")
# post-activation batch-norm networks over the options a fold meets: projections (plain, avg "d", 3x3),
# deep stems, SE / ECA attention, ResNet-RS's stem conv, anti-aliasing, dilation, Keras v1's conv biases
FOLDABLE = {
    "basic": rc.ResNetSpec(layers=(1, 1), block="basic", base_planes=8, stem_width=8, num_classes=5),
    "bottleneck_d_se": TINY.replace(downsample="avg", stem="deep", attention="se", se_ratio=0.25),
    "eca_rs_stem": TINY.replace(attention="eca", replace_stem_pool=True, stem="deep_tiered", stem_width=16),
    "anti_alias_dilated": TINY.replace(layers=(1, 1, 1), anti_alias="blur", output_stride=16),
    "keras_v1_like": TINY.replace(stride_in_1x1=True, conv_bias=True, bn_eps=1.001e-5, down_kernel_size=3),
}


def folded(name: str) -> tuple[rc.ResNetSpec, dict[str, np.ndarray]]:
    """``rc.fold_norms`` of ``FOLDABLE[name]`` with random weights (non-trivial batch-norm statistics)."""
    return rc.fold_norms(FOLDABLE[name], random_weights(rc.make_plan(FOLDABLE[name])))
