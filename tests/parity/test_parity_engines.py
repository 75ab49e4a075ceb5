"""Parity across real engines, each in its own process, on the small preset: every mode and dtype.

Every listed engine must be installed: a missing one fails here (it would be skipped by the
command, which is tested with a simulated missing framework).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.parity import ENGINES
from resnet_core.parity.metrics import GRAD_BASIS_FLOOR, GRAD_MULTIPLE
from resnet_core.parity.ties import TIE_BAND
from resnet_core.testing import random_weights

# Needs every framework installed: runs once, in tox's torch env (the workers start the Keras engines).
pytestmark = pytest.mark.torch

SPEC = "tiny_resnext"
SIZE = 64
KERAS = ENGINES[1:]


@pytest.fixture(scope="module", autouse=True)
def jax_compile_cache(tmp_path_factory):
    """Workers inherit this: JAX compiles each initializer once per session, not once per worker."""
    keys = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (str(tmp_path_factory.mktemp("jax-cache")), "0", "0"), strict=True)))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """The command, as a user runs it: eval on all four engines, with --json and --plot."""
    out = tmp_path_factory.mktemp("eval")
    code = main(["parity", SPEC, "--size", str(SIZE), "--json", str(out / "r.json"), "--plot", str(out / "r.png")])
    return code, json.loads((out / "r.json").read_text()), out


@pytest.fixture(scope="module")
def train_grad_report():
    return rc.parity(SPEC, backends=ENGINES, size=SIZE, mode="train", grad=True)


def test_eval_every_engine_within_1e5(eval_run):
    code, data, _ = eval_run
    assert code == 0 and data["ok"] is True
    assert set(data["engines"]) == set(ENGINES)
    assert all(info["status"] == "ok" for info in data["engines"].values())
    assert 0 < data["worst_rel_err"] < 1e-5
    plan = rc.make_plan(rc.get_spec(SPEC))
    assert [layer["name"] for layer in data["layers"]] == list(plan.taps)  # network order, one entry each
    assert [layer["name"] for layer in data["layers"] if "stage" in layer] == list(plan.feature_taps)
    for layer in data["layers"]:
        for engine in KERAS:
            m = layer["engines"][engine]
            assert m["max_rel"] < 1e-5 and m["cosine"] > 1 - 1e-9 and m["max_abs"] >= m["mean_abs"]
    logits = data["layers"][-1]
    assert logits["shape"] == [2, 10]
    assert all(logits["engines"][e]["top1"] == 1.0 and logits["engines"][e]["top5"] == 1.0 for e in KERAS)


def test_eval_records_versions_devices_and_tf32(eval_run):
    _, data, _ = eval_run
    import keras
    import torch

    assert data["engines"]["torch"]["versions"]["torch"] == torch.__version__
    for engine in KERAS:
        info = data["engines"][engine]
        assert info["versions"]["keras"] == keras.__version__
        assert info["tf32"].startswith("off") and info["device"]
    assert "jax" in data["engines"]["keras-jax"]["versions"]
    assert "tensorflow" in data["engines"]["keras-tensorflow"]["versions"]
    assert any("TF32 is switched off" in note for note in data["notes"])


def test_eval_writes_a_plot(eval_run):
    _, _, out = eval_run
    assert (out / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_train_mode_uses_batch_statistics_and_compares_running_stats(train_grad_report):
    report = train_grad_report
    assert report.ok, report.table()
    assert all(e.worst_rel_err < 1e-5 for e in report.layers)
    plan = rc.make_plan(rc.get_spec(SPEC))
    buffers = [p.name for p in plan.params if not p.trainable]
    assert [e.name for e in report.running_stats] == buffers
    for entry in report.running_stats:
        for engine in KERAS:
            m = entry.engines[engine]
            assert m["max_rel"] < 1e-5, (entry.name, engine, m)
            if entry.name.endswith("running_var"):
                # The convention difference is real (Keras: biased variance) and is what the restatement removes.
                assert m["raw_max_rel"] > 100 * max(m["max_rel"], 1e-9), (entry.name, engine, m)
    assert any("unbiased batch variance" in note for note in report.notes)


def test_train_step_uses_batch_statistics_and_moves_running_stats(tmp_path):
    """What the report compares in train mode is really different from eval: checked on the reference's outputs."""
    from resnet_core.parity import run_engines
    from resnet_core.testing import random_images, relative_error

    weights = random_weights(SPEC)
    np.savez(tmp_path / "w.npz", **weights)
    np.savez(tmp_path / "x.npz", **{"images/x": random_images(2, SIZE, SIZE)})
    job = {"spec": rc.get_spec(SPEC).to_dict(), "weights": {"format": "npz", "path": str(tmp_path / "w.npz")},
           "inputs": str(tmp_path / "x.npz")}
    runs = {mode: run_engines(["torch"], {**job, "mode": mode}, tmp_path / mode)["torch"].load()
            for mode in ("eval", "train")}
    assert relative_error(runs["train"]["x/tap/logits"], runs["eval"]["x/tap/logits"]) > 1e-2
    for p in rc.make_plan(rc.get_spec(SPEC)).params:
        if not p.trainable:
            assert not np.allclose(runs["train"][f"x/running/{p.name}"], weights[p.name], rtol=1e-4), p.name
    assert not any(k.startswith("x/running/") for k in runs["eval"])


def test_gradients_of_every_weight_match(train_grad_report):
    report = train_grad_report
    plan = rc.make_plan(rc.get_spec(SPEC))
    assert [e.name for e in report.gradients] == [p.name for p in plan.params if p.trainable]
    for entry in report.gradients:
        for engine in KERAS:
            m = entry.engines[engine]
            assert m["max_rel"] < 2e-5 and m["cosine"] > 1 - 1e-8, (entry.name, engine, m)
            assert m["scale"] > 1e-6  # the reference gradient is not zero, so the comparison means something
        # torch's own fp32 gradient against float64: this small input is well conditioned.
        assert 0 < entry.reference_vs_float64 < 2e-5, entry.name
    # Each gradient is judged against torch's own fp32-vs-float64 error for that tensor, and the multiple reported.
    assert report.grad_rule == {"multiple": GRAD_MULTIPLE, "basis_floor": GRAD_BASIS_FLOOR, "tie_band": TIE_BAND}
    assert "grad" not in report.tolerances and set(report.grad_multiples) == set(KERAS)
    assert all(0 < m < GRAD_MULTIPLE / 2 for m in report.grad_multiples.values()), report.grad_multiples
    # Ties are resolved in train mode too (batch statistics move every pre-ReLU value): each engine's pattern
    # was recorded and followed, and the raw figure kept beside the tie-aware one.
    assert set(report.grad_ties) == {"torch", *KERAS} and set(report.raw_grad_multiples) == set(KERAS)
    assert all("tie_aware_rel" in e.engines[k] and "raw_multiple" in e.engines[k]
               for e in report.gradients for k in KERAS)
    assert "worst gradient error / torch's own fp32 error: keras-jax" in report.verdict()


def test_train_mode_with_channel_means_far_from_zero_stays_within_rounding():
    """Batch norms whose inputs have channel means up to 33x their spread (median 12; betas + 3, so every
    ReLU passes a large positive mean on, as in trained networks). Keras's own training arithmetic failed
    here: on its torch engine E[x^2] - E[x]^2 put the outputs 2.6e-5 from torch and a gradient at 17.6x
    torch's own fp32 error; on TensorFlow, x * inv + (beta - mean * inv) put gamma's gradient at 10.6x.
    Measured with keras_norms.careful_batch_norm: outputs within 2.4e-6, gradients within 3.0x on every engine
    (keras-jax, 2.6x before, is left out to save time: its careful path is checked in test_keras_batch_norm)."""
    plan = rc.make_plan(rc.get_spec(SPEC))
    weights = random_weights(SPEC)
    for p in plan.params:
        if p.role == "beta":
            weights[p.name] = weights[p.name] + np.float32(3.0)
    engines = ("torch", "keras-tensorflow", "keras-torch")
    report = rc.parity(SPEC, backends=engines, weights=weights, size=(65, 77), mode="train", grad=True)
    worst = {e: max(layer.engines[e]["max_rel"] for layer in report.layers) for e in engines[1:]}
    assert all(v < 5e-6 for v in worst.values()), worst
    assert all(0 < m < GRAD_MULTIPLE / 2 for m in report.grad_multiples.values()), report.grad_multiples
    assert report.ok, report.first_failure


def test_a_gradient_off_by_a_thousandth_fails_where_the_old_bound_passed(monkeypatch, tmp_path):
    """One Keras gradient mis-scaled by 1 + 3e-4, injected between the worker and the comparison: 0.1 hid it.

    The untouched gradients are held to the rule's own bound (GRAD_MULTIPLE times torch's own error), not to a
    tighter margin: one measured at 5.48x on an AVX2 EPYC where AVX-512 gave under 5."""
    from resnet_core.parity.engines import EngineRun

    wrong = "layer2.0.conv2.weight"
    load = EngineRun.load

    def mis_scaled(run):
        out = load(run)
        if run.engine == "keras-torch":
            out[f"x/grad/{wrong}"] = out[f"x/grad/{wrong}"] * np.float32(1 + 3e-4)
        return out

    monkeypatch.setattr(EngineRun, "load", mis_scaled)
    report = rc.parity(SPEC, backends="torch,keras-torch", size=(65, 77), grad=True)
    assert [e.name for e in report.layers if not e.ok] == []  # the outputs are untouched
    assert [e.name for e in report.gradients if not e.ok] == [wrong]
    bad = next(e for e in report.gradients if e.name == wrong).engines["keras-torch"]
    assert 1e-4 < bad["max_rel"] < 0.1 and bad["tolerance"] < 1e-4
    assert bad["multiple"] > GRAD_MULTIPLE and bad["raw_multiple"] > GRAD_MULTIPLE
    assert all(e.engines["keras-torch"]["multiple"] <= GRAD_MULTIPLE for e in report.gradients if e.name != wrong)
    assert not report.ok and report.first_failure["name"] == wrong
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert data["grad_multiples"]["keras-torch"] == bad["multiple"] and data["ok"] is False
    assert f"FAIL: first over tolerance: grad {wrong} on keras-torch" in report.table()


def test_a_weights_file_is_read_and_its_spec_found(tmp_path, capsys):
    """resnet-core parity my.safetensors: the spec comes from the file, the weights through read_weights."""
    io = pytest.importorskip("resnet_core.io")
    weights = random_weights(SPEC, seed=7)
    io.write_weights(tmp_path / "my.safetensors", weights, SPEC)
    code = main(["parity", str(tmp_path / "my.safetensors"), "--backends", "torch,keras-torch", "--size", str(SIZE),
                 "--json", str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and data["spec"] == SPEC and data["worst_rel_err"] < 1e-5
    assert any(str(tmp_path / "my.safetensors") in note for note in data["notes"])
    np.savez(tmp_path / "w.npz", **weights)  # canonical npz: spec inferred from names and shapes
    report = rc.parity(tmp_path / "w.npz", backends="torch,keras-torch", size=SIZE)
    assert report.spec == SPEC and report.ok


def _transpose_spatial(weights: dict, name: str) -> dict:
    bad = dict(weights)
    bad[name] = np.ascontiguousarray(np.swapaxes(weights[name], 2, 3))  # kh <-> kw: a classic conversion bug
    return bad


def test_a_wrong_weight_is_caught_and_located(tmp_path):
    weights = random_weights(SPEC)
    np.savez(tmp_path / "bad.npz", **_transpose_spatial(weights, "layer2.1.conv2.weight"))
    code = main(["parity", SPEC, "--backends", "torch,keras-torch,keras-jax", "--size", str(SIZE),
                 "--engine-weights", f"keras-torch={tmp_path / 'bad.npz'}", "--json", str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and data["ok"] is False
    assert data["first_failure"]["name"] == "layer2.1" and data["first_failure"]["engine"] == "keras-torch"
    layers = {layer["name"]: layer["engines"] for layer in data["layers"]}
    for name in ("stem", "layer1.0", "layer2.0"):  # upstream of the bug: still exact
        assert layers[name]["keras-torch"]["max_rel"] < 1e-5
    assert layers["layer2.1"]["keras-torch"]["max_rel"] > 1e-2
    assert all(engines["keras-jax"]["max_rel"] < 1e-5 for engines in layers.values())  # the good engine stays good


def test_a_converted_keras_weights_file_is_checked_against_the_original(tmp_path):
    """engine_weights with a .weights.h5: Keras loads it natively; the npz original feeds torch."""
    from resnet_core.parity import run_engines

    weights = random_weights(SPEC, seed=4)
    np.savez(tmp_path / "w.npz", **weights)
    job = {"spec": rc.get_spec(SPEC).to_dict(), "weights": {"format": "npz", "path": str(tmp_path / "w.npz")},
           "save_keras_weights": str(tmp_path / "w.weights.h5")}
    assert run_engines(["keras-tensorflow"], job, tmp_path / "export")["keras-tensorflow"].ok
    report = rc.parity(SPEC, backends="torch,keras-jax", weights=weights, size=SIZE,
                       engine_weights={"keras-jax": tmp_path / "w.weights.h5"})
    assert report.ok and report.worst_rel_err < 1e-5
    with pytest.raises(ValueError, match="Train-mode parity needs keras-jax's weights as canonical arrays"):
        rc.parity(SPEC, backends="torch,keras-jax", size=SIZE, mode="train",
                  engine_weights={"keras-jax": tmp_path / "w.weights.h5"})


@pytest.mark.parametrize("dtype,mode,grad", [("bfloat16", "train", True), ("float16", "eval", False)])
def test_mixed_precision_every_engine(dtype, mode, grad):
    report = rc.parity(SPEC, backends=ENGINES, size=SIZE, dtype=dtype, mode=mode, grad=grad)
    assert report.ok, report.table()
    trainable = sum(p.trainable for p in rc.make_plan(rc.get_spec(SPEC)).params)
    assert len(report.gradients) == (trainable if grad else 0) and bool(report.running_stats) == (mode == "train")
    eps = {"bfloat16": 2.0**-8, "float16": 2.0**-11}[dtype]
    for entry in report.layers:
        # It ran in reduced precision (the reference's own error against fp32 is of the order of its epsilon) ...
        assert entry.reference_vs_float32 > eps / 100
        for engine in KERAS:
            # ... and each engine is about as close to the fp32 values as torch's own mixed precision is.
            assert entry.engines[engine]["vs_float32"] < 8 * max(entry.reference_vs_float32, eps)
    logits = report.layers[-1]
    assert all(logits.engines[e]["top1"] == 1.0 for e in KERAS)
    assert all(info["precision"].endswith("fp32 weights") for info in report.engines.values())


def test_missing_and_crashing_engines_are_reported(tmp_path, monkeypatch):
    """A framework that cannot be imported is skipped; an engine that crashes fails the report. Neither vanishes."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("raise ImportError('simulated: tensorflow is missing')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "broken.weights.h5").write_bytes(b"not an HDF5 file")
    report = rc.parity(SPEC, backends=ENGINES, size=SIZE, engine_weights={"keras-jax": tmp_path / "broken.weights.h5"})
    assert report.engines["keras-tensorflow"]["status"] == "skipped"
    assert "simulated: tensorflow is missing" in report.engines["keras-tensorflow"]["reason"]
    assert report.engines["keras-jax"]["status"] == "failed" and report.engines["keras-jax"]["reason"]
    assert report.compared == ["keras-torch"] and report.layers[-1].engines["keras-torch"]["max_rel"] < 1e-5
    table = report.table()
    assert "keras-tensorflow: SKIPPED (cannot import: simulated: tensorflow is missing)" in table
    assert not report.ok and "FAIL: engine(s) crashed: keras-jax" in table
