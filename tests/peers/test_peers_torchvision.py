"""torchvision peer: from_peer infers the preset from a live torchvision ResNet, bit for bit; to_peer goes back."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.presets import TORCHVISION_PRESETS
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

HEIGHT, WIDTH, BATCH = 65, 77, 2  # odd and unequal: exposes any padding or rounding difference



@pytest.fixture(scope="module")
def torchvision(need, torch):
    return need("torch", "torchvision")


def _load(torch, model, weights):
    """Canonical weights into a torchvision model by its own state_dict names (no table of ours involved)."""
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    return model.eval()


def _run(torch, model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def _ours(spec, weights):
    model = rc.build(spec, backend="torch")
    rc.set_weights(model, weights)
    return model.eval()


def _same_weights(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


# One member per torchvision family (basic, bottleneck, grouped, wide) runs forward; the deeper members only
# change stage depths, and test_from_peer_names_every_deeper_preset checks that each is recognised.
FAMILIES = ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2")


@pytest.mark.torch
@pytest.mark.parametrize("name", FAMILIES, ids=str)
def test_from_peer_gives_the_preset_and_bit_identical_outputs(torch, torchvision, name, parity_record):
    spec, weights = rc.get_spec(name), random_weights(name, seed=3)
    peer = _load(torch, getattr(torchvision.models, name)(weights=None), weights)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec and got_spec.name == name
    _same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=4)
    out, ref = _run(torch, _ours(got_spec, got), images), _run(torch, peer, images)
    parity_record(f"torchvision:{name}", "torch logits", relative_error(out, ref))
    assert np.array_equal(out, ref)
    del peer, got, weights
    gc.collect()


@pytest.mark.torch
@pytest.mark.parametrize("name", [n for n in TORCHVISION_PRESETS if n not in FAMILIES], ids=str)
def test_from_peer_names_every_deeper_preset(torch, torchvision, name):
    """The spec and the canonical names of every other preset. Built on the meta device and given uninitialised
    memory: the values do not matter here, and initialising wide_resnet101_2 costs seconds."""
    with torch.device("meta"):
        peer = getattr(torchvision.models, name)(weights=None)
    spec, weights = rc.from_peer(peer.to_empty(device="cpu"))
    assert spec == rc.get_spec(name) and spec.name == name
    assert list(weights) == [p.name for p in rc.make_plan(spec).params]


DILATED = [([False, False, True], 16), ([False, True, True], 8)]


@pytest.mark.torch
@pytest.mark.parametrize(("replace", "stride"), DILATED, ids=["os16", "os8"])
def test_replace_stride_with_dilation_becomes_output_stride(torch, torchvision, replace, stride):
    spec = rc.get_spec("resnext50_32x4d").replace(output_stride=stride)
    weights = random_weights(spec, seed=5)
    peer = _load(torch, torchvision.models.resnext50_32x4d(replace_stride_with_dilation=replace), weights)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    assert np.array_equal(_run(torch, _ours(got_spec, got), images), _run(torch, peer, images))


@pytest.mark.torch
def test_dilation_pattern_output_stride_cannot_express_is_refused(torch, torchvision):
    peer = torchvision.models.resnet50(replace_stride_with_dilation=[True, False, False])
    with pytest.raises(rc.PeerError, match="no output_stride in .* reproduces") as info:
        rc.from_peer(peer)
    assert "layer2.0.conv2.stride" in str(info.value)


@pytest.mark.torch
def test_headless_and_poolless_peer(torch, torchvision):
    """fc = Identity is a headless spec that average-pools; maxpool = Identity is stem_pool=False."""
    peer = torchvision.models.resnet18()
    peer.fc, peer.maxpool = torch.nn.Identity(), torch.nn.Identity()
    spec = rc.get_spec("resnet18").replace(include_top=False, pooling="avg", num_classes=0, stem_pool=False)
    weights = random_weights(spec, seed=7)
    _load(torch, peer, weights)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    images = random_images(BATCH, HEIGHT, WIDTH, seed=8)
    assert np.array_equal(_run(torch, _ours(got_spec, got), images), _run(torch, peer, images))


ROUND_TRIP = {
    "resnet18": rc.get_spec("resnet18"),
    "resnext50_32x4d-os8": rc.get_spec("resnext50_32x4d").replace(output_stride=8),
    "resnet34-headless": rc.get_spec("resnet34").replace(include_top=False, pooling="avg", num_classes=0),
    "resnet50-eps-momentum": rc.get_spec("resnet50").replace(bn_eps=1e-3, bn_momentum=0.03, num_classes=10),
}


@pytest.mark.torch
@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=str)
def test_to_peer_round_trip_and_outputs(torch, torchvision, key):
    spec = ROUND_TRIP[key]
    weights = random_weights(spec, seed=9)
    peer = rc.to_peer(spec, weights, "torchvision")
    assert isinstance(peer, torchvision.models.ResNet) and not peer.training
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    _same_weights(back, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=10)
    assert np.array_equal(_run(torch, peer, images), _run(torch, _ours(spec, weights), images))


@pytest.mark.torch
@pytest.mark.parametrize(("name", "fields"), [
    ("resnet50d", ["stem='deep'", "downsample='avg'"]),
    ("keras_resnet50", ["stride_in_1x1=True", "conv_bias=True"]),
    ("seresnet50", ["attention='se'"]),
], ids=["deep-stem", "keras-v1", "se"])
def test_to_peer_refuses_what_torchvision_cannot_build(torch, torchvision, name, fields):
    with pytest.raises(rc.PeerError, match="torchvision cannot build") as info:
        rc.to_peer(name, random_weights(name), "torchvision")
    for field in fields:
        assert field in str(info.value)


@pytest.mark.torch
def test_unused_source_tensor_is_refused_by_name(torch, torchvision):
    peer = torchvision.models.resnet18()
    peer.layer1[0].register_buffer("extra_scale", torch.ones(3))
    with pytest.raises(rc.PeerError, match=r"1 torchvision tensor\(s\) unused.*layer1\.0\.extra_scale"):
        rc.from_peer(peer)


@pytest.mark.torch
def test_replaced_norm_layer_is_refused(torch, torchvision):
    from torchvision.ops import FrozenBatchNorm2d

    peer = torchvision.models.resnet18(norm_layer=FrozenBatchNorm2d)
    with pytest.raises(rc.PeerError, match="bn1 is FrozenBatchNorm2d.*norm_layer"):
        rc.from_peer(peer)


@pytest.mark.torch
def test_not_a_peer_model(torch, torchvision):
    with pytest.raises(TypeError, match="Not a model from a known peer"):
        rc.from_peer(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="already a resnet_core model"):
        rc.from_peer(rc.build("resnet18", backend="torch"))
    with pytest.raises(ValueError, match="Unknown peer 'onnx'"):
        rc.to_peer("resnet18", random_weights("resnet18"), "onnx")


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"], ids=str)
def test_import_runs_in_our_keras_model(torch, torchvision, name, parity_record):
    import keras

    weights = random_weights(name, seed=11)
    peer = _load(torch, getattr(torchvision.models, name)(), weights)
    got_spec, got = rc.from_peer(peer)
    model = rc.build(got_spec, backend="keras")
    rc.set_weights(model, got)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=12)
    out = keras.ops.convert_to_numpy(model(to_channels_last(images), training=False))
    error = relative_error(out, _run(torch, peer, images))
    parity_record(f"torchvision:{name}", f"keras[{keras.backend.backend()}] logits", error)
    assert error < 1e-5
    del model
    keras.backend.clear_session()
