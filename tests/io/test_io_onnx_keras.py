"""ONNX imports on Keras, on every engine: the Keras model built from an imported file against onnxruntime's run
of that file within 1e-5 relative; and Keras's own ONNX exports (NHWC input, a transpose around every conv,
explicit pads, batch norms as per-channel Sub/Mul/Add) matched by topology."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io.onnx_graph import canonical, import_onnx, load_model, match_graph
from resnet_core.testing import random_weights, relative_error

pytestmark = [pytest.mark.keras, pytest.mark.torch]

SPEC = "tiny_resnext"
SIZE = (35, 37)

def _onnxruntime(path, images_nchw, layout="NCHW"):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = images_nchw if layout == "NCHW" else images_nchw.transpose(0, 2, 3, 1)
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


@pytest.fixture(scope="module")
def keras(need):
    return need("keras", "keras")


@pytest.fixture(scope="module")
def exported(torch, tmp_path_factory):
    """Our torch export of tiny_resnext (batch norms kept) and the weights it was written from."""
    folder = tmp_path_factory.mktemp("onnx-keras")
    weights = random_weights(SPEC, seed=7)
    source = rc.write_weights(folder / "tiny.safetensors", weights, SPEC)
    # In a child process: torch.onnx's exporter loads triton, which crashes a process that has loaded TensorFlow.
    done = subprocess.run([sys.executable, "-m", "resnet_core.cli", "export", str(source), str(folder / "tiny.onnx"),
                           "--size", "35x37", "-q"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    return folder, source, weights


def test_keras_model_of_an_imported_file_matches_onnxruntime(exported, keras):
    folder, _, _ = exported
    found = import_onnx(folder / "tiny.onnx", verify=False)  # the proof here is Keras's, below
    model = rc.build(found.spec, backend="keras")
    rc.set_weights(model, found.weights)
    images = np.random.default_rng(3).standard_normal((3, 3, *SIZE)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(model(images.transpose(0, 2, 3, 1)))
    error = relative_error(ours, _onnxruntime(folder / "tiny.onnx", images))
    print(f"Keras on {keras.backend.backend()} vs onnxruntime: max relative error {error:.1e}")
    assert error < 1e-5


def test_convert_onnx_to_keras(exported, keras):
    """``resnet-core convert m.onnx m.keras``: the .keras file holds the imported weights, bit for bit."""
    from resnet_core.cli import main
    from resnet_core.testing import assert_same_weights

    folder, _, weights = exported
    target = folder / f"tiny_{keras.backend.backend()}.keras"
    assert main(["convert", str(folder / "tiny.onnx"), str(target), "-q"]) == 0
    spec, back = rc.read_weights(target)
    assert spec.replace(name=SPEC) == rc.get_spec(SPEC)
    assert_same_weights(back, weights)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "torch", reason="Keras exports ONNX on its torch engine")
def test_keras_export_is_matched_as_a_folded_graph(exported, keras):
    """Keras's graph: NHWC input, transposes around convs, pads, per-channel affines; every piece found, the
    affines folded into the convs exactly as the batch norms they compute."""
    folder, source, weights = exported
    target = folder / "keras.onnx"
    rc.export(source, target, origin="keras", size=SIZE)
    matched = match_graph(load_model(target), target)
    assert matched.input_layout == "NHWC" and matched.input_size == SIZE
    got, _, eps = canonical(matched)
    assert not eps
    plan = rc.make_plan(rc.get_spec(SPEC))
    for unit in [*plan.stem.units, *(u for b in plan.blocks for u in (*b.main, b.shortcut) if u)]:
        norm = {k: weights[f"{unit.norm.name}.{k}"].astype(np.float64)
                for k in ("weight", "bias", "running_mean", "running_var")}
        scale = norm["weight"] / np.sqrt(norm["running_var"] + unit.norm.eps)
        kernel = weights[f"{unit.conv.name}.weight"] * scale[:, None, None, None]
        bias = norm["bias"] - norm["running_mean"] * scale
        assert relative_error(got[f"{unit.conv.name}.weight"], kernel) < 1e-6
        assert relative_error(got[f"{unit.conv.name}.bias"], bias) < 1e-6
    assert np.array_equal(got["fc.weight"], weights["fc.weight"])


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "torch", reason="Keras exports ONNX on its torch engine")
def test_keras_export_imports(exported, keras):
    folder, source, _ = exported
    target = folder / "keras2.onnx"
    rc.export(source, target, origin="keras", size=SIZE)
    found = import_onnx(target)
    assert found.verified and found.max_relative_error < 1e-5
    print(f"Keras export (folded): max relative error vs onnxruntime {found.max_relative_error:.1e}")


def test_keras_model_of_a_folded_import_matches_onnxruntime(exported, keras):
    """onnxruntime's optimiser folds the batch norms into the convs; the folded import runs on Keras too."""
    import onnxruntime as ort

    folder, _, _ = exported
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folder / f"opt_{keras.backend.backend()}.onnx")
    ort.InferenceSession(str(folder / "tiny.onnx"), options, providers=["CPUExecutionProvider"])
    found = import_onnx(options.optimized_model_filepath, verify=False)
    assert found.spec.norm == "folded"
    model = rc.build(found.spec, backend="keras")
    rc.set_weights(model, found.weights)
    images = np.random.default_rng(4).standard_normal((2, 3, *SIZE)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(model(images.transpose(0, 2, 3, 1)))
    error = relative_error(ours, _onnxruntime(options.optimized_model_filepath, images))
    print(f"Keras on {keras.backend.backend()} vs onnxruntime, folded import: max relative error {error:.1e}")
    assert error < 1e-5
