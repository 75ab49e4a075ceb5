"""timm's other norms and BiT: GroupNorm ResNet, ResNetV2 with GroupNormAct / EvoNorm2dS0 / FRN, StdConv2d.

One small member per family (one block per stage), built by timm's own constructors, with every norm
parameter perturbed (EvoNorm's ``v`` on both sides of 0, FRN's ``tau`` on both sides of 0) and
kernels given a per-channel offset (so weight standardisation changes them). Our torch model runs
timm's operations: bit-identical up to the classifier (ResNetV2's 1x1-conv head sums in another order,
within 10x timm's own fp32-vs-float64 error). The Keras model runs on every engine within 1e-5 of timm;
weight files and ``.keras`` files round-trip. Full-size members are checked by parameter count here and in
docs/parity.md (generated).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_keras_matches, assert_refused, perturb, run, within_peer_rounding

import resnet_core as rc
from resnet_core.testing import (
    assert_same_weights,
    loaded,
    random_images,
    random_weights,
    relative_error,
    to_channels_last,
)

CLASSES = 10
SMALL = {"layers": (1, 1, 1, 1), "base_planes": 32, "num_classes": CLASSES}  # half width: 32 groups still divide
# family -> the timm architecture of its small member (built with timm's own kwargs)
FAMILIES = {
    "resnet50_gn": "resnet",
    "resnetv2_50x1_bit": "resnetv2",
    "resnetv2_50d_gn": "resnetv2",
    "resnetv2_50d_evos": "resnetv2",
    "resnetv2_50d_frn": "resnetv2",
}
KERAS_FAMILIES = ("resnet50_gn", "resnetv2_50x1_bit", "resnetv2_50d_evos", "resnetv2_50d_frn")


def _small_timm(timm, name: str):
    """timm's own constructor for ``name`` with one block per stage (BiT's creator fixes ``layers``)."""
    small = {"layers": [1, 1, 1, 1], "num_classes": CLASSES}
    if FAMILIES[name] == "resnet":
        return timm.create_model(name, pretrained=False, channels=(32, 64, 128, 256), **small)
    small["channels"] = (128, 256, 512, 1024)  # block outputs (ResNetV2 counts those)
    if name.endswith("_bit"):
        from timm.models.resnetv2 import _create_resnetv2_bit

        return _create_resnetv2_bit(name, width_factor=1, **small)
    return timm.create_model(name, pretrained=False, **small)


def _peer(torch, timm, name, seed=0):
    torch.manual_seed(seed)
    return perturb(torch, _small_timm(timm, name), seed)


@pytest.mark.torch
@pytest.mark.parametrize("name", list(FAMILIES))
def test_small_member_imports_with_its_preset_structure_and_runs_as_timm(torch, timm, name, parity_record):
    peer = _peer(torch, timm, name, seed=1)
    spec, weights = rc.from_peer(peer)
    assert spec == rc.get_spec(name).replace(**SMALL) and spec.name == name
    state = {k: v for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sum(v.size for v in weights.values()) == sum(v.numel() for v in state.values())
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    ours = loaded(spec, weights)
    x = torch.from_numpy(images)
    if FAMILIES[name] == "resnet":
        error = relative_error(run(torch, ours, images), run(torch, peer, images))
        assert error == 0.0
    else:
        with torch.no_grad():
            assert torch.equal(ours.forward_taps(x)["norm"], peer.forward_features(x))  # same ops, same bits
        error = within_peer_rounding(torch, peer, run(torch, ours, images), images)  # timm's classifier: a 1x1 conv
    parity_record(f"timm:{name}", "torch logits", error)


@pytest.mark.torch
@pytest.mark.parametrize("name", list(FAMILIES))
def test_export_round_trips_through_timm(torch, timm, name):
    spec = rc.get_spec(name).replace(**SMALL)
    weights = random_weights(spec, seed=5)
    peer = rc.to_peer(spec, weights, "timm")
    assert type(peer).__name__ == ("ResNet" if FAMILIES[name] == "resnet" else "ResNetV2") and not peer.training
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert_same_weights(back, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    within_peer_rounding(torch, peer, run(torch, loaded(spec, weights), images), images)


@pytest.mark.torch
@pytest.mark.parametrize("name", [n for n in rc.list_specs() if n in FAMILIES or n.endswith("_bit")])
def test_full_size_presets_have_timms_parameter_count(torch, timm, name):
    with torch.device("meta"):  # no memory for the weights: shapes only
        peer = timm.create_model(name, pretrained=False)
    assert rc.make_plan(rc.get_spec(name)).num_params == sum(p.numel() for p in peer.parameters())


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("name", KERAS_FAMILIES)
def test_import_runs_in_our_keras_model(torch, timm, name, parity_record):
    assert_keras_matches(torch, _peer(torch, timm, name, seed=3), parity_record, f"timm:{name}")


@pytest.mark.keras
@pytest.mark.parametrize("name", ["resnetv2_50x1_bit", "resnetv2_50d_evos"])  # StdConv2D, GroupNormalization, EvoNormS0
def test_weight_files_and_keras_files_round_trip(tmp_path, name):
    import keras

    spec = rc.get_spec(name).replace(**SMALL).replace(base_planes=8, stem_width=16, norm_groups=8)  # tiny
    weights = random_weights(spec, seed=7)
    model = loaded(spec, weights, "keras")
    model.save_weights(tmp_path / "keras.weights.h5")  # Keras's own writer, our reader
    read_spec, back = rc.read_weights(tmp_path / "keras.weights.h5", spec)
    assert_same_weights(back, weights)
    rc.write_weights(tmp_path / "ours.weights.h5", weights, spec)  # our writer, Keras's own reader
    fresh = rc.build(spec, backend="keras")
    fresh.load_weights(tmp_path / "ours.weights.h5")
    assert_same_weights(rc.get_weights(fresh), weights)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    images = to_channels_last(random_images(BATCH, HEIGHT, WIDTH, seed=8))
    assert np.array_equal(keras.ops.convert_to_numpy(again(images)), keras.ops.convert_to_numpy(model(images)))
    keras.backend.clear_session()


def _v2(timm, **kwargs):
    from timm.layers import create_conv2d

    return timm.models.resnetv2.ResNetV2([1, 1, 1, 1], num_classes=3, **{"conv_layer": create_conv2d, **kwargs})


REFUSALS = [
    ("std-conv-same", lambda timm: _v2(timm, conv_layer=timm.layers.StdConv2dSame), ["StdConv2dSame"]),
    ("scaled-std-conv", lambda timm: _v2(timm, conv_layer=timm.layers.ScaledStdConv2d), ["ScaledStdConv2d"]),
    ("evonorm-b0", lambda timm: _v2(timm, norm_layer=timm.layers.EvoNorm2dB0),
     ["EvoNorm2dB0: norm_layer has no ResNetSpec option"]),
    ("frn-act", lambda timm: _v2(timm, norm_layer=timm.layers.FilterResponseNormAct2d),
     ["FilterResponseNormAct2d: norm_layer has no ResNetSpec option"]),
    ("group-norm-silu", lambda timm: _v2(timm, norm_layer=timm.layers.GroupNormAct, act_layer="silu"),
     ["activation SiLU (act_layer"]),
    ("frn-no-tlu", lambda timm: _v2(timm, norm_layer=functools.partial(timm.layers.FilterResponseNormTlu2d,
                                                                        apply_act=False)), ["has no tau"]),
]


@pytest.mark.torch
@pytest.mark.parametrize(("build", "texts"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_unexpressible_norm_options_are_refused_by_name(torch, timm, build, texts):
    assert_refused(lambda: rc.from_peer(build(timm)), texts)


@pytest.mark.torch
def test_post_activation_weight_standardisation_exports_as_resnetv2(torch, timm):
    """timm's ResNet takes no conv_layer: a post-activation std_conv spec becomes ResNetV2(preact=False)."""
    spec = rc.get_spec("resnet50_gn").replace(std_conv=True, **SMALL)
    weights = random_weights(spec, seed=11)
    assert_refused(lambda: rc.to_peer(spec, weights, "timm", model_class="ResNet"), ["std_conv=True"])
    peer = rc.to_peer(spec, weights, "timm")
    assert isinstance(peer, timm.models.resnetv2.ResNetV2) and type(peer.stem.conv).__name__ == "StdConv2d"
    back, back_weights = rc.from_peer(peer)
    assert back == spec
    assert_same_weights(back_weights, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=12)
    within_peer_rounding(torch, peer, run(torch, loaded(spec, weights), images), images)
