"""Folded norms on Keras, on the engine KERAS_BACKEND names (tox runs jax, tensorflow and torch, each in its own
process): the folded Keras model equals the unfolded network, and folded files (``.weights.h5``, ``.keras``)
round trip with their spec recovered from the file alone.

The reference is the unfolded network run by torch in float64; the folded Keras model may be at most a few
times further from it than the unfolded Keras model is (the fold's fp32 rounding is below the engine's own).
"""

from __future__ import annotations

import numpy as np
import pytest
from folded_helpers import FOLDABLE, folded

import resnet_core as rc
from resnet_core.io import read_weights, write_weights
from resnet_core.io.keras_model import without_tensorflow_probe
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

pytestmark = [pytest.mark.keras, pytest.mark.torch]

SIZE = (35, 37)


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(2)
    return torch


def keras_out(keras, spec, weights, images):
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    return keras.ops.convert_to_numpy(model(to_channels_last(images), training=False))


def float64_reference(torch, spec, weights, images):
    model = rc.build(spec, backend="torch").eval().double()
    rc.set_weights(model, weights)
    with torch.no_grad():
        return model(torch.from_numpy(images).double()).numpy()


@pytest.mark.parametrize("name", sorted(FOLDABLE))
def test_the_folded_keras_model_equals_the_unfolded_network(keras, torch, name):
    spec, weights = FOLDABLE[name], random_weights(rc.make_plan(FOLDABLE[name]))
    folded_spec, folded = rc.fold_norms(spec, weights)
    images = random_images(2, *SIZE)
    reference = float64_reference(torch, spec, weights, images)
    unfolded_error = relative_error(keras_out(keras, spec, weights, images), reference)
    folded_error = relative_error(keras_out(keras, folded_spec, folded, images), reference)
    assert folded_error <= 4 * unfolded_error + 1e-7 and folded_error < 1e-5, (folded_error, unfolded_error)


def test_the_folded_keras_model_has_no_norm_layer_and_biased_convs(keras):
    spec, weights = folded("bottleneck_d_se")
    model = rc.build(spec, backend="keras")
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.use_bias for layer in convs)
    rc.set_weights(model, weights)
    back = rc.get_weights(model)
    assert list(back) == list(weights) and all(np.array_equal(back[k], weights[k]) for k in weights)


@pytest.mark.parametrize("name", ["keras_v1_like", "bottleneck_d_se"])
def test_a_folded_keras_file_round_trips_with_its_spec_recovered_from_the_graph(keras, tmp_path, name):
    spec, weights = folded(name)
    path = write_weights(tmp_path / "folded.keras", weights, spec)
    back_spec, back = read_weights(path)  # no spec stored: recovered from the layers (stride_in_1x1 too)
    assert back_spec == spec
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in weights.items()}
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert rc.spec_of(loaded) == spec
    model = rc.build(spec, backend="keras")  # what Keras's own model.save writes is read back too
    rc.set_weights(model, weights)
    with without_tensorflow_probe():
        model.save(tmp_path / "saved.keras")
    assert read_weights(tmp_path / "saved.keras").spec == spec


def test_a_folded_weights_h5_file_loads_in_keras_and_keras_save_weights_reads_back(keras, tmp_path):
    spec, weights = folded("eca_rs_stem")
    path = write_weights(tmp_path / "ours.weights.h5", weights, spec)
    model = rc.build(spec, backend="keras")
    model.load_weights(path)
    assert all(np.array_equal(v, weights[k]) for k, v in rc.get_weights(model).items())
    model.save_weights(tmp_path / "keras.weights.h5")
    back_spec, back = read_weights(tmp_path / "keras.weights.h5")  # Keras stores no spec: inferred (folded)
    assert back_spec == spec
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in weights.items()}
