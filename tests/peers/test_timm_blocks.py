"""timm's ECA, anti-aliasing (avg / blur), ResNet-RS and SENet-154 families: one small member each.

Each member is timm's own architecture with fewer blocks and narrower stages (timm kwargs), holding
random weights with perturbed BatchNorm statistics. Inputs are odd (97x129): timm's avg-pool
anti-aliasing cannot run at 65x77 (an odd feature map meets a ceil-mode shortcut pool), ours neither.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from timm_helpers import assert_keras_matches, assert_refused, assert_timm_round_trip, holding, run

import resnet_core as rc
from resnet_core.io import infer_spec, read_weights, write_weights
from resnet_core.plan import binomial_filter, eca_kernel_size
from resnet_core.testing import (
    assert_same_weights,
    loaded,
    random_images,
    random_weights,
    relative_error,
    to_channels_last,
)

HEIGHT, WIDTH, BATCH = 97, 129, 1
SMALL = {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128)}
SMALL_SPEC = {"layers": (1, 1, 1, 1), "base_planes": 16}

# family -> (timm architecture, extra timm kwargs, extra spec changes on top of the preset of that name)
FAMILIES = {
    "eca": ("ecaresnet26t", {}, {}),
    "aa-avg": ("resnetaa50d", {}, {}),
    "aa-blur": ("resnetblur50", {}, {}),
    "aa-blur-os16": ("resnetblur50", {"output_stride": 16}, {"output_stride": 16}),  # a stride-1 blur
    "resnet-rs": ("resnetrs50", {}, {}),
    "senet154": ("senet154", {"base_width": 64, "cardinality": 1}, {"width_per_group": 64, "groups": 1}),
    "eca-blur": ("ecaresnet26t", {"aa_layer": "BlurPool2d"}, {"anti_alias": "blur"}),
}
# Keras builds are slow on JAX (each new layer shape compiles): ECA and the blur share one model.
KERAS_FAMILIES = ("eca-blur", "aa-avg", "resnet-rs", "senet154")


def expected_spec(family: str) -> rc.ResNetSpec:
    name, _, changes = FAMILIES[family]
    return rc.get_spec(name).replace(**SMALL_SPEC, **changes)


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras




def _peer(torch, timm, family: str, seed: int):
    """timm's small member holding random_weights of the expected spec, loaded by timm's own names."""
    name, kwargs, _ = FAMILIES[family]
    spec = expected_spec(family)
    weights = random_weights(spec, seed=seed)
    if "aa_layer" in kwargs:
        kwargs = {**kwargs, "aa_layer": getattr(timm.layers, kwargs["aa_layer"])}
    return spec, weights, holding(torch, timm.create_model(name, pretrained=False, **SMALL, **kwargs), weights)


@pytest.mark.torch
@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_infers_the_spec_and_is_bit_identical_in_torch(torch, timm, family, parity_record):
    spec, weights, peer = _peer(torch, timm, family, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    assert_same_weights(got, weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    error = relative_error(run(torch, loaded(got_spec, got), images), run(torch, peer, images))
    parity_record(f"timm:{family}", "torch logits", error)
    assert error == 0.0  # the same ops in the same order
    del peer
    gc.collect()


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("family", KERAS_FAMILIES)
def test_import_runs_in_our_keras_model(torch, timm, keras, family, parity_record):
    _, weights, peer = _peer(torch, timm, family, seed=3)
    got = assert_keras_matches(torch, peer, parity_record, f"timm:{family}", size=(HEIGHT, WIDTH), batch=BATCH,
                               keep_weights=True)
    assert_same_weights(got, weights)


@pytest.mark.keras
def test_keras_files_keep_eca_and_blur(keras, tmp_path):
    """.weights.h5 (written by us, read by Keras) and .keras (the BlurPool2D layer reloads by name)."""
    spec = expected_spec("eca-blur").replace(num_classes=7)
    weights = random_weights(spec, seed=10)
    model = loaded(spec, weights, "keras")
    images = to_channels_last(random_images(BATCH, HEIGHT, WIDTH, seed=11))
    want = keras.ops.convert_to_numpy(model(images, training=False))
    fresh = rc.build(spec, backend="keras")
    fresh.load_weights(write_weights(tmp_path / "w.weights.h5", weights, spec))
    assert_same_weights(rc.get_weights(fresh), weights)
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert np.array_equal(keras.ops.convert_to_numpy(back(images, training=False)), want)
    keras.backend.clear_session()


@pytest.mark.torch
@pytest.mark.parametrize("family", ["eca", "aa-avg", "aa-blur-os16", "resnet-rs", "senet154"])
def test_export_to_timm_round_trips(torch, timm, family):
    spec = expected_spec(family)
    assert_timm_round_trip(torch, timm, spec, random_weights(spec, seed=5), seed=6, size=(HEIGHT, WIDTH), batch=BATCH)


@pytest.mark.torch
def test_zero_padded_blur_matches_timm(torch, timm):
    """anti_alias='blur_zero' is timm's BlurPool2d(pad_mode='constant') (aa_layer='blurpc'), stem included."""
    spec = rc.get_spec("resnetblur50").replace(**SMALL_SPEC, anti_alias="blur_zero")
    weights = random_weights(spec, seed=7)
    peer = rc.to_peer(spec, weights, "timm")
    assert peer.layer2[0].aa.pad_mode == peer.maxpool[1].pad_mode == "constant"
    assert rc.from_peer(peer)[0] == spec
    images = random_images(BATCH, HEIGHT, WIDTH, seed=8)
    assert np.array_equal(run(torch, peer, images), run(torch, loaded(spec, weights), images))


@pytest.mark.torch
def test_eca_kernel_sizes_and_blur_taps_are_timms(torch, timm):
    from timm.layers import BlurPool2d, EcaModule

    for channels in (1, 2, 7, 8, 63, 64, 256, 511, 512, 1024, 2048, 4096):
        assert eca_kernel_size(channels) == EcaModule(channels).conv.kernel_size[0], channels
    for size in range(2, 8):
        taps = np.asarray(binomial_filter(size), dtype=np.float32)
        assert np.array_equal(np.outer(taps, taps), BlurPool2d(filt_size=size).filt[0, 0].numpy())


# (id, timm model, kwargs, text the refusal must contain)
REFUSALS = [
    ("circular-eca", "resnet18", {"block_args": {"attn_layer": "ceca"}}, "attn_layer=CecaModule"),
    ("eca-mlp", "resnet18", {"block_args": {"attn_layer": "eca", "use_mlp": True}}, "an EcaModule variant"),
]


@pytest.mark.torch
@pytest.mark.parametrize(("name", "kwargs", "text"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_what_timm_builds_beyond_the_spec_is_refused_by_name(torch, timm, name, kwargs, text):
    if kwargs.get("block_args", {}).get("use_mlp"):
        import functools

        kwargs = {"block_args": {"attn_layer": functools.partial(timm.layers.EcaModule, use_mlp=True)}}
    peer = timm.create_model(name, pretrained=False, **kwargs)
    assert_refused(lambda: rc.from_peer(peer), [text])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_weight_files_round_trip_and_infer_the_spec(tmp_path, family):
    spec = expected_spec(family)
    weights = random_weights(spec, seed=9)
    path = write_weights(tmp_path / "w.safetensors", weights, spec)
    loaded_back = read_weights(path)
    assert loaded_back.spec == spec
    assert_same_weights(loaded_back.weights, weights)
    inferred, _ = infer_spec({k: v.shape for k, v in weights.items()})
    # anti-aliasing and dilation own no tensor: weights cannot show them
    assert inferred == spec.replace(anti_alias=None, output_stride=32)


@pytest.mark.parametrize(("changes", "field"), [
    ({"anti_alias": "gauss"}, "anti_alias"),
    ({"anti_alias": "avg", "preact": True}, "anti_alias"),
    ({"replace_stem_pool": True, "stem_pool": False}, "replace_stem_pool"),
    ({"replace_stem_pool": True, "anti_alias": "blur"}, "replace_stem_pool"),
    ({"down_kernel_size": 2}, "down_kernel_size"),
    ({"down_kernel_size": 3, "downsample": "avg"}, "down_kernel_size"),
    ({"reduce_first": 3}, "reduce_first"),
    ({"attention": "cbam"}, "attention"),
], ids=lambda v: str(v))
def test_invalid_timm_options_name_the_field(changes, field):
    with pytest.raises(rc.SpecError, match=rf"ResNetSpec\.{field}"):
        rc.ResNetSpec(**changes)


def test_plan_places_the_anti_aliasing_and_the_replaced_stem_pool():
    plan = rc.make_plan(rc.get_spec("resnetblur50"))
    conv2 = plan.blocks[3].main[1]  # layer2.0: the strided 3x3 runs at stride 1, the blur subsamples
    assert (conv2.conv.stride, conv2.pool.name, conv2.pool.stride, conv2.pool.pad_mode) == \
        (1, "layer2.0.aa", 2, "reflect")
    assert plan.blocks[4].main[1].pool is None
    assert (plan.stem.pool.stride, plan.stem.blur.name) == (1, "maxpool.1")
    rs = rc.make_plan(rc.get_spec("resnetrs50"))
    assert rs.stem.pool is None and [u.conv.name for u in rs.stem.units][-1] == "maxpool.0"
    assert rs.stem.units[-1].conv.stride == 2 and rs.output_size(224, 224) == (7, 7)
    senet = rc.make_plan(rc.get_spec("senet154"))
    assert senet.blocks[0].main[0].conv.out_channels * 2 == senet.blocks[0].main[1].conv.out_channels
    assert [b.shortcut.conv.kernel_size for b in senet.blocks if b.shortcut] == [1, 3, 3, 3]
