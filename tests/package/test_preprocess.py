"""rc.preprocess: the normalisation the trained-with record says, bit-identical to the peers' own functions."""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_weights

SPECS = {mode: rc.WeightsInfo(preprocessing=mode) for mode in ("torch", "caffe", "tf")}


def _pixels(shape=(2, 65, 77, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# Hand-computed: pixel (R, G, B) = (0, 128, 255).
KNOWN = {
    "torch": [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225],
    "caffe": [255 - 103.939, 128 - 116.779, 0 - 123.68],  # channels come out as B, G, R
    "tf": [-1.0, 128 / 127.5 - 1, 1.0],
}


@pytest.mark.parametrize("mode", list(KNOWN), ids=str)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"], ids=["nhwc", "nchw"])
def test_known_values_in_both_layouts(mode, data_format):
    pixel = np.array([0, 128, 255], np.uint8)
    image = np.broadcast_to(pixel, (5, 7, 3)) if data_format == "channels_last" else \
        np.broadcast_to(pixel[:, None, None], (3, 5, 7))
    out = rc.preprocess(image, SPECS[mode], data_format=data_format)
    assert out.dtype == np.float32 and out.shape == image.shape
    got = out[0, 0] if data_format == "channels_last" else out[:, 0, 0]
    np.testing.assert_allclose(got, KNOWN[mode], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", list(KNOWN), ids=str)
def test_float_input_equals_uint8_input_and_is_not_modified(mode):
    pixels = _pixels()
    floats = pixels.astype(np.float64)
    before = floats.copy()
    assert np.array_equal(rc.preprocess(floats, SPECS[mode]), rc.preprocess(pixels, SPECS[mode]))
    assert np.array_equal(floats, before)


def test_batch_and_single_image_agree():
    pixels = _pixels()
    assert np.array_equal(rc.preprocess(pixels, "resnet50")[1], rc.preprocess(pixels[1], "resnet50"))


def test_record_from_name_json_file_and_weights_file(tmp_path):
    pixels = _pixels()
    want = rc.preprocess(pixels, SPECS["caffe"])
    assert np.array_equal(rc.preprocess(pixels, "keras_resnet50"), want)  # the preset's usual weights
    assert np.array_equal(rc.preprocess(pixels, rc.get_spec("keras_resnet50")), want)
    path = tmp_path / "spec.json"  # a spec written before preprocessing left ResNetSpec
    path.write_text(json.dumps({**rc.get_spec("resnet50").to_dict(), "preprocessing": "caffe"}))
    assert np.array_equal(rc.preprocess(pixels, path), want)
    assert np.array_equal(rc.preprocess(pixels, str(path)), want)
    weights = tmp_path / "model.safetensors"
    rc.write_weights(weights, random_weights("tiny_resnext"), "tiny_resnext", info=SPECS["tf"])
    assert np.array_equal(rc.preprocess(pixels, weights), rc.preprocess(pixels, SPECS["tf"]))
    assert rc.read_weights(weights).info == SPECS["tf"]
    assert np.array_equal(rc.preprocess(pixels, "resnet50"), rc.preprocess(pixels, SPECS["torch"]))


def test_files_written_with_preprocessing_in_the_spec_still_load(tmp_path):
    """Before the record existed the spec held ``preprocessing``: the spec loads and the value moves to the record."""
    path = tmp_path / "old.safetensors"
    rc.write_weights(path, random_weights("tiny_resnext"), "tiny_resnext")
    # Rewrite the header as an older resnet-core wrote it (8-byte length, JSON header, data unchanged).
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    meta = header["__metadata__"]
    meta.pop("resnet_core.weights_info", None)
    spec = json.loads(meta["resnet_core.spec"])
    meta["resnet_core.spec"] = json.dumps({**spec, "preprocessing": "tf"})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size:])
    loaded = rc.read_weights(path)
    assert loaded.spec == rc.get_spec("tiny_resnext") and loaded.info == rc.WeightsInfo(preprocessing="tf")
    assert rc.ResNetSpec.from_dict({**spec, "preprocessing": "caffe"}) == rc.get_spec("tiny_resnext")


def test_record_mean_std_are_used():
    record = rc.WeightsInfo(mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 2.0))
    out = rc.preprocess(np.array([[[255, 0, 51]]], np.uint8), record)
    np.testing.assert_allclose(out[0, 0], [1.0, -0.5, 0.1], rtol=1e-6)


@pytest.mark.parametrize(("images", "kwargs", "error", "text"), [
    (np.zeros((4, 4, 3), np.int32), {}, TypeError, "uint8 or floating-point"),
    (np.full((4, 4, 3), 256.0), {}, ValueError, r"in \[0, 255\]"),
    (np.full((4, 4, 3), np.nan), {}, ValueError, "finite"),
    (np.zeros((4, 4, 4), np.uint8), {}, ValueError, "normalises 3 channels"),
    (np.zeros((4, 4), np.uint8), {}, ValueError, "Expected an image"),
    (np.zeros((4, 4, 3), np.uint8), {"data_format": "NHWC"}, ValueError, "data_format must be one of"),
], ids=["int32", "above-255", "nan", "four-channels", "2d", "data-format"])
def test_bad_inputs_are_refused(images, kwargs, error, text):
    with pytest.raises(error, match=text):
        rc.preprocess(images, "resnet50", **kwargs)


def test_unknown_name_lists_presets():
    with pytest.raises(KeyError, match="Known specs: .*resnet50"):
        rc.preprocess(_pixels(), "no_such_preset")


def test_tf_mode_takes_any_channel_count():
    out = rc.preprocess(np.full((1, 4, 4, 1), 255, np.uint8), SPECS["tf"])
    assert np.array_equal(out, np.ones((1, 4, 4, 1), np.float32))


@pytest.mark.torch
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"], ids=["nhwc", "nchw"])
def test_torch_mode_matches_torchvision_to_tensor_and_normalize(need, data_format):
    torch = need("torch", "torch")
    if "tensorflow" in sys.modules:  # triton, which torchvision probes for, segfaults after TensorFlow
        sys.modules.setdefault("triton", None)
    transforms = need("torch", "torchvision.transforms")
    pixels = _pixels()
    nchw = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    reference = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(nchw.float().div(255)).numpy()
    single = transforms.ToTensor()(pixels[0])  # HWC uint8 -> CHW float in [0, 1], torchvision's own scaling
    assert np.array_equal(single.numpy(), nchw[0].float().div(255).numpy())
    images = pixels if data_format == "channels_last" else np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    got = rc.preprocess(images, SPECS["torch"], data_format=data_format)
    if data_format == "channels_last":
        got = got.transpose(0, 3, 1, 2)
    assert np.array_equal(got, reference)


@pytest.mark.keras
@pytest.mark.parametrize(("mode", "module"), [
    ("caffe", "resnet"), ("tf", "resnet_v2"), ("torch", "imagenet_utils"),
], ids=["caffe-resnet", "tf-resnet_v2", "torch-imagenet_utils"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"], ids=["nhwc", "nchw"])
def test_matches_keras_applications_preprocess_input(mode, module, data_format):
    import keras

    pixels = _pixels()
    images = pixels if data_format == "channels_last" else np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    function = getattr(keras.applications, module).preprocess_input
    kwargs = {"mode": "torch"} if module == "imagenet_utils" else {}
    reference = function(images.astype(np.float32), data_format=data_format, **kwargs)
    assert np.array_equal(rc.preprocess(images, SPECS[mode], data_format=data_format), reference)
