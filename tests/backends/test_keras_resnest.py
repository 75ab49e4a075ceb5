"""ResNeSt's split attention in Keras: parity with our torch model and with timm's, on this engine.

Radix 1 (a sigmoid gate), 2 and 4 (a softmax across the splits of each cardinal group), avd pools before
and after the split attention, a dilated stage; odd input size, perturbed norm statistics. The bound is
relative to the torch model's own fp32-vs-float64 error. ``.keras`` files (RadixSum reloads by name, in a
fresh process, in safe mode) and the spec recovered from layers: tests/backends/test_keras_portable.py.
"""

from __future__ import annotations

import re

import pytest
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_keras_matches, holding, within_peer_rounding

import resnet_core as rc
from resnet_core.spec import ResNeSt
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights, to_channels_last

pytestmark = pytest.mark.keras

TINY = rc.ResNetSpec(layers=(1, 2, 1, 1), base_planes=8, stem="deep", stem_width=8, downsample="avg", num_classes=7)
SPECS = {
    "radix1-card4-avd-first": TINY.replace(block_spec=ResNeSt(groups=4, width_per_group=24, radix=1, avd=True,
                                                              avd_first=True)),
    "radix2-avd-last": TINY.replace(block_spec=ResNeSt(radix=2, avd=True)),
    "radix4-card2-os8": TINY.replace(block_spec=ResNeSt(groups=2, width_per_group=32, radix=4, avd=True),
                                     output_stride=8),
}


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.mark.torch
@pytest.mark.parametrize("key", list(SPECS))
def test_keras_matches_torch_within_its_rounding(keras, torch, key, parity_record):
    spec = SPECS[key]
    weights = random_weights(spec, seed=3)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=4)
    ours = keras.ops.convert_to_numpy(loaded(spec, weights, "keras")(to_channels_last(images), training=False))
    error = within_peer_rounding(torch, loaded(spec, weights), ours, images)
    parity_record(f"resnest:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error < 1e-5
    keras.backend.clear_session()


@pytest.mark.torch
def test_timm_model_runs_in_our_keras_model(keras, torch, need, parity_record):
    timm = need("torch", "timm")
    spec = rc.get_spec("resnest50d_4s2x40d").replace(layers=(1, 1, 1, 1), base_planes=8, stem_width=8,
                                                     width_per_group=32)
    peer = timm.create_model("resnest50d_4s2x40d", pretrained=False, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64),
                             stem_width=8, base_width=32)
    holding(torch, peer, random_weights(spec, seed=5))
    assert_keras_matches(torch, peer, parity_record, "timm:resnest50d_4s2x40d-small")


@pytest.mark.parametrize("peer, text", [("keras.applications", "block='resnest'"),
                                        ("keras-hub", "block type 'resnest' (keras-hub has no such block)")])
def test_keras_peers_refuse_the_block_type_by_name(keras, peer, text):
    spec = SPECS["radix2-avd-last"]
    with pytest.raises(rc.PeerError, match=re.escape(text)):
        rc.to_peer(spec, random_weights(spec), peer)


def test_weights_h5_written_by_us_loads_in_keras(keras, tmp_path):
    """Keras's own ``load_weights`` reads the ``.weights.h5`` resnet-core writes (layer order from the graph)."""
    spec = SPECS["radix4-card2-os8"]
    weights = random_weights(spec, seed=6)
    fresh = rc.build(spec, backend="keras")
    fresh.load_weights(rc.write_weights(tmp_path / "w.weights.h5", weights, spec))
    assert_same_weights(rc.get_weights(fresh), weights)
    keras.backend.clear_session()
