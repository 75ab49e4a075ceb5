"""drop_rate and drop_path_rate on Keras (run once per engine): built-in Dropout layers only, identities in
inference; in training each block's stochastic depth (a Dropout whose noise shape keeps only the batch axis)
drops whole samples at the plan's rate and scales the rest by 1 / (1 - rate), and the head drops pooled
features before the Dense. A saved ``.keras`` file loads in safe mode in a fresh process and gives the rates
back. keras-hub's classifier carries drop_rate as its dropout; what the Keras peers have no option for is
refused by name."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.drop_rates import drop_path_schedule
from resnet_core.name_tables import PeerError
from resnet_core.testing import random_images, random_weights, relative_error

pytestmark = pytest.mark.keras

TINY = rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), base_planes=4, stem_width=8, num_classes=5, name="tiny")
RATES = dict(drop_rate=0.3, drop_path_rate=0.45)
SAMPLES = 20000


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _binomial_bound(n: int, p: float) -> float:
    """Five standard deviations of a Binomial(n, p) count."""
    return 5 * math.sqrt(n * p * (1 - p)) + 1


def _model(spec: rc.ResNetSpec):
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, random_weights(spec.replace(drop_rate=0.0, drop_path_rate=0.0), seed=1))
    return model


def _images(batch: int = 3):
    return random_images(batch, 35, 37, seed=2).transpose(0, 2, 3, 1)  # NHWC, odd size


def test_the_layers_are_built_in_dropouts_at_the_plans_rates(keras):
    model = _model(TINY.replace(**RATES))
    drops = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    rates = drop_path_schedule(0.45, 4)
    assert {name: (d.rate, d.noise_shape) for name, d in drops.items()} == {
        **{f"layer{s}_0_drop_path": (rates[s - 1], (None, 1, 1, 1)) for s in (2, 3, 4)},  # block 1's rate is 0
        "head_drop": (0.3, None)}
    assert type(drops["head_drop"]).__module__.startswith("keras.")
    assert [n.operation.name for n in model.get_layer("fc")._inbound_nodes[0].parent_nodes] == ["head_drop"]
    assert [n.operation.name for n in model.get_layer("layer4_0_add")._inbound_nodes[0].parent_nodes][0] == \
        "layer4_0_drop_path"  # on the main branch, before the add


def test_inference_is_the_identity_and_matches_torch(keras, need):
    images = _images()
    plain = keras.ops.convert_to_numpy(_model(TINY)(images))
    regularised = _model(TINY.replace(**RATES))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(regularised(images)), plain)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(regularised(images, training=False)), plain)
    torch = need("torch", "torch")
    reference = rc.build(TINY.replace(**RATES), backend="torch").eval()
    rc.set_weights(reference, rc.get_weights(regularised))
    with torch.no_grad():
        logits = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert relative_error(plain, logits) < 1e-5


def test_each_blocks_stochastic_depth_drops_whole_samples_at_its_rate_and_scales_the_rest(keras):
    model = _model(TINY.replace(**RATES))
    rng = np.random.default_rng(0)
    for stage, rate in zip((2, 3, 4), drop_path_schedule(0.45, 4)[1:], strict=True):
        x = rng.standard_normal((SAMPLES, 3, 5, 2)).astype("float32")
        y = keras.ops.convert_to_numpy(model.get_layer(f"layer{stage}_0_drop_path")(x, training=True))
        dropped = (y == 0).reshape(SAMPLES, -1).all(axis=1)
        kept = ~dropped
        assert abs(int(dropped.sum()) - SAMPLES * rate) <= _binomial_bound(SAMPLES, rate), rate
        assert (y[kept] != 0).all()  # whole samples, never single values
        # exact up to float32 rounding: TensorFlow multiplies by a rounded 1 / keep, the others divide by keep
        np.testing.assert_allclose(y[kept], x[kept] / np.float32(1 - rate), rtol=2 ** -22)


def test_the_head_drops_pooled_features_at_drop_rate(keras):
    layer = _model(TINY.replace(drop_rate=0.3)).get_layer("head_drop")
    y = keras.ops.convert_to_numpy(layer(np.ones((SAMPLES, 32), "float32"), training=True))
    assert abs(int((y == 0).sum()) - y.size * 0.3) <= _binomial_bound(y.size, 0.3)
    np.testing.assert_allclose(y[y != 0], 1 / np.float32(0.7), rtol=2 ** -22)


def test_a_saved_model_loads_in_safe_mode_elsewhere_and_gives_its_rates_back(keras, tmp_path, run_python):
    spec = TINY.replace(**RATES, attention="se")
    model = _model(spec)
    path = tmp_path / "tiny.keras"
    model.save(path)
    result = run_python(
        "import json, keras, numpy as np\n"
        f"model = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
        "print(json.dumps({l.name: [l.rate, l.noise_shape] for l in model.layers\n"
        "                  if isinstance(l, keras.layers.Dropout)}))\n")
    assert result.returncode == 0, result.stderr
    rates = drop_path_schedule(0.45, 4)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        **{f"layer{s}_0_drop_path": [rates[s - 1], [None, 1, 1, 1]] for s in (2, 3, 4)}, "head_drop": [0.3, None]}
    assert rc.read_weights(path).spec == spec  # recovered from the file's layers, Keras not needed
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert rc.get_weights(loaded).keys() == rc.get_weights(model).keys()
    from resnet_core.backends import keras_adapter

    assert keras_adapter.spec_of(loaded) == spec  # a plain-Keras model's spec, read off its layers


@pytest.mark.parametrize(("peer", "field"), [("keras.applications", "drop_rate"),
                                           ("keras.applications", "drop_path_rate"), ("keras-hub", "drop_path_rate")])
def test_keras_peers_without_the_option_refuse_it_by_name(keras, peer, field):
    spec = rc.get_spec("resnet50").replace(**{field: 0.1})
    with pytest.raises(PeerError, match=rf"{field}=0\.1 \({peer} models have no {field} option"):
        rc.to_peer(spec, random_weights("resnet50"), peer)


def test_keras_hub_carries_drop_rate_as_its_classifiers_dropout(keras, need):
    need("keras", "keras_hub")
    spec = rc.get_spec("resnet18").replace(layers=(1, 1, 1, 1), drop_rate=0.3)
    peer = rc.to_peer(spec, random_weights(spec), "keras-hub")
    assert peer.output_dropout.rate == 0.3
    assert rc.from_peer(peer)[0] == spec
    with pytest.raises(PeerError, match="dropout=0.5 with drop_rate=0.3"):
        rc.to_peer(spec, random_weights(spec), "keras-hub", dropout=0.5)
