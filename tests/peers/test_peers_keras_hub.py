"""keras-hub peer: ResNetBackbone / ResNetImageClassifier (v1, vd, v2) on the current Keras engine, randomised.

Models are built from keras-hub's own constructors (no presets, nothing downloaded), small (one or two
blocks per stack) and randomised by Keras variable name, BN statistics included, so the import's name
table is checked against keras-hub's layer names rather than against itself. Outputs are compared with
the classifier's pre-activation logits (``keras_hub_peer.logits``) on an odd 65x77 input.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.peers import peer_of
from resnet_core.spec import ResNetSpec
from resnet_core.testing import random_weights, randomise_keras_variables, relative_error, softmax, to_channels_first

HEIGHT, WIDTH, BATCH = 65, 77, 2

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def keras_hub(need):
    return need("keras", "keras_hub")


@pytest.fixture(scope="module")
def khp():
    from resnet_core.peers import keras_hub_peer

    return keras_hub_peer


def _images(seed):
    return np.random.default_rng(seed).normal(0.0, 1.0, (BATCH, HEIGHT, WIDTH, 3)).astype("float32")


STEM_7X7 = {"input_conv_filters": [64], "input_conv_kernel_sizes": [7]}
STEM_DEEP = {"input_conv_filters": [32, 32, 64], "input_conv_kernel_sizes": [3, 3, 3]}
STEM_TIERED = {"input_conv_filters": [24, 32, 64], "input_conv_kernel_sizes": [3, 3, 3]}
# keras-hub's timm loader: scale 1 / 255 / std, offset -mean / std ("torch"); x / 127.5 - 1 is "tf".
TORCH_CONVERTER = {"scale": [1.0 / 255.0 / s for s in (0.229, 0.224, 0.225)],
                   "offset": [-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]}
TF_CONVERTER = {"scale": 1.0 / 127.5, "offset": -1.0}


def _backbone(keras_hub, blocks=(1, 1, 1, 1), **kwargs):
    stages = len(blocks)
    kwargs = {**STEM_7X7, "block_type": "bottleneck_block", **kwargs}
    return keras_hub.models.ResNetBackbone(
        stackwise_num_filters=[64 * 2**s for s in range(stages)], stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1] + [2] * (stages - 1), **kwargs)


def _classifier(keras_hub, backbone, converter=None, **kwargs):
    preprocessor = None
    if converter is not None:
        preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(
            image_converter=keras_hub.layers.ResNetImageConverter(**converter))
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, preprocessor=preprocessor, **kwargs)


# case -> (backbone kwargs, classifier kwargs or None for a bare backbone, expected spec,
#          spot checks (keras layer, variable, canonical tensor))
CASES = {
    "v1-bottleneck": (
        {"blocks": (2, 1, 1, 1)}, {"num_classes": 10, "converter": TORCH_CONVERTER},
        ResNetSpec(layers=(2, 1, 1, 1), num_classes=10),
        [("stack1_block0_2_conv", "kernel", "layer2.0.conv2.weight"),
         ("stack0_block0_0_bn", "moving_mean", "layer1.0.downsample.1.running_mean"),
         ("conv1_bn", "moving_variance", "bn1.running_var"), ("predictions", "kernel", "fc.weight")],
    ),
    "v1-basic-headless": (
        {"blocks": (2, 1, 1, 1), "block_type": "basic_block"}, None,
        ResNetSpec(block="basic", layers=(2, 1, 1, 1), include_top=False, num_classes=0),
        [("stack0_block1_2_bn", "gamma", "layer1.1.bn2.weight"),
         ("stack1_block0_0_conv", "kernel", "layer2.0.downsample.0.weight")],
    ),
    "vd-bottleneck-softmax": (
        {**STEM_DEEP, "block_type": "bottleneck_block_vd"}, {"num_classes": 10, "activation": "softmax"},
        ResNetSpec(layers=(1, 1, 1, 1), stem="deep", stem_width=32, downsample="avg", num_classes=10),
        [("conv2_conv", "kernel", "conv1.3.weight"), ("conv3_bn", "beta", "bn1.bias"),
         ("stack1_block0_0_conv", "kernel", "layer2.0.downsample.1.weight"),
         ("stack1_block0_0_bn", "moving_variance", "layer2.0.downsample.2.running_var")],
    ),
    "v2-bottleneck": (
        {"blocks": (2, 1, 1, 1), "use_pre_activation": True}, {"num_classes": 10, "converter": TF_CONVERTER},
        ResNetSpec(layers=(2, 1, 1, 1), preact=True, num_classes=10),
        [("stack1_block0_pre_activation_bn", "gamma", "layer2.0.norm1.weight"),
         ("stack1_block0_2_bn", "moving_mean", "layer2.0.norm3.running_mean"),
         ("stack1_block0_0_conv", "kernel", "layer2.0.downsample.conv.weight"),
         ("stack3_block0_3_conv", "kernel", "layer4.0.conv3.weight"), ("post_bn", "beta", "norm.bias")],
    ),
    "v2-basic-tiered-headless": (
        {**STEM_TIERED, "block_type": "basic_block", "use_pre_activation": True}, None,
        ResNetSpec(block="basic", layers=(1, 1, 1, 1), stem="deep_tiered", stem_width=32, preact=True,
                   include_top=False, num_classes=0),
        [("conv1_conv", "kernel", "conv1.0.weight"), ("conv2_bn", "moving_mean", "conv1.4.running_mean"),
         ("stack1_block0_1_bn", "moving_variance", "layer2.0.norm2.running_var"),
         ("post_bn", "moving_variance", "norm.running_var")],
    ),
}


@pytest.fixture(scope="module", params=list(CASES), ids=str)
def imported(request, keras, keras_hub):
    """(case, expected spec, peer, from_peer's spec and weights) for one case; built once per module."""
    key = request.param
    backbone_kwargs, head, expected, _ = CASES[key]
    peer = _backbone(keras_hub, **backbone_kwargs)
    if head is not None:
        peer = _classifier(keras_hub, peer, **head)
    peer = randomise_keras_variables(peer, seed=1)
    spec, weights = rc.from_peer(peer)
    yield key, expected, peer, spec, weights
    del peer, weights
    keras.backend.clear_session()
    gc.collect()


def test_from_peer_infers_spec_and_weights(imported, keras, khp):
    key, expected, peer, spec, weights = imported
    assert peer_of(peer) == "keras-hub"
    assert spec == expected
    assert spec.name.startswith("keras_hub_resnet")
    assert len(weights) == len(khp.tensors(peer))  # every keras-hub variable has its canonical tensor
    layers = {layer.name: layer for layer in khp._layers(peer)}
    for layer, variable, canonical in CASES[key][3]:
        value = keras.ops.convert_to_numpy(getattr(layers[layer], variable))
        value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T  # HWIO -> OIHW, (in, out) -> (out, in)
        assert np.array_equal(weights[canonical], value), (layer, variable, canonical)


def test_outputs_match_our_keras_model_on_the_same_engine(imported, keras, khp, parity_record):
    key, _, peer, spec, weights = imported
    images = _images(seed=2)
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    ours = keras.ops.convert_to_numpy(model(images, training=False))
    reference = khp.logits(peer, images)
    assert np.abs(reference).max() > 0
    error = relative_error(ours, reference)
    parity_record(f"keras-hub:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error <= 1e-6
    if (CASES[key][1] or {}).get("activation") == "softmax":  # the peer's own output is the softmax of ours
        np.testing.assert_allclose(keras.ops.convert_to_numpy(peer(images, training=False)), softmax(ours),
                                   atol=1e-6)


@pytest.mark.torch
def test_import_runs_in_our_torch_model(imported, keras, khp, torch, parity_record):
    key, _, peer, spec, weights = imported
    images = _images(seed=3)
    model = rc.build(spec, backend="torch")
    rc.set_weights(model, weights)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(to_channels_first(images))).numpy()
    if out.ndim == 4:
        out = np.transpose(out, (0, 2, 3, 1))
    error = relative_error(out, khp.logits(peer, images))
    parity_record(f"keras-hub:{key}", f"torch (from keras[{keras.backend.backend()}]) logits", error)
    assert error < 1e-5


ROUND_TRIP = {
    "resnet18": rc.get_spec("resnet18"),
    "v1-bottleneck-small": ResNetSpec(layers=(1, 1, 1, 1), num_classes=7),
    "vd-tiered-headless": ResNetSpec(layers=(1, 1, 1, 1), stem="deep_tiered", stem_width=32, downsample="avg",
                                     include_top=False, num_classes=0),
    "v2-basic-tf": ResNetSpec(block="basic", layers=(1, 1, 1, 1), preact=True, num_classes=7),
    "vd-basic-project-first": ResNetSpec(block="basic", layers=(1, 1, 1, 1), stem="deep", stem_width=32,
                                         downsample="avg", project_first=True, num_classes=7),
}


@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=str)
def test_to_peer_round_trip_and_outputs(keras, keras_hub, khp, key, parity_record):
    spec = ROUND_TRIP[key]
    weights = random_weights(spec, seed=6)
    info = rc.WeightsInfo(preprocessing="tf") if key.endswith("-tf") else None
    peer = rc.to_peer(spec, weights, "keras-hub", info=info)
    assert isinstance(peer, keras_hub.models.ResNetImageClassifier if spec.include_top
                      else keras_hub.models.ResNetBackbone)
    assert rc.peer_info(peer) == (info or rc.WeightsInfo()) or not spec.include_top
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    if key in rc.list_specs():
        assert back_spec.name == key
    assert list(back) == list(weights) and all(np.array_equal(back[k], weights[k]) for k in weights)
    images = _images(seed=7)
    model = rc.build(spec, backend="keras")
    rc.set_weights(model, weights)
    error = relative_error(keras.ops.convert_to_numpy(model(images, training=False)), khp.logits(peer, images))
    parity_record(f"keras-hub:to_peer:{key}", f"keras[{keras.backend.backend()}] logits", error)
    assert error <= 1e-6
    del peer, model
    keras.backend.clear_session()


def _refused(model, texts):
    with pytest.raises(rc.PeerError, match="Cannot express this keras-hub model") as info:
        rc.from_peer(model)
    for text in texts:
        assert text in str(info.value)


def test_vd_with_pre_activation_is_refused(keras_hub):
    # keras-hub builds it only where no stack strides: its pre-activated _vd shortcut never pools.
    backbone = _backbone(keras_hub, blocks=(1,), block_type="bottleneck_block_vd", use_pre_activation=True)
    _refused(backbone, ["block_type='bottleneck_block_vd' with use_pre_activation=True"])


def test_basic_vd_first_stack_projection_imports_as_project_first(keras_hub):
    """keras-hub's basic_block_vd projects 64 -> 64 in its first block: ResNetSpec.project_first."""
    backbone = _backbone(keras_hub, block_type="basic_block_vd", **STEM_DEEP)
    spec, weights = rc.from_peer(backbone)
    assert spec == rc.get_spec("resnet18d").replace(layers=(1, 1, 1, 1), project_first=True, include_top=False,
                                                    num_classes=0)
    assert weights["layer1.0.downsample.1.weight"].shape == (64, 64, 1, 1)  # exported: ROUND_TRIP


def test_unexpressible_configs_are_refused_naming_each_field(keras_hub):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[5], stackwise_num_filters=[64, 128, 256, 256],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 1], block_type="bottleneck_block")
    _refused(backbone, ["stackwise_num_strides=[1, 2, 2, 1]", "stackwise_num_filters=[64, 128, 256, 256]",
                        "input_conv_kernel_sizes=[5]"])


def test_classifier_heads_our_spec_cannot_express_are_refused(keras_hub):
    backbone = _backbone(keras_hub, blocks=(1, 1))
    _refused(_classifier(keras_hub, backbone, num_classes=3, pooling="max", activation="sigmoid"),
             ["pooling='max'", "activation='sigmoid'"])



def test_image_converter_goes_to_the_record(keras_hub):
    """x * scale + offset is (x / 255 - mean) / std with std = 1 / (255 scale), mean = -offset * std."""
    backbone = _backbone(keras_hub, blocks=(1, 1))
    record = rc.peer_info(_classifier(keras_hub, backbone, num_classes=3, converter={"scale": 1.0 / 255.0}))
    assert record.preprocessing == "torch" and record.mean == (0.0, 0.0, 0.0)
    assert np.allclose(record.std, 1.0, rtol=1e-12)
    assert rc.peer_info(_classifier(keras_hub, backbone, num_classes=3, converter=TF_CONVERTER)).preprocessing == "tf"


def test_tampered_layers_are_refused(keras_hub):
    backbone = _backbone(keras_hub, blocks=(1, 1))
    backbone.get_layer("stack1_block0_2_bn").epsilon = 1e-3
    with pytest.raises(rc.PeerError, match=r"stack1_block0_2_bn\.epsilon=0\.001 \(spec: 1e-05\)"):
        rc.from_peer(backbone)


@pytest.mark.parametrize(("spec", "texts"), [
    (rc.get_spec("keras_resnet50"), ["stride_in_1x1=True", "conv_bias=True", "bn_eps=1.001e-05",
                                     "bn_momentum=0.01"]),
    (rc.get_spec("seresnet50"), ["attention='se'"]),
    (rc.get_spec("tiny_resnext"), ["groups=4", "width_per_group=16", "base_planes=16"]),
    (rc.get_spec("resnet50").replace(output_stride=16, stem_pool=False), ["output_stride=16", "stem_pool=False"]),
    (ResNetSpec(preact=True, downsample="avg"), ["preact=True with downsample='avg'"]),
    (rc.get_spec("resnet18d"), ["project_first=False with basic_block_vd"]),
    (ResNetSpec(block="basic", stem_width=32), ["stack0_block0 (32 -> 64 channels, stride 1)"]),
    (ResNetSpec(include_top=False, num_classes=0, pooling="max"), ["pooling='max'"]),
], ids=["keras_resnet50", "seresnet50", "tiny_resnext", "os16-no-pool", "preact-avg", "resnet18d", "basic-stem32",
        "headless-max-tf"])
def test_to_peer_refuses_what_keras_hub_cannot_build(keras, spec, texts):
    with pytest.raises(rc.PeerError, match="keras-hub cannot build") as info:
        rc.to_peer(spec, random_weights(spec), "keras-hub")
    for text in texts:
        assert text in str(info.value)


def test_other_keras_models_are_left_to_keras_applications_without_importing_keras_hub(run_python):
    code = (
        "import sys, keras\n"
        "from resnet_core.peers import peer_of\n"
        "inputs = keras.Input((8, 8, 3))\n"
        "model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))\n"
        "assert peer_of(model) == 'keras.applications', peer_of(model)\n"
        "assert 'keras_hub' not in sys.modules\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
