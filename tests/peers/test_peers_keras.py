"""keras.applications peer: ResNet50/101/152 and their V2, on the current Keras engine, weights=None then randomised.

keras.applications ends in a softmax and our models return logits, so outputs are compared with the
peer's pre-softmax logits (``keras_applications_peer.logits``: the ``predictions`` input times its
kernel plus bias); one test checks that the peer's softmax output is the softmax of our logits.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_weights, randomise_keras_variables, relative_error, softmax, to_channels_first

HEIGHT, WIDTH, BATCH = 65, 77, 2
SHAPE = (HEIGHT, WIDTH, 3)

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def kap():
    from resnet_core.peers import keras_applications_peer

    return keras_applications_peer


def _images(spec, seed):
    """uint8 photos normalised as the spec says (caffe for keras.applications v1), channels last."""
    pixels = np.random.default_rng(seed).integers(0, 256, (BATCH, *SHAPE), dtype=np.uint8)
    return rc.preprocess(pixels, spec)


def _expected(layers, v2=False, **changes):
    """The keras preset: Keras's BN momentum (0.99 -> 0.01), caffe inputs for v1 and 'tf' for V2."""
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}[layers]
    base = rc.get_spec(f"keras_resnet{depth}{'v2' if v2 else ''}")
    return base.replace(**{"bn_momentum": 0.01, **changes})


def _ours(keras, spec, weights, images):
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    return keras.ops.convert_to_numpy(model(images, training=False))


def _peer_out(keras, kap, peer, images):
    if any(layer.name == "predictions" for layer in peer.layers):
        return kap.logits(peer, images)
    return keras.ops.convert_to_numpy(peer(images, training=False))


# (constructor, constructor kwargs, expected spec changes)
CASES = {
    "ResNet50": ("ResNet50", {"classes": 10}, {"num_classes": 10}),
    "ResNet50-headless-avg": ("ResNet50", {"include_top": False, "pooling": "avg"},
                              {"include_top": False, "pooling": "avg", "num_classes": 0}),
    "ResNet50-featuremap": ("ResNet50", {"include_top": False}, {"include_top": False, "num_classes": 0}),
    "ResNet101": ("ResNet101", {"classes": 10}, {"num_classes": 10}),
    "ResNet152": ("ResNet152", {"classes": 10}, {"num_classes": 10}),
    "ResNet50V2": ("ResNet50V2", {"classes": 10}, {"num_classes": 10}),
    "ResNet50V2-headless-max": ("ResNet50V2", {"include_top": False, "pooling": "max"},
                                {"include_top": False, "pooling": "max", "num_classes": 0}),
    "ResNet50V2-featuremap": ("ResNet50V2", {"include_top": False}, {"include_top": False, "num_classes": 0}),
    "ResNet101V2": ("ResNet101V2", {"classes": 10}, {"num_classes": 10}),
    "ResNet152V2": ("ResNet152V2", {"classes": 10}, {"num_classes": 10}),
}
SLOW = ("ResNet101", "ResNet152", "ResNet101V2", "ResNet152V2")
LAYERS = {"ResNet50": (3, 4, 6, 3), "ResNet101": (3, 4, 23, 3), "ResNet152": (3, 8, 36, 3)}
LAYERS.update({f"{k}V2": v for k, v in LAYERS.items()})


@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in CASES],
                ids=str)
def imported(request, keras, kap):
    """(case, expected spec, peer, from_peer's spec and weights) for one case; built once per module."""
    key = request.param
    ctor, kwargs, changes = CASES[key]
    peer = getattr(keras.applications, ctor)(weights=None, input_shape=SHAPE, **kwargs)
    peer = randomise_keras_variables(peer, seed=1)
    spec, weights = rc.from_peer(peer)
    yield key, _expected(LAYERS[ctor], ctor.endswith("V2"), **changes), peer, spec, weights
    del peer, weights
    keras.backend.clear_session()
    gc.collect()


def test_from_peer_infers_spec_and_weights(imported, keras):
    _, expected, peer, spec, weights = imported
    assert spec == expected
    assert spec.name == f"keras_{peer.name}"
    kernel = keras.ops.convert_to_numpy(peer.get_layer("conv3_block2_2_conv").kernel)  # HWIO
    assert np.array_equal(weights["layer2.1.conv2.weight"], kernel.transpose(3, 2, 0, 1))
    norm, canonical = ("conv2_block1_preact_bn", "layer1.0.norm1") if spec.preact else \
        ("conv2_block1_0_bn", "layer1.0.downsample.1")
    mean = keras.ops.convert_to_numpy(peer.get_layer(norm).moving_mean)
    assert np.array_equal(weights[f"{canonical}.running_mean"], mean)


def test_outputs_match_our_keras_model_on_the_same_engine(imported, keras, kap, parity_record):
    key, _, peer, spec, weights = imported
    images = _images(spec, seed=2)
    ours = _ours(keras, spec, weights, images)
    error = relative_error(ours, _peer_out(keras, kap, peer, images))
    parity_record(f"keras.applications:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error <= 1e-6
    if spec.include_top:  # the peer's own output is the softmax of our logits
        np.testing.assert_allclose(keras.ops.convert_to_numpy(peer(images, training=False)), softmax(ours),
                                   atol=1e-6)


@pytest.mark.torch
def test_import_runs_in_our_torch_model(imported, keras, kap, parity_record):
    import torch

    key, _, peer, spec, weights = imported
    images = _images(spec, seed=3)
    model = rc.build(spec, backend="torch")
    rc.set_weights(model, weights)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(to_channels_first(images))).numpy()
    if out.ndim == 4:
        out = np.transpose(out, (0, 2, 3, 1))
    error = relative_error(out, _peer_out(keras, kap, peer, images))
    parity_record(f"keras.applications:{key}", f"torch (from keras[{keras.backend.backend()}]) logits", error)
    assert error < 1e-5


ROUND_TRIP = {
    "keras_resnet50": _expected((3, 4, 6, 3), num_classes=10),
    "keras_resnet50v2": _expected((3, 4, 6, 3), v2=True, num_classes=10),
    "v2-momentum-0.1-headless-avg": _expected((3, 4, 6, 3), v2=True, bn_momentum=0.1, include_top=False,
                                              pooling="avg", num_classes=0),
    "momentum-0.1-headless-max": _expected((3, 4, 6, 3), bn_momentum=0.1, include_top=False, pooling="max",
                                           num_classes=0),
}
BFLOAT16_WEIGHTS = ("momentum-0.1-headless-max",)  # given as ml_dtypes bfloat16 arrays, as read_weights gives them


@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=str)
def test_to_peer_round_trip_and_outputs(keras, kap, key):
    spec = ROUND_TRIP[key]
    weights = random_weights(spec, seed=6, dtype="bfloat16" if key in BFLOAT16_WEIGHTS else "float32")
    peer = rc.to_peer(spec, weights, "keras.applications", input_shape=SHAPE)
    assert peer.name == ("resnet50v2" if spec.preact else "resnet50")
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert list(back) == list(weights) and all(np.array_equal(back[k], weights[k]) for k in weights)
    images = _images(spec, seed=7)
    assert relative_error(_ours(keras, spec, weights, images), _peer_out(keras, kap, peer, images)) <= 1e-6
    keras.backend.clear_session()


def test_v2_structure_is_checked_not_assumed(keras):
    """V2's strides sit on each stage's last block with a 1x1 max-pool shortcut: a plan that puts them
    anywhere else (stride_block="first", keras-hub's V2) must not fit the same Keras model."""
    from resnet_core.peers import keras_applications_peer as kap

    peer = keras.applications.ResNet50V2(weights=None, include_top=False, input_shape=SHAPE)
    spec, _ = rc.from_peer(peer)
    assert (spec.preact, spec.stride_block, spec.stem_pool_padding) == (True, "last", "zero")
    faults = kap._check_structure(rc.make_plan(spec.replace(stride_block="first")), peer)
    assert "conv2_block3_2_conv.strides=(2, 2) (spec: (1, 1))" in faults
    assert any("conv2_block3_out's shortcut" in f or "adds a max-pooled shortcut" in f for f in faults)


def test_other_keras_models_are_refused(keras):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs), name="toy")
    with pytest.raises(rc.PeerError, match="'toy' is not a keras.applications ResNet"):
        rc.from_peer(model)


@pytest.mark.parametrize(("spec", "texts"), [
    (rc.get_spec("resnet50"), ["stride_in_1x1=False", "conv_bias=False"]),
    (_expected((3, 4, 6, 3)).replace(layers=(2, 2, 2, 2)), ["layers=(2, 2, 2, 2)"]),
    (rc.get_spec("resnetv2_50"), ["stride_block='first' (keras.applications ResNet V2 (preact=True) has "
                                  "stride_block='last')", "conv_bias=False", "stem_pool_padding='-inf'"]),
], ids=["torchvision-resnet50", "depths", "keras-hub-style-v2"])
def test_to_peer_refuses_what_keras_applications_cannot_build(keras, spec, texts):
    with pytest.raises(rc.PeerError, match="keras.applications cannot build") as info:
        rc.to_peer(spec, random_weights(spec), "keras.applications")
    for text in texts:
        assert text in str(info.value)


@pytest.mark.parametrize(("ctor", "kwargs", "preset"), [
    ("ResNet50", {"classes": 10}, "keras_resnet50"),
    ("ResNet50V2", {"include_top": False}, "keras_resnet50v2"),
], ids=["ResNet50", "ResNet50V2-headless"])
def test_save_weights_files_in_keras_applications_naming_are_read(keras, tmp_path, capsys, ctor, kwargs, preset):
    """``model.save_weights`` of a keras.applications ResNet keeps its layer names; reading or converting
    the file translates them with the peer's table, and the spec is the preset's (what tensors show)."""
    from resnet_core.cli import main

    peer = randomise_keras_variables(getattr(keras.applications, ctor)(weights=None, input_shape=SHAPE, **kwargs),
                                     seed=4)
    expected, imported = rc.from_peer(peer)
    path = tmp_path / "peer.weights.h5"
    peer.save_weights(path)
    spec, weights = rc.read_weights(path)
    assert spec.name == preset
    # Momentum and a headless model's pooling do not show in weights: the preset's values are taken.
    assert spec == expected.replace(name=preset, bn_momentum=spec.bn_momentum, num_classes=spec.num_classes)
    assert list(weights) == list(imported) and all(np.array_equal(weights[k], imported[k]) for k in imported)
    assert main(["info", str(path)]) == 0
    assert "in keras.applications' naming" in capsys.readouterr().out
    target = tmp_path / "converted.safetensors"
    assert main(["convert", str(path), str(target), "--quiet"]) == 0
    assert all(np.array_equal(rc.read_weights(target).weights[k], v) for k, v in imported.items())
    keras.backend.clear_session()
