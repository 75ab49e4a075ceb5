"""timm peer: deep stems, "d" shortcuts, SE and output strides inferred from live timm models; refusals by option."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from timm_helpers import BATCH, HEIGHT, WIDTH, assert_keras_matches, assert_refused, holding, run, within_peer_rounding

import resnet_core as rc
from resnet_core.testing import assert_same_weights, loaded, random_images, random_weights

# (timm model name, create_model kwargs, the spec from_peer must infer)
CASES = {
    "resnet18d": ("resnet18d", {}, rc.get_spec("resnet18d")),
    "resnet26t": ("resnet26t", {}, rc.get_spec("resnet26t")),
    "resnet50d": ("resnet50d", {}, rc.get_spec("resnet50d")),
    "resnext50d_32x4d": ("resnext50d_32x4d", {}, rc.get_spec("resnext50d_32x4d")),
    "seresnext26d_32x4d": ("seresnext26d_32x4d", {}, rc.get_spec("seresnext26d_32x4d")),
    "wide_resnet50_2": ("wide_resnet50_2", {}, rc.get_spec("wide_resnet50_2")),
    "seresnext26d_32x4d-os16": ("seresnext26d_32x4d", {"output_stride": 16},
                                rc.get_spec("seresnext26d_32x4d").replace(output_stride=16)),
    "resnet26t-os8-headless": ("resnet26t", {"output_stride": 8, "num_classes": 0},
                               rc.get_spec("resnet26t").replace(output_stride=8, include_top=False, pooling="avg",
                                                                num_classes=0)),
}
# Imports also run in our Keras model (on every engine): the small ones, each structural rule once.
KERAS_CASES = ("resnet18d", "resnet26t", "seresnext26d_32x4d-os16", "resnet26t-os8-headless")


def _peer(torch, timm, key, seed=0):
    """A timm model holding random_weights of the expected spec, set by timm's own state_dict names."""
    name, kwargs, spec = CASES[key]
    weights = random_weights(spec, seed=seed)
    return spec, weights, holding(torch, timm.create_model(name, pretrained=False, **kwargs), weights)


@pytest.mark.torch
@pytest.mark.parametrize("key", list(CASES), ids=str)
def test_from_peer_infers_spec_and_matches_in_torch(torch, timm, key, parity_record):
    spec, weights, peer = _peer(torch, timm, key, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    assert got_spec.name == CASES[key][0]  # the preset's (or timm's architecture) name
    assert_same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    error = within_peer_rounding(torch, peer, run(torch, loaded(got_spec, got), images), images)
    parity_record(f"timm:{key}", "torch logits", error)
    del peer, got, weights
    gc.collect()


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("key", KERAS_CASES, ids=str)
def test_import_runs_in_our_keras_model(torch, timm, key, parity_record):
    _, _, peer = _peer(torch, timm, key, seed=3)
    assert_keras_matches(torch, peer, parity_record, f"timm:{key}")


ROUND_TRIP = {
    "resnet26t": rc.get_spec("resnet26t"),
    "seresnext26d_32x4d-os16": rc.get_spec("seresnext26d_32x4d").replace(output_stride=16),
    # A ratio timm's default (1/16) would not reproduce, a max-pooled headless model, "tf" normalisation.
    "se-ratio-quarter-maxpool-tf": rc.get_spec("resnet18d").replace(
        attention="se", se_ratio=0.25, include_top=False, pooling="max", num_classes=0),
    "featuremap-no-stem-pool": rc.get_spec("resnet18").replace(include_top=False, pooling=None, num_classes=0,
                                                               stem_pool=False, bn_eps=1e-3),
    # timm counts the stem as stride 4 even without its pool: the exporter must double output_stride.
    "no-stem-pool-os8": rc.get_spec("resnet18").replace(stem_pool=False, output_stride=8, num_classes=10),
}


@pytest.mark.torch
@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=str)
def test_to_peer_round_trip_and_outputs(torch, timm, key):
    spec = ROUND_TRIP[key]
    weights = random_weights(spec, seed=5)
    info = rc.WeightsInfo(preprocessing="tf") if key.endswith("-tf") else None
    peer = rc.to_peer(spec, weights, "timm", info=info)
    assert isinstance(peer, timm.models.resnet.ResNet) and not peer.training
    assert rc.peer_info(peer).preprocessing == ("tf" if info else "torch")
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert_same_weights(back, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    assert np.array_equal(run(torch, peer, images), run(torch, loaded(spec, weights), images))
    mean = timm.data.resolve_data_config({}, model=peer)["mean"]
    assert mean == ((0.5, 0.5, 0.5) if info else (0.485, 0.456, 0.406))


@pytest.mark.torch
def test_se_ratio_is_inferred_from_reduced_widths(torch, timm):
    """seresnet with rd_ratio=1/4: every SE width is make_divisible(c / 4), so se_ratio must be 0.25."""
    from timm.layers import SEModule

    peer = timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=3,
                                     block_args={"attn_layer": lambda c, **kw: SEModule(c, rd_ratio=0.25, **kw)})
    spec, _ = rc.from_peer(peer)
    assert (spec.attention, spec.se_ratio) == ("se", 0.25)


# (id, create_model name, kwargs, text the refusal must contain)
# (anti-aliasing, ECA, replace_stem_pool, down_kernel_size and block_reduce_first: test_timm_blocks.py)
REFUSALS = [
    ("attn-cbam", "resnet18", {"block_args": {"attn_layer": "cbam"}}, "attn_layer=CbamModule"),
    ("act-silu", "resnet18", {"act_layer": "silu"}, "activation SiLU (act_layer"),
    ("global-pool-max-top", "resnet18", {"global_pool": "max"}, "global_pool='max' with a classifier"),
]


@pytest.mark.torch
@pytest.mark.parametrize(("name", "kwargs", "text"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_unexpressible_timm_options_are_refused_by_name(torch, timm, name, kwargs, text):
    peer = timm.create_model(name, pretrained=False, **kwargs)
    assert_refused(lambda: rc.from_peer(peer), [text])


@pytest.mark.torch
@pytest.mark.parametrize(("spec", "text"), [
    (rc.get_spec("keras_resnet50"), "stride_in_1x1=True"),
    (rc.get_spec("resnet18").replace(stem_width=32), "stem_width=32 with the 7x7 stem"),
    (rc.get_spec("resnet18"), "preprocessing='caffe'"),
], ids=["stride-in-1x1", "7x7-stem-width", "caffe"])
def test_to_peer_refuses_what_timm_cannot_build(torch, timm, spec, text):
    record = rc.WeightsInfo(preprocessing="caffe") if "caffe" in text else None
    assert_refused(lambda: rc.to_peer(spec, random_weights(spec), "timm", info=record), [text],
                   match="timm cannot build")


@pytest.mark.torch
def test_to_peer_takes_torch_tensors_that_require_grad(torch, timm):
    spec = rc.get_spec("resnet18d")
    weights = random_weights(spec, seed=8)
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in weights.items()}
    back_spec, back = rc.from_peer(rc.to_peer(spec, tensors, "timm"))
    assert back_spec == spec
    assert_same_weights(back, weights)
