"""Res2Net through every export format, each artifact in its own runtime against our torch model within 1e-5:
ONNX (onnxruntime) and pt2 (torch.export) from the torch model, SavedModel and TFLite from the Keras model (the
split is ChannelSlice: a plain slice in each graph). Small spec, odd input, a batch other than the exported one."""

from __future__ import annotations

import os

import pytest

import resnet_core as rc
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

SPEC = rc.get_spec("res2next50").replace(layers=(1, 2, 1, 1), base_planes=16, num_classes=10, name="tiny_res2next")
SIZE = (65, 77)
BATCH = 3  # exported at 2: the batch axis must be dynamic


@pytest.fixture(scope="module")
def case(torch, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-res2net")
    weights = random_weights(SPEC, seed=3)
    path = folder / "tiny.safetensors"
    rc.write_weights(path, weights, SPEC)
    images = random_images(BATCH, *SIZE, seed=4)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, weights)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return folder, path, images, logits


@pytest.mark.torch
def test_onnx_runs_in_onnxruntime(case, need):
    ort = need("torch", "onnxruntime")
    folder, path, images, logits = case
    target = folder / "tiny.onnx"
    rc.export(path, target, size=SIZE)
    out = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
    assert relative_error(out, logits) < 1e-5


@pytest.mark.torch
def test_pt2_runs_through_torch_export_load(case, torch):
    folder, path, images, logits = case
    target = folder / "tiny.pt2"
    assert rc.export(path, target, size=SIZE).format == "pt2"
    with torch.no_grad():
        out = torch.export.load(str(target)).module()(torch.from_numpy(images)).numpy()
    assert relative_error(out, logits) < 1e-5


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "tensorflow", reason="the exporter's own engine: tensorflow")
def test_saved_model_and_tflite_run_in_their_runtimes(case, need):
    tf = need("keras", "tensorflow")
    interpreter_module = need("keras", "ai_edge_litert.interpreter")
    folder, path, images, logits = case
    saved, lite = folder / "tiny_savedmodel", folder / "tiny.tflite"
    assert rc.export(path, saved, format="saved_model", size=SIZE).origin == "keras"
    rc.export(path, lite, size=SIZE)
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    (out,) = serve(tf.constant(to_channels_last(images))).values()
    assert relative_error(out.numpy(), logits) < 1e-5
    interpreter = interpreter_module.Interpreter(model_path=str(lite))
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], [BATCH, *SIZE, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], to_channels_last(images))
    interpreter.invoke()
    assert relative_error(interpreter.get_tensor(outp["index"]), logits) < 1e-5
