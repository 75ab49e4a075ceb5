"""timm's ResNetV2(preact=False), the post-activation network of its ViT-hybrid backbones.

It is the spec's post-activation bottleneck network (``preact=False``), the same function as timm's
ResNet of that spec: it imports to that spec, and exports as timm's ResNet unless only ResNetV2 can
build the spec (weight standardisation, a projected first block, three stages) or
``model_class="ResNetV2"`` asks. Small members, built by timm's own ResNetV2 class, with perturbed
norm statistics at 65x77: up to the classifier bit-identical to timm (the same ops), logits within
10x timm's own fp32-vs-float64 error (timm's 1x1-conv classifier sums in another order), Keras within 1e-5
on every engine.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_keras_matches, assert_refused, perturb, run, within_peer_rounding

import resnet_core as rc
from resnet_core.errors import InputError
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights

CLASSES = 10
_SMALL = {"layers": (1, 1, 1, 1), "base_planes": 32, "num_classes": CLASSES}
_R50 = rc.get_spec("resnet50").replace(**_SMALL)
_R50D = rc.get_spec("resnet50d").replace(**_SMALL)

# id -> (ResNetV2 kwargs on top of the defaults below, the spec from_peer must infer, the class to_peer builds)
CASES = {
    "bn-7x7": ({}, _R50, "ResNet"),
    "bn-deep-avg-os16": ({"stem_type": "deep", "avg_down": True, "output_stride": 16},
                         _R50D.replace(output_stride=16), "ResNet"),
    "bn-deep-fixed-headless": ({"stem_type": "deep_fixed", "num_classes": 0, "global_pool": "max"},
                                 _R50.replace(stem="deep", stem_width=32, stem_pool_padding="zero",
                                              include_top=False, num_classes=0, pooling="max"), "ResNet"),
    # BiT's layers: StdConv2d and GroupNormAct; only ResNetV2 standardises weights
    "bit-std-conv-group-norm": ({"conv": "std", "norm": "group"}, _R50.replace(norm="group", std_conv=True),
                                "ResNetV2"),
    # stage 1 keeps the stem's width, yet ResNetV2 projects it: project_first (timm's ResNet would not)
    "projected-first-block": ({"stem_chs": 128}, _R50.replace(stem_width=128, project_first=True), "ResNetV2"),
    "three-stages": ({"layers": [1, 2, 1], "channels": (128, 256, 512)},
                     _R50.replace(layers=(1, 2, 1)), "ResNetV2"),
}
KERAS_CASES = ("bit-std-conv-group-norm", "projected-first-block")  # bn-*: the specs timm's ResNet tests


def _resnetv2(timm, conv: str = "plain", norm: str = "batch", **kwargs):
    """timm's ResNetV2 with preact=False, its conv and norm layers named as in CASES."""
    from timm.layers import BatchNormAct2d, GroupNormAct, StdConv2d, create_conv2d

    layers = {"conv_layer": StdConv2d if conv == "std" else create_conv2d,
              "norm_layer": functools.partial(GroupNormAct, num_groups=32) if norm == "group" else BatchNormAct2d}
    args = {"layers": [1, 1, 1, 1], "channels": (128, 256, 512, 1024), "num_classes": CLASSES, **layers, **kwargs}
    return timm.models.resnetv2.ResNetV2(preact=False, **args)


def _peer(torch, timm, key, seed):
    torch.manual_seed(seed)
    return perturb(torch, _resnetv2(timm, **CASES[key][0]), seed)


@pytest.mark.torch
@pytest.mark.parametrize("key", list(CASES))
def test_import_is_the_post_activation_spec_and_runs_as_timm(torch, timm, key, parity_record):
    peer = _peer(torch, timm, key, seed=1)
    spec, weights = rc.from_peer(peer)
    assert spec == CASES[key][1] and not spec.preact
    state = {k: v for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(weights) == len(state)
    assert sum(v.size for v in weights.values()) == sum(v.numel() for v in state.values())
    last = f"layer{len(spec.layers)}.0"
    stem_norm = "stem.norm3" if spec.stem != "7x7" else "stem.norm"
    pairs = {f"{stem_norm}.weight": "bn1.weight", "stages.0.blocks.0.norm3.bias": "layer1.0.bn3.bias",
             "stages.1.blocks.0.downsample.norm.bias":
                 f"layer2.0.downsample.{2 if spec.downsample == 'avg' else 1}.bias"}
    assert all(np.array_equal(weights[c], state[p].numpy()) for p, c in pairs.items())
    x = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH, seed=2))
    ours = loaded(spec, weights)
    with torch.no_grad():
        assert torch.equal(ours.forward_taps(x)[last], peer.forward_features(x))  # the same ops, the same bits
        error = float((ours(x) - peer(x)).abs().max() / peer(x).abs().max())
    if spec.include_top:
        error = within_peer_rounding(torch, peer, ours(x).detach().numpy(), x.numpy())
    else:
        assert error == 0.0
    parity_record(f"timm:resnetv2-post-{key}", "torch logits" if spec.include_top else "torch features", error)


@pytest.mark.torch
def test_it_imports_to_the_spec_of_timms_resnet(torch, timm):
    """ResNetV2(preact=False) and timm's ResNet of one spec are one function: same spec, same weights."""
    peer = _peer(torch, timm, "bn-7x7", seed=3)
    spec, weights = rc.from_peer(peer)
    resnet = rc.to_peer(spec, weights, "timm")
    assert isinstance(resnet, timm.models.resnet.ResNet)
    back, back_weights = rc.from_peer(resnet)
    assert back == spec
    assert_same_weights(back_weights, weights)
    x = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH, seed=4))
    with torch.no_grad():
        assert torch.equal(resnet.forward_features(x), peer.forward_features(x))


@pytest.mark.torch
@pytest.mark.parametrize("key", list(CASES))
def test_export_round_trips(torch, timm, key):
    spec = CASES[key][1]
    weights = random_weights(spec, seed=5)
    peer = rc.to_peer(spec, weights, "timm")
    assert type(peer).__name__ == CASES[key][2] and not peer.training
    if CASES[key][2] == "ResNet":  # asked for, ResNetV2 builds it too
        peer = rc.to_peer(spec, weights, "timm", model_class="ResNetV2")
        assert isinstance(peer, timm.models.resnetv2.ResNetV2) and type(peer.norm).__name__ == "Identity"
    back, back_weights = rc.from_peer(peer)
    assert back == spec
    assert_same_weights(back_weights, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    ours = run(torch, loaded(spec, weights), images)
    if spec.include_top:
        within_peer_rounding(torch, peer, ours, images)
    else:
        assert np.array_equal(ours, run(torch, peer, images))


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("key", KERAS_CASES)
def test_import_runs_in_our_keras_model(torch, timm, key, parity_record):
    peer = _peer(torch, timm, key, seed=7)
    assert_keras_matches(torch, peer, parity_record, f"timm:resnetv2-post-{key}")


# Fields no tensor shows: a weights file without metadata reads back with their defaults.
_UNSEEN = {"output_stride": 32, "stem_pool_padding": "-inf", "std_conv": False}


@pytest.mark.torch
@pytest.mark.parametrize("key", ["bn-deep-fixed-headless", "bit-std-conv-group-norm", "projected-first-block"])
def test_weight_files_round_trip_and_infer_the_spec(torch, timm, tmp_path, key):
    spec, weights = rc.from_peer(_peer(torch, timm, key, seed=8))
    path = rc.write_weights(tmp_path / "w.safetensors", weights, spec)
    back = rc.read_weights(path)
    assert back.spec == spec
    assert_same_weights(back.weights, weights)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "bare.pth")  # no spec stored
    inferred = rc.read_weights(tmp_path / "bare.pth")
    pooling = {} if spec.include_top else {"pooling": inferred.spec.pooling}  # a headless file cannot show it
    assert inferred.spec == spec.replace(**_UNSEEN, **pooling)
    assert_same_weights(inferred.weights, weights)


@pytest.mark.torch
@pytest.mark.parametrize(("build", "texts"), [
    (lambda timm: _resnetv2(timm, act_layer="silu"), ["activation SiLU (act_layer"]),
    (lambda timm: _resnetv2(timm, norm_layer=timm.layers.EvoNorm2dS0), ["preact=False"]),
    (lambda timm: _resnetv2(timm, stem_type="same"), ["stem_type 'same' / 'deep_same'"]),
], ids=["silu", "evonorm", "stem-same"])
def test_what_the_spec_cannot_say_is_refused_by_name(torch, timm, build, texts):
    assert_refused(lambda: rc.from_peer(build(timm)), texts)


@pytest.mark.torch
@pytest.mark.parametrize(("spec", "model_class", "texts"), [
    (_R50.replace(block="basic", layers=(1, 1, 1), stem_width=32, width_per_group=64), None,
     ["layers=(1, 1, 1)", "nor can timm's ResNetV2(preact=False)", "block='basic'"]),
    (_R50.replace(attention="se", std_conv=True), None, ["std_conv=True", "attention='se'"]),
    (_R50.replace(reduce_first=2), "ResNetV2", ["reduce_first=2"]),
    (_R50.replace(stem_width=128), "ResNetV2", ["project_first=False"]),
    (_R50.replace(stem_width=128, project_first=True), "ResNet", ["project_first=True"]),
    (rc.get_spec("resnetv2_50").replace(**_SMALL), "ResNet", ["preact=True"]),
], ids=["basic-3-stages", "se-std-conv", "reduce-first", "unprojected-first", "resnet-projected", "resnet-preact"])
def test_to_peer_refuses_what_neither_class_builds(torch, timm, spec, model_class, texts):
    options = {} if model_class is None else {"model_class": model_class}
    assert_refused(lambda: rc.to_peer(spec, random_weights(spec), "timm", **options), texts, match="timm cannot build")


@pytest.mark.torch
def test_unknown_model_class_is_refused(torch, timm):
    assert_refused(lambda: rc.to_peer(_R50, random_weights(_R50), "timm", model_class="ResNetV3"),
                   ["'ResNetV3'", "('ResNet', 'ResNetV2')"], error=InputError)
