"""The Keras adapter against the PyTorch adapter, on the Keras engine KERAS_BACKEND names.

Runs in-process: Keras fixes its engine at import, so tox runs this file once per engine
(keras-jax, keras-tensorflow, keras-torch). The reference is our own torch model, itself proven
identical to torchvision in test_torch_torchvision.py. Every comparison loads the same perturbed
weights (``random_weights``: non-trivial BN statistics and affine parameters) into both.
"""

from __future__ import annotations

import gc
from types import SimpleNamespace

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.mapping import keras_layer_name
from resnet_core.presets import TORCHVISION_PRESETS
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

pytestmark = [pytest.mark.keras, pytest.mark.torch]

TOLERANCE = 1e-5  # max|diff| / max|ref|, float32 on CPU
PRESETS = (*TORCHVISION_PRESETS, "keras_resnet50", "keras_resnet50v2", "resnetv2_50", "tiny_resnext")
SIZES = {"64x64": (64, 64), "65x77": (65, 77)}  # even, and odd/unequal (padding and ceil rules)
BATCH = 2


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _torch_out(torch, model, images: np.ndarray):
    with torch.no_grad():
        return model(torch.from_numpy(images))


def _keras_out(keras, model, images: np.ndarray):
    return model(to_channels_last(images), training=False)


def _nhwc(array) -> np.ndarray:
    array = np.asarray(array)
    return np.transpose(array, (0, 2, 3, 1)) if array.ndim == 4 else array


@pytest.fixture(scope="module", params=PRESETS)
def models(request, torch, keras):
    """Both models of one preset holding ``random_weights(spec)``; built once, freed after the preset."""
    name = request.param
    spec = rc.get_spec(name)
    weights = random_weights(spec)
    reference = rc.build(spec, backend="torch")
    rc.set_weights(reference, weights)
    reference.eval()
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    bundle = SimpleNamespace(name=name, spec=spec, plan=rc.make_plan(spec), weights=weights, torch=reference,
                             keras=model)
    del reference, model, weights
    yield bundle
    bundle.__dict__.clear()  # pytest keeps the fixture value until the next one is set up
    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize("size", list(SIZES))
def test_logits_match_torch(models, torch, keras, size, parity_record):
    images = random_images(BATCH, *SIZES[size], seed=7)
    expected = _torch_out(torch, models.torch, images).numpy()
    got = keras.ops.convert_to_numpy(_keras_out(keras, models.keras, images))
    assert got.shape == expected.shape == (BATCH, models.spec.num_classes)
    assert np.isfinite(expected).all() and expected.std() > 0
    error = relative_error(got, expected)
    parity_record(models.name, f"logits {size}", error)
    assert error < TOLERANCE, f"{models.name} {size}: relative error {error:.3e}"


def test_stage_features_match_torch(models, torch, keras, parity_record):
    from resnet_core.backends.keras_adapter import feature_model

    images = random_images(BATCH, *SIZES["65x77"], seed=8)
    with torch.no_grad():
        expected = [f.numpy() for f in models.torch.forward_features(torch.from_numpy(images))]
    got = feature_model(models.keras)(to_channels_last(images), training=False)
    assert len(got) == len(expected) == models.plan.num_stages
    for stage, (g, e) in enumerate(zip(got, expected, strict=True), 1):
        g = keras.ops.convert_to_numpy(g)
        assert g.shape == _nhwc(e).shape, f"layer{stage}"
        error = relative_error(g, _nhwc(e))
        parity_record(models.name, f"features layer{stage}", error)
        assert error < TOLERANCE, f"{models.name} layer{stage}: relative error {error:.3e}"


def test_weights_round_trip_torch_canonical_keras_canonical_bit_exact(models):
    canonical = rc.get_weights(models.torch)
    assert list(canonical) == [p.name for p in models.plan.params]
    assert all(np.array_equal(canonical[k], v) for k, v in models.weights.items())
    # Overwrite the Keras model first, so the comparison below cannot pass on stale values.
    rc.set_weights(models.keras, {k: np.zeros_like(v) for k, v in canonical.items()})
    assert not rc.get_weights(models.keras)["conv1.weight"].any()
    rc.set_weights(models.keras, canonical)
    back = rc.get_weights(models.keras)
    assert list(back) == list(canonical)
    for key, value in canonical.items():
        assert back[key].dtype == value.dtype, key
        assert back[key].shape == value.shape, key
        assert np.array_equal(back[key], value), key


def test_layer_names_and_variable_paths(models):
    names = [layer.name for layer in models.keras.layers]
    assert len(names) == len(set(names))
    assert not [n for n in names if "." in n or "/" in n]
    paths = [v.path for v in models.keras.weights]
    assert len(paths) == len(set(paths))
    assert set(paths) == {row.path for row in rc.keras_table(models.plan)}


def test_trainable_and_statistics_counts_match_plan(models):
    trainable = sum(int(np.prod(v.shape)) for v in models.keras.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in models.keras.non_trainable_weights)
    assert trainable == models.plan.num_params
    assert frozen == sum(p.size for p in models.plan.params if not p.trainable)


def test_batchnorm_hyperparameters_follow_the_plan(models, keras):
    """Epsilon and momentum are invisible in eval-mode logits at this tolerance, so check them directly."""
    norms = {n.name: n for n in models.plan.norms()}
    for name, norm in norms.items():
        layer = models.keras.get_layer(keras_layer_name(name))
        assert isinstance(layer, keras.layers.BatchNormalization), name
        assert layer.epsilon == pytest.approx(norm.eps, rel=1e-12), name
        assert layer.momentum == pytest.approx(1.0 - norm.momentum, rel=1e-12), name  # Keras convention
        assert layer.axis in (-1, 3), name


# ---------------------------------------------------------------------------------------------
# Small models, built per test.


def _pair(spec, seed: int = 0):
    weights = random_weights(spec, seed=seed)
    reference = rc.build(spec, backend="torch")
    rc.set_weights(reference, weights)
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    return reference.eval(), model


@pytest.mark.parametrize("pooling", ["avg", "max", None], ids=["avg", "max", "none"])
@pytest.mark.parametrize("name", ["tiny_resnext", "resnet18", "keras_resnet50"])
def test_headless_outputs_match_torch(torch, keras, name, pooling, parity_record):
    spec = rc.get_spec(name).replace(include_top=False, pooling=pooling)
    reference, model = _pair(spec, seed=2)
    images = random_images(BATCH, *SIZES["65x77"], seed=9)
    expected = _nhwc(_torch_out(torch, reference, images).numpy())
    got = keras.ops.convert_to_numpy(_keras_out(keras, model, images))
    channels = rc.make_plan(spec).head.out_channels
    assert got.shape == expected.shape
    assert got.shape == ((BATCH, channels) if pooling else (BATCH, 3, 3, channels))
    error = relative_error(got, expected)
    parity_record(f"{name}[include_top=False,pooling={pooling}]", "output 65x77", error)
    assert error < TOLERANCE


def test_every_tap_matches_torch(torch, keras, parity_record):
    from resnet_core.backends.keras_adapter import tap_model

    spec = rc.get_spec("tiny_resnext")
    reference, model = _pair(spec, seed=4)
    images = random_images(BATCH, *SIZES["65x77"], seed=10)
    with torch.no_grad():
        expected = reference.forward_taps(torch.from_numpy(images))
    got = tap_model(model)(to_channels_last(images), training=False)
    taps = rc.make_plan(spec).taps
    assert list(expected) == list(taps)
    # Keras's torch engine returns dict outputs with sorted keys, so compare by name, not position.
    assert sorted(got) == sorted(taps)
    worst = max(relative_error(keras.ops.convert_to_numpy(got[t]), _nhwc(expected[t].numpy())) for t in taps)
    parity_record("tiny_resnext[taps]", "worst tap 65x77", worst)
    assert worst < TOLERANCE


def test_keras_model_dispatches_to_keras_adapter(torch, keras):
    from resnet_core.backends import adapter_for

    spec = rc.get_spec("tiny_resnext")
    with rc.use_backend("keras"):
        model = rc.build(spec)
    assert type(model).__name__ == "Functional" and isinstance(model, keras.Model)  # built-in layers only
    if keras.backend.backend() == "torch":
        # On Keras's torch engine a keras.Model IS a torch.nn.Module: the dispatch must still pick Keras.
        assert isinstance(model, torch.nn.Module)
    assert adapter_for(model).__name__ == "resnet_core.backends.keras_adapter"
    weights = rc.get_weights(model)
    assert list(weights) == [p.name for p in rc.make_plan(spec).params]
    assert weights["conv1.weight"].shape == (spec.stem_width, spec.in_channels, 7, 7)  # canonical layout
    new = random_weights(spec, seed=5)
    assert sorted(rc.set_weights(model, new)) == sorted(new)
    assert all(np.array_equal(rc.get_weights(model)[k], v) for k, v in new.items())
    assert rc.spec_of(model) == spec
    with rc.use_backend("keras"):
        assert type(rc.build(spec, backend="torch")).__name__ == "TorchResNet"  # the argument wins


def test_keras_resnet50_counts_equal_keras_applications(keras):
    app = keras.applications.ResNet50(weights=None)
    plan = rc.make_plan(rc.get_spec("keras_resnet50"))
    assert sum(int(np.prod(v.shape)) for v in app.trainable_weights) == plan.num_params == 25_583_592
    frozen = sum(p.size for p in plan.params if not p.trainable)
    assert sum(int(np.prod(v.shape)) for v in app.non_trainable_weights) == frozen


def _keras_app_layer(module: str) -> str:
    """keras.applications.ResNet50's layer for a canonical module ("layer2.0.conv1" -> "conv3_block1_1_conv")."""
    if module in ("conv1", "bn1"):
        return f"conv1_{module[:-1]}"
    stage, index, rest = module.split(".", 2)
    prefix = f"conv{int(stage.removeprefix('layer')) + 1}_block{int(index) + 1}"
    kind = {"downsample.0": "0_conv", "downsample.1": "0_bn"}.get(rest) or f"{rest[-1]}_{rest[:-1]}"
    return f"{prefix}_{kind}"


@pytest.mark.parametrize("size", list(SIZES))
def test_keras_resnet50_is_keras_applications_resnet50(torch, keras, size, parity_record):
    """keras.applications.ResNet50's own (perturbed) weights, renamed to canonical, give its own outputs in
    our torch model: the preset is that network, not just one with the same parameter count."""
    app = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(None, None, 3))
    rng = np.random.default_rng(11)
    for layer in app.layers:  # perturb BN statistics and affine terms, as random_weights does
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
    spec = rc.get_spec("keras_resnet50").replace(include_top=False)
    plan = rc.make_plan(spec)
    index = {"kernel": 0, "bias": 1, "gamma": 0, "beta": 1, "moving_mean": 2, "moving_variance": 3}
    canonical = {}
    for p in plan.params:
        value = keras.ops.convert_to_numpy(app.get_layer(_keras_app_layer(p.module)).weights[index[p.role]])
        canonical[p.name] = np.ascontiguousarray(p.layout.to_canonical(value))
    reference = rc.build(spec, backend="torch")
    rc.set_weights(reference, canonical)
    images = random_images(BATCH, *SIZES[size], seed=12)
    expected = keras.ops.convert_to_numpy(app(to_channels_last(images), training=False))
    got = _nhwc(_torch_out(torch, reference.eval(), images).numpy())
    assert got.shape == expected.shape
    error = relative_error(got, expected)
    parity_record("keras_resnet50[keras.applications]", f"features {size}", error)
    assert error < TOLERANCE


_TINY = rc.get_spec("tiny_resnext")
# Pre-activation and stride_block variants, small; each compared at every tap (the final norm included).
VARIANTS = {
    "preact": _TINY.replace(preact=True),
    "preact-basic-deep-avg-se": _TINY.replace(preact=True, block="basic", groups=1, width_per_group=64,
                                              stem="deep", downsample="avg", attention="se"),
    "preact-last-zero-pad-biased-headless": _TINY.replace(preact=True, stride_block="last", conv_bias=True,
                                                          stem_pool_padding="zero", include_top=False),
    "preact-os8-avg": _TINY.replace(preact=True, output_stride=8, downsample="avg"),
    "v1-stride-last": _TINY.replace(stride_block="last"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_taps_match_torch(torch, keras, name, parity_record):
    from resnet_core.backends.keras_adapter import tap_model

    spec = VARIANTS[name]
    reference, model = _pair(spec, seed=3)
    images = random_images(BATCH, *SIZES["65x77"], seed=13)
    with torch.no_grad():
        expected = reference.forward_taps(torch.from_numpy(images))
        final = reference(torch.from_numpy(images)).numpy()
    taps = rc.make_plan(spec).taps
    assert list(expected) == list(taps)
    got = tap_model(model)(to_channels_last(images), training=False)
    errors = {t: relative_error(keras.ops.convert_to_numpy(got[t]), _nhwc(expected[t].numpy())) for t in taps}
    output = relative_error(keras.ops.convert_to_numpy(_keras_out(keras, model, images)), _nhwc(final))
    parity_record(f"{name}[taps]", "worst tap 65x77", max(errors.values()))
    parity_record(name, "output 65x77", output)
    assert max(errors.values()) < TOLERANCE, errors
    assert output < TOLERANCE


@pytest.mark.parametrize("preact", [False, True], ids=["post-activation", "pre-activation"])
def test_zero_init_residual_zeroes_the_same_tensors_in_both(torch, keras, preact):
    """The plan names what starts at zero (the last norm's gamma, or a pre-activation block's bare last
    conv); both adapters must initialise exactly those, and nothing else, to all zeros."""
    spec = rc.get_spec("tiny_resnext").replace(preact=preact, zero_init_residual=True)
    plan = rc.make_plan(spec)
    zeros = {p.name for p in plan.params if p.init == "zeros" and p.role in ("kernel", "gamma")}
    assert zeros == {f"{b.name}.{'conv3.weight' if preact else 'bn3.weight'}" for b in plan.blocks}
    for model in (rc.build(spec, backend="torch"), rc.build(spec, backend="keras")):
        weights = rc.get_weights(model)
        assert {n for n in zeros if not weights[n].any()} == zeros
        assert all(weights[p.name].any() for p in plan.params if p.role == "kernel" and p.name not in zeros)
