"""Every export format of a small network of each block type with its own operator (ResNeSt: radix 4 in two
cardinal groups, avd before the split attention; Res2NeXt: the split by ChannelSlice; SKNet: split inputs and a
strided dilated path), each artifact in its own runtime at batch 3 (exported at 2: the batch axis must be
dynamic) against our torch model within 1e-5: ONNX and torch.export from torch; SavedModel and LiteRT from Keras
on TensorFlow; ONNX from Keras on its torch engine."""

from __future__ import annotations

import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.spec import ResNeSt
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

SPECS = {
    "resnest": rc.ResNetSpec(block_spec=ResNeSt(groups=2, width_per_group=32, radix=4, avd=True, avd_first=True),
                             layers=(1, 2, 1, 1), stem="deep", stem_width=8, downsample="avg", base_planes=8,
                             num_classes=7, name="tiny_resnest"),
    "res2net": rc.get_spec("res2next50").replace(layers=(1, 2, 1, 1), base_planes=16, num_classes=10,
                                                 name="tiny_res2next"),
    "sknet": rc.get_spec("skresnet18").replace(layers=(1, 1, 1, 1), base_planes=16, num_classes=10,
                                               name="tiny_sknet"),
}
SIZE = (65, 77)
BATCH = 3


def on_engine(name: str):
    return pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != name,
                              reason=f"runs once, on Keras's {name} engine (the exporter's own)")


@pytest.fixture(scope="module", params=sorted(SPECS))
def case(request, torch, tmp_path_factory):
    spec = SPECS[request.param]
    folder = tmp_path_factory.mktemp(f"export-{request.param}")
    weights = random_weights(spec, seed=3)
    path = folder / "tiny.safetensors"
    rc.write_weights(path, weights, spec)
    images = random_images(BATCH, *SIZE, seed=4)
    model = rc.build(spec, backend="torch").eval()
    rc.set_weights(model, weights)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return folder, path, images, logits


@pytest.mark.torch
def test_onnx_from_torch_runs_in_onnxruntime(case, need):
    ort = need("torch", "onnxruntime")
    folder, path, images, logits = case
    target = folder / "tiny.onnx"
    rc.export(path, target, size=SIZE)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert relative_error(session.run(None, {"images": images})[0], logits) < 1e-5


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
@on_engine("tensorflow")
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


@pytest.mark.keras
@pytest.mark.torch
@on_engine("torch")
def test_onnx_from_keras_on_the_torch_engine(case, need):
    ort = need("keras", "onnxruntime")
    folder, path, images, logits = case
    target = folder / "tiny.keras.onnx"
    assert rc.export(path, target, origin="keras", size=SIZE).origin == "keras"
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: to_channels_last(images)})[0]
    assert relative_error(np.asarray(out), logits) < 1e-5
