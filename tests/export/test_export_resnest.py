"""Every export format of a tiny ResNeSt network (radix 4 in two cardinal groups, avd before the split attention),
each artifact in its own runtime at batch 3 (exported at 2) against our torch model within 1e-5: ONNX and
torch.export from torch; SavedModel and LiteRT from Keras on TensorFlow (RadixSum traced into the graph)."""

from __future__ import annotations

import os

import pytest

import resnet_core as rc
from resnet_core.spec import ResNeSt
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

SPEC = rc.ResNetSpec(block_spec=ResNeSt(groups=2, width_per_group=32, radix=4, avd=True, avd_first=True),
                     layers=(1, 2, 1, 1), stem="deep", stem_width=8, downsample="avg", base_planes=8, num_classes=7,
                     name="tiny_resnest")
SIZE = (65, 77)
BATCH = 3


@pytest.fixture(scope="module")
def case(torch, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-resnest")
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
    rc.export(path, folder / "tiny.onnx", size=SIZE)
    session = ort.InferenceSession(str(folder / "tiny.onnx"), providers=["CPUExecutionProvider"])
    assert relative_error(session.run(None, {"images": images})[0], logits) < 1e-5


@pytest.mark.torch
def test_pt2_runs_through_torch_export_load(case, torch):
    folder, path, images, logits = case
    rc.export(path, folder / "tiny.pt2", size=SIZE)
    program = torch.export.load(str(folder / "tiny.pt2"))
    with torch.no_grad():
        out = program.module()(torch.from_numpy(images)).numpy()
    assert relative_error(out, logits) < 1e-5


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "tensorflow", reason="written on Keras's TensorFlow engine")
def test_saved_model_and_tflite_run_in_their_runtimes(case, need):
    tf = need("keras", "tensorflow")
    interpreter_module = need("keras", "ai_edge_litert.interpreter")
    folder, path, images, logits = case
    saved, lite = folder / "tiny_savedmodel", folder / "tiny.tflite"
    rc.export(path, saved, format="saved_model", size=SIZE)
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
