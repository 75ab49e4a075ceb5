"""Exporters from the Keras model, end to end, each on the one Keras engine that writes it (so each runs once
per tox run): SavedModel and LiteRT on TensorFlow, ONNX on Keras's torch engine. Every artifact runs in its own
runtime at batch 3 (exported at 2) against our torch model within 1e-5; the litert and tf-saved-model parity
engines run in the TensorFlow env."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.export import read_metadata
from resnet_core.testing import random_images, random_weights, relative_error, to_channels_last

pytestmark = [pytest.mark.keras, pytest.mark.torch]

SPEC = "tiny_resnext"
SIZE = (65, 77)
BATCH = 3


def on_engine(name: str):
    """Runs once, on the Keras engine that writes the artifact; decided before any fixture is set up."""
    return pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != name,
                              reason=f"runs once, on Keras's {name} engine (the exporter's own)")


@pytest.fixture(scope="module")
def case(torch, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-keras")
    weights = random_weights(SPEC, seed=3)
    path = folder / "tiny.safetensors"
    rc.write_weights(path, weights, SPEC)
    images = random_images(BATCH, *SIZE, seed=4)
    model = rc.build(SPEC, backend="torch").eval()
    rc.set_weights(model, weights)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return folder, path, images, logits


def _check_metadata(meta: dict) -> None:
    assert meta["input_layout"] == "NHWC" and json.loads(meta["input_shape"]) == ["batch", *SIZE, 3]
    assert meta["preprocessing"] == "torch" and rc.ResNetSpec.from_json(meta["resnet_core_spec"]).name == SPEC


@pytest.fixture(scope="module")
def tf_artifacts(case):
    folder, path, _, _ = case
    saved, lite = folder / "tiny_savedmodel", folder / "tiny.tflite"
    result = rc.export(path, saved, format="saved_model", size=SIZE)
    assert result.origin == "keras" and (saved / "saved_model.pb").is_file()
    rc.export(path, lite, size=SIZE)
    return saved, lite


@on_engine("tensorflow")
def test_saved_model_runs_in_tensorflow(case, tf_artifacts, need):
    tf = need("keras", "tensorflow")
    _, _, images, logits = case
    saved, _ = tf_artifacts
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    (out,) = serve(tf.constant(to_channels_last(images))).values()
    assert relative_error(out.numpy(), logits) < 1e-5
    _check_metadata(read_metadata(saved))


@on_engine("tensorflow")
def test_tflite_runs_in_the_litert_interpreter(case, tf_artifacts, need):
    interpreter_module = need("keras", "ai_edge_litert.interpreter")
    _, _, images, logits = case
    _, lite = tf_artifacts
    interpreter = interpreter_module.Interpreter(model_path=str(lite))
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape_signature"]) == [-1, *SIZE, 3]
    interpreter.resize_tensor_input(inp["index"], [BATCH, *SIZE, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], to_channels_last(images))
    interpreter.invoke()
    assert relative_error(interpreter.get_tensor(outp["index"]), logits) < 1e-5
    _check_metadata(read_metadata(lite))


@on_engine("tensorflow")
def test_parity_report_checks_the_artifacts_on_litert_and_tf_saved_model(case, tf_artifacts):
    """The shipped files, each in its own runtime process (the workers' own export is tested in the torch env)."""
    _, path, _, _ = case
    saved, lite = tf_artifacts
    report = rc.parity(path, backends="torch,litert,tf-saved-model", size=SIZE, batch=BATCH,
                       engine_weights={"litert": lite, "tf-saved-model": saved})
    assert report.ok, report.table()
    logits = report.layer("logits")
    for engine in ("litert", "tf-saved-model"):
        assert logits.engines[engine]["max_rel"] < 1e-5 and logits.engines[engine]["top1"] == 1.0
        assert report.engines[engine]["artifact"].endswith("(given)")


@on_engine("torch")
def test_onnx_from_keras_on_the_torch_engine(case, need):
    ort = need("keras", "onnxruntime")
    folder, path, images, logits = case
    target = folder / "tiny.keras.onnx"
    result = rc.export(path, target, origin="keras", size=SIZE)
    assert result.origin == "keras"
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: to_channels_last(images)})[0]
    assert relative_error(np.asarray(out), logits) < 1e-5
    _check_metadata(read_metadata(target))
