"""transformers peer: ResNetModel / ResNetForImageClassification built locally from configs (nothing downloaded)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from timm_helpers import within_peer_rounding

import resnet_core as rc
from resnet_core.testing import loaded, random_images, random_weights, relative_error, to_channels_last

HEIGHT, WIDTH, BATCH = 65, 77, 2

SMALL_BASIC = dict(layer_type="basic", depths=[1, 2, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=8,
                   num_labels=7)
SMALL_BOTTLENECK = dict(layer_type="bottleneck", depths=[1, 1, 2, 1], hidden_sizes=[64, 128, 256, 512],
                        embedding_size=16, downsample_in_bottleneck=True, num_labels=5)
# (config, class, the spec from_peer must infer)
CASES = {
    "small-basic": (SMALL_BASIC, "ResNetForImageClassification", rc.ResNetSpec(
        block="basic", layers=(1, 2, 1, 1), num_classes=7, stem_width=8, base_planes=16)),
    "small-bottleneck-stride-in-1x1": (SMALL_BOTTLENECK, "ResNetForImageClassification", rc.ResNetSpec(
        layers=(1, 1, 2, 1), num_classes=5, stem_width=16, base_planes=16, stride_in_1x1=True)),
    "small-basic-resnetmodel": (SMALL_BASIC, "ResNetModel", rc.ResNetSpec(
        block="basic", layers=(1, 2, 1, 1), num_classes=0, include_top=False, pooling="avg", stem_width=8,
        base_planes=16)),
    # microsoft/resnet-50's config is ResNetConfig's default: torchvision's resnet50 exactly.
    "resnet-50": ({"num_labels": 1000}, "ResNetForImageClassification", rc.get_spec("resnet50")),
}
KERAS_CASES = ("small-basic", "small-bottleneck-stride-in-1x1", "small-basic-resnetmodel")



@pytest.fixture(scope="module")
def transformers(need, torch):
    return need("torch", "transformers")


def _randomise(torch, model, seed):
    """Every tensor by its transformers name and role, away from its init (BN statistics included)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            shape = tuple(tensor.shape)
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                value = rng.uniform(0.5, 2.0, shape)
            elif name.endswith(("running_mean", "bias")):
                value = rng.normal(0.0, 0.2, shape)
            elif tensor.ndim == 1:  # BN gamma
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
            tensor.copy_(torch.from_numpy(value.astype("float32")))
    return model.eval()


def _peer(torch, transformers, key, seed=0):
    config, cls, spec = CASES[key]
    model = getattr(transformers, cls)(transformers.ResNetConfig(**config))
    return spec, _randomise(torch, model, seed)


def _run_peer(torch, model, images):
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    return (out.logits if hasattr(out, "logits") else torch.flatten(out.pooler_output, 1)).numpy()


def _run(torch, model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


@pytest.mark.torch
@pytest.mark.parametrize("key", list(CASES), ids=str)
def test_from_peer_infers_spec_and_matches_in_torch(torch, transformers, key, parity_record):
    spec, peer = _peer(torch, transformers, key, seed=1)
    got_spec, got = rc.from_peer(peer)
    assert got_spec == spec
    state = peer.state_dict()
    hf_name = ("resnet." if hasattr(peer, "classifier") else "") + "encoder.stages.0.layers.0.layer.1.normalization"
    assert np.array_equal(got["layer1.0.bn2.running_var"], state[f"{hf_name}.running_var"].numpy())
    images = random_images(BATCH, HEIGHT, WIDTH, seed=2)
    error = within_peer_rounding(torch, peer, _run(torch, loaded(got_spec, got), images), images, _run_peer)
    parity_record(f"transformers:{key}", "torch logits", error)
    del peer, got
    gc.collect()


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("key", KERAS_CASES, ids=str)
def test_import_runs_in_our_keras_model(torch, transformers, key, parity_record):
    import keras

    _, peer = _peer(torch, transformers, key, seed=3)
    spec, weights = rc.from_peer(peer)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=4)
    out = keras.ops.convert_to_numpy(loaded(spec, weights, "keras")(to_channels_last(images), training=False))
    error = relative_error(out, _run_peer(torch, peer, images))
    parity_record(f"transformers:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error < 1e-5
    keras.backend.clear_session()


@pytest.mark.torch
@pytest.mark.parametrize("key", ["small-basic", "small-bottleneck-stride-in-1x1", "small-basic-resnetmodel"],
                         ids=str)
def test_to_peer_round_trip_and_outputs(torch, transformers, key):
    spec = CASES[key][2]
    weights = random_weights(spec, seed=5)
    peer = rc.to_peer(spec, weights, "transformers")
    assert type(peer).__name__ == CASES[key][1] and not peer.training
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert list(back) == list(weights) and all(np.array_equal(back[k], weights[k]) for k in weights)
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    assert np.array_equal(_run_peer(torch, peer, images), _run(torch, loaded(spec, weights), images))


@pytest.mark.torch
@pytest.mark.parametrize(("changes", "text"), [
    ({"downsample_in_first_stage": True}, "downsample_in_first_stage=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"hidden_sizes": [16, 32, 48, 128]}, "hidden_sizes=[16, 32, 48, 128]"),
], ids=["downsample-in-first-stage", "gelu", "hidden-sizes"])
def test_unexpressible_configs_are_refused_by_name(torch, transformers, changes, text):
    peer = transformers.ResNetForImageClassification(transformers.ResNetConfig(**{**SMALL_BASIC, **changes}))
    with pytest.raises(rc.PeerError) as info:
        rc.from_peer(peer)
    assert text in str(info.value)


@pytest.mark.torch
def test_backbone_class_is_refused(torch, transformers):
    peer = transformers.ResNetBackbone(transformers.ResNetConfig(**SMALL_BASIC))
    with pytest.raises(rc.PeerError, match="ResNetBackbone"):
        rc.from_peer(peer)


@pytest.mark.torch
@pytest.mark.parametrize(("name", "text"), [
    ("resnext50_32x4d", "groups=32"),
    ("resnet50d", "stem='deep'"),
], ids=["groups", "deep-stem"])
def test_to_peer_refuses_what_resnetconfig_cannot_say(torch, transformers, name, text):
    with pytest.raises(rc.PeerError, match="transformers cannot build") as info:
        rc.to_peer(name, random_weights(name), "transformers")
    assert text in str(info.value)


@pytest.mark.torch
@pytest.mark.parametrize("key", ["small-basic", "small-basic-resnetmodel", "resnet-50"], ids=str)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weight_files_in_transformers_naming_are_read_and_converted(torch, transformers, tmp_path, capsys, key,
                                                                    suffix):
    """A state_dict saved from transformers keeps its names; reading or converting the file translates them
    with the peer's own table, and the spec comes from the tensors as for any file without one."""
    from safetensors.torch import save_file

    from resnet_core.cli import main

    expected, model = _peer(torch, transformers, key, seed=5)
    _, imported = rc.from_peer(model)
    source = tmp_path / f"hf{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, source) if suffix == ".pth" else save_file(state, str(source))
    spec, weights = rc.read_weights(source)
    # What names and shapes show; a headless ResNetModel's pooling and class count are not among them.
    assert spec.replace(pooling=expected.pooling, num_classes=expected.num_classes, name=expected.name) == expected
    assert list(weights) == list(imported) and all(np.array_equal(weights[k], imported[k]) for k in imported)
    if key == "resnet-50":
        assert spec.name == "resnet50"
    assert main(["info", str(source)]) == 0
    assert "in transformers' naming" in capsys.readouterr().out
    target = tmp_path / "out.safetensors"
    assert main(["convert", str(source), str(target), "--quiet"]) == 0
    assert all(np.array_equal(rc.read_weights(target).weights[k], v) for k, v in imported.items())
