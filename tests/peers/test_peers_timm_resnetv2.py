"""timm's pre-activation ResNetV2 (resnetv2_18/50/50d/50t/101): inferred, imported, exported, refused by option.

timm's classifier is a 1x1 Conv2d where ours is a Linear: the same sums, but PyTorch runs them through
different kernels, so logits agree within 10x timm's own fp32-vs-float64 error (~1e-6 relative), not bit for
bit. Everything before the classifier
(the final norm's ReLU output and the pooled features) is asserted bit-identical.
"""

from __future__ import annotations

import functools
import gc

import numpy as np
import pytest
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_keras_matches, assert_refused, perturb, run, within_peer_rounding

import resnet_core as rc
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights, relative_error

CLASSES = 10

_V2 = rc.ResNetSpec(preact=True, num_classes=CLASSES)
_TF = rc.WeightsInfo(preprocessing="tf")  # timm's resnetv2 cfgs: Inception mean/std
_V2_18 = _V2.replace(block="basic", layers=(2, 2, 2, 2))
_D = {"stem_width": 32, "downsample": "avg"}

# (timm model name, create_model kwargs, the spec from_peer must infer, slow)
CASES = {
    "resnetv2_18": ("resnetv2_18", {}, _V2_18, False),
    "resnetv2_50": ("resnetv2_50", {}, _V2, False),
    "resnetv2_50d": ("resnetv2_50d", {}, _V2.replace(stem="deep", **_D), False),
    "resnetv2_50t": ("resnetv2_50t", {}, _V2.replace(stem="deep_tiered", **_D), False),
    # dilation (basic blocks), the zero-padded 'fixed' stem, a max-pooled headless model
    "resnetv2_18-os16-fixed-max": ("resnetv2_18", {"output_stride": 16, "stem_type": "fixed", "num_classes": 0,
                                                   "global_pool": "max"},
                                   _V2_18.replace(output_stride=16, stem_pool_padding="zero", include_top=False,
                                                  num_classes=0, pooling="max"), False),
    # AvgPool2dSame shortcuts in the dilated stages, the deep 'fixed' stem, a feature-map output
    "resnetv2_50d-os8-deep_fixed-map": ("resnetv2_50d", {"output_stride": 8, "stem_type": "deep_fixed",
                                                         "num_classes": 0, "global_pool": ""},
                                        _V2.replace(stem="deep", **_D, output_stride=8, stem_pool_padding="zero",
                                                    include_top=False, num_classes=0), False),
    "resnetv2_101": ("resnetv2_101", {}, _V2.replace(layers=(3, 4, 23, 3)), True),
}
KERAS_CASES = ("resnetv2_18", "resnetv2_50t", "resnetv2_18-os16-fixed-max")


def _params(keys):
    return [pytest.param(k, marks=pytest.mark.slow) if CASES[k][3] else k for k in keys]


def _peer(torch, timm, key, seed=0):
    name, kwargs, spec, _ = CASES[key]
    kwargs = {"num_classes": CLASSES, **kwargs}
    torch.manual_seed(seed)  # timm's own kernel init: the same model whatever ran before
    return spec, perturb(torch, timm.create_model(name, pretrained=False, **kwargs), seed, kernel_offsets=False)


@pytest.mark.torch
@pytest.mark.parametrize("key", _params(CASES), ids=str)
def test_from_peer_infers_spec_and_matches_in_torch(torch, timm, key, parity_record):
    spec, peer = _peer(torch, timm, key, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    assert got_spec.name == CASES[key][0]  # timm's architecture (the cfg's Inception mean/std is no preset's)
    # every timm tensor is used once: the canonical weights hold exactly as many values, and the named
    # pairs (renamed stem, stage offset, classifier squeezed from 1x1 conv) carry the very same values
    state = {k: v.numpy() for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(got) == len(state) and sum(v.size for v in got.values()) == sum(v.size for v in state.values())
    pairs = {"stem.conv3.weight" if "conv3" in dict(peer.stem.named_children()) else "stem.conv.weight":
             "conv1.6.weight" if got_spec.stem != "7x7" else "conv1.weight",
             "stages.1.blocks.0.downsample.conv.weight": "layer2.0.downsample.conv.weight",
             "stages.3.blocks.1.norm3.running_var" if got_spec.block == "bottleneck" else
             "stages.3.blocks.1.norm2.running_var":
             f"layer4.1.norm{3 if got_spec.block == 'bottleneck' else 2}.running_var",
             "norm.weight": "norm.weight"}
    assert all(np.array_equal(got[c], state[p]) for p, c in pairs.items())
    if got_spec.include_top:
        assert np.array_equal(got["fc.weight"], state["head.fc.weight"][:, :, 0, 0])
        assert np.array_equal(got["fc.bias"], state["head.fc.bias"])

    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    ours = loaded(got_spec, got)
    x = torch.from_numpy(images)
    with torch.no_grad():
        taps = ours.forward_taps(x)
        features = peer.forward_features(x)
        assert torch.equal(taps["norm"], features)  # bit-identical up to the final norm and ReLU
        if got_spec.include_top:
            assert torch.equal(taps["pool"], peer.forward_head(features, pre_logits=True))
    if got_spec.include_top:  # the 1x1 conv classifier and our Linear sum in different orders
        error = within_peer_rounding(torch, peer, run(torch, ours, images), images)
    else:
        error = relative_error(run(torch, ours, images), run(torch, peer, images))
        assert error == 0.0
    parity_record(f"timm:{key}", "torch logits" if got_spec.include_top else "torch features", error)
    del peer, got, ours
    gc.collect()


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("key", KERAS_CASES, ids=str)
def test_import_runs_in_our_keras_model(torch, timm, key, parity_record):
    _, peer = _peer(torch, timm, key, seed=3)
    assert_keras_matches(torch, peer, parity_record, f"timm:{key}")


ROUND_TRIP = {
    "resnetv2_50d": CASES["resnetv2_50d"][2],
    "resnetv2_50t": CASES["resnetv2_50t"][2],
    "resnetv2_18-os16-fixed-max": CASES["resnetv2_18-os16-fixed-max"][2],
    # "torch" normalisation, other eps/momentum, three stages, wide (bottle_ratio 0.5), one input channel
    "wide-3-stages-torch": rc.ResNetSpec(preact=True, layers=(1, 2, 1), width_per_group=128, base_planes=16,
                                         stem_width=16, in_channels=1, num_classes=3, bn_eps=1e-3, bn_momentum=0.05),
    # no stem pool: ResNetV2 counts stride 4 regardless, so the exporter doubles timm's output_stride
    # (os 8 here: without the pool, the plan's os 16 dilates nothing and is the same network as os 32)
    "no-stem-pool-os8-headless": _V2_18.replace(stem_pool=False, output_stride=8, include_top=False, pooling="avg",
                                                num_classes=0, stem="deep", stem_width=16),
}


@pytest.mark.torch
@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=str)
def test_to_peer_round_trip_and_outputs(torch, timm, key):
    spec = ROUND_TRIP[key]
    weights = random_weights(spec, seed=5)
    peer = rc.to_peer(spec, weights, "timm", info=None if key.endswith("-torch") else _TF)
    assert isinstance(peer, timm.models.resnetv2.ResNetV2) and not peer.training
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert_same_weights(back, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, channels=spec.in_channels, seed=6)
    ours = run(torch, loaded(spec, weights), images)
    if spec.include_top:
        within_peer_rounding(torch, peer, ours, images)
    else:
        assert np.array_equal(ours, run(torch, peer, images))
    mean = timm.data.resolve_data_config({}, model=peer)["mean"]
    assert mean == ((0.485, 0.456, 0.406) if key.endswith("-torch") else (0.5, 0.5, 0.5))


@pytest.mark.torch
def test_resnetv2_50_is_named_after_the_preset(torch, timm):
    """timm's resnetv2_50 is our preset; its Inception normalisation ("tf") is in the record, not the spec."""
    from timm.layers import BatchNormAct2d

    peer = timm.create_model("resnetv2_50", pretrained=False)
    spec, _ = rc.from_peer(peer)
    assert spec == rc.get_spec("resnetv2_50") and spec.name == "resnetv2_50"
    assert rc.peer_info(peer).preprocessing == "tf"
    # With ImageNet mean/std the spec is the same; the record says "torch"...
    peer.pretrained_cfg = {"architecture": "resnetv2_50", "mean": (0.485, 0.456, 0.406),
                           "std": (0.229, 0.224, 0.225)}
    spec, _ = rc.from_peer(peer)
    assert spec == rc.get_spec("resnetv2_50") and rc.peer_info(peer).preprocessing == "torch"
    # ...and with another eps and no architecture to fall back on, the generic name does.
    peer = timm.create_model("resnetv2_50", pretrained=False, norm_layer=functools.partial(BatchNormAct2d, eps=1e-3))
    peer.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    spec, _ = rc.from_peer(peer)
    assert spec == rc.get_spec("resnetv2_50").replace(bn_eps=1e-3)
    assert spec.name == "resnetv2"


@pytest.mark.torch
def test_timm_peer_dispatches_both_families(torch, timm):
    from resnet_core.peers import peer_of, timm_peer, timm_resnetv2

    v2, v1 = timm.create_model("resnetv2_18", pretrained=False), timm.create_model("resnet18", pretrained=False)
    assert peer_of(v2) == peer_of(v1) == "timm"
    assert timm_resnetv2.accepts(v2) and not timm_resnetv2.accepts(v1)
    assert timm_peer.accepts(v2) and timm_peer.accepts(v1)
    spec = rc.get_spec("resnet18")
    assert isinstance(rc.to_peer(spec, random_weights(spec), "timm"), timm.models.resnet.ResNet)


@pytest.mark.torch
def test_training_only_drop_rates_are_carried(torch, timm):
    peer = timm.create_model("resnetv2_18", pretrained=False, num_classes=CLASSES, drop_rate=0.3, drop_path_rate=0.1)
    spec, _ = rc.from_peer(peer)
    assert spec == _V2_18.replace(drop_rate=0.3, drop_path_rate=0.1)  # spec fields now (issue 19)


def test_accepts_imports_no_framework(run_python):
    result = run_python(
        "import sys\n"
        "from resnet_core.peers import timm_peer, timm_resnetv2\n"
        "assert not timm_resnetv2.accepts(object()) and not timm_peer.accepts(object())\n"
        "assert not any(m in sys.modules for m in ('timm', 'torch')), sorted(sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr


def _resnetv2(timm, **kwargs):
    from timm.layers import BatchNormAct2d, create_conv2d

    args = {"conv_layer": create_conv2d, "norm_layer": BatchNormAct2d, **kwargs}
    return timm.models.resnetv2.ResNetV2([1, 1, 1, 1], num_classes=3, **args)


# (id, builder, text the refusal must contain); BiT, GroupNormAct, EvoNorm and FRN: test_peers_timm_norms.py
REFUSALS = [
    ("act-silu", lambda timm: timm.create_model("resnetv2_18", pretrained=False, act_layer="silu"),
     ["activation SiLU (act_layer"]),
    ("stem-same", lambda timm: _resnetv2(timm, stem_type="same"), ["stem_type 'same' / 'deep_same'"]),
    ("conv-padding-same", lambda timm: _resnetv2(timm, conv_layer=functools.partial(
        timm.layers.create_conv2d, padding="same")), ["conv_layer with padding='same'"]),
    ("norm-drop-layer", lambda timm: _resnetv2(timm, norm_layer=functools.partial(
        timm.layers.BatchNormAct2d, drop_layer=timm.layers.DropBlock2d)), ["norm_layer's drop_layer"]),
    ("global-pool-max-top", lambda timm: timm.create_model("resnetv2_18", pretrained=False, global_pool="max"),
     ["global_pool='max' with a classifier"]),
    ("global-pool-avgmax", lambda timm: _resnetv2(timm, global_pool="avgmax"), ["global_pool='avgmax'"]),
]


@pytest.mark.torch
@pytest.mark.parametrize(("build", "texts"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_unexpressible_resnetv2_options_are_refused_by_name(torch, timm, build, texts):
    assert_refused(lambda: rc.from_peer(build(timm)), texts)


@pytest.mark.torch
@pytest.mark.parametrize(("spec", "texts"), [
    (rc.get_spec("keras_resnet50v2"), ["stride_block='last'", "conv_bias=True"]),
    (_V2_18.replace(attention="se"), ["attention='se'"]),
    (_V2.replace(groups=32, width_per_group=4), ["groups=32"]),
    (_V2.replace(stem="deep_tiered", stem_width=32, stem_pool_padding="zero"), ["no zero-padded 'tiered'"]),
    (_V2_18, ["preprocessing='caffe'"]),
    (_V2_18.replace(stem_width=20), ["stem_width=20"]),
    (_V2.replace(base_planes=20), ["base_planes=20"]),
], ids=["keras-v2", "se", "groups", "tiered-zero-pad", "caffe", "stem-width", "base-planes"])
def test_to_peer_refuses_what_resnetv2_cannot_build(torch, timm, spec, texts):
    record = rc.WeightsInfo(preprocessing="caffe") if "preprocessing='caffe'" in texts else None
    assert_refused(lambda: rc.to_peer(spec, random_weights(spec), "timm", info=record), texts,
                   match="timm cannot build")
