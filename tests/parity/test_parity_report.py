"""Parity metrics, conventions, report logic and input validation: numpy only, no worker processes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.parity import Entry, ParityReport, compare, parse_engines, topk_agreement
from resnet_core.parity.engines import child_env
from resnet_core.parity.report import (
    bn_counts,
    group_of,
    to_biased_running_var,
    to_unbiased_running_var,
    tolerance_for,
)


def test_compare_figures():
    ref = np.array([[1.0, -4.0], [2.0, 0.5]])
    out = ref + np.array([[0.0, 0.2], [-0.1, 0.0]])
    m = compare(out, ref)
    assert m["max_abs"] == pytest.approx(0.2)
    assert m["max_rel"] == pytest.approx(0.2 / 4.0)
    assert m["mean_abs"] == pytest.approx(0.3 / 4)
    expected_cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert m["cosine"] == pytest.approx(expected_cos)
    assert m["scale"] == 4.0
    assert compare(ref, ref) == {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0, "cosine": pytest.approx(1.0),
                                 "scale": 4.0}


def test_topk_agreement():
    ref = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    out = ref.copy()
    out[0, [5, 6]] = out[0, [6, 5]]  # top-1 changes in sample 0, its top-5 set does not
    out[1, [4, 5]] = out[1, [5, 4]]  # sample 1: class 5 enters its top-5, class 4 leaves
    assert topk_agreement(out, ref, 1) == 0.5
    assert topk_agreement(out, ref, 5) == 0.5
    assert topk_agreement(ref, ref, 5) == 1.0
    assert topk_agreement(ref[:, :3], ref[:, :3], 5) == 1.0  # k capped at the class count


def _simulate_bn_update(batch: np.ndarray, old: np.ndarray, momentum: float, unbiased: bool) -> np.ndarray:
    n = batch.shape[0] * batch.shape[2] * batch.shape[3]
    var = batch.var(axis=(0, 2, 3), ddof=1 if unbiased else 0)
    assert n > 1
    return (1 - momentum) * old + momentum * var


@pytest.mark.parametrize("momentum", [0.1, 0.01, 0.5])
def test_running_var_conventions_are_restated_exactly(momentum):
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, (2, 5, 2, 2))  # n = 8: the unbiased factor is 8/7
    old = rng.uniform(0.5, 2.0, 5)
    torch_new = _simulate_bn_update(x, old, momentum, unbiased=True)
    keras_new = _simulate_bn_update(x, old, momentum, unbiased=False)
    assert np.abs(keras_new - torch_new).max() / np.abs(torch_new).max() > 1e-3 * momentum  # a real difference
    np.testing.assert_allclose(to_unbiased_running_var(keras_new, old, momentum, 8), torch_new, rtol=1e-12)
    np.testing.assert_allclose(to_biased_running_var(torch_new, old, momentum, 8), keras_new, rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("name,size", [("tiny_resnext", (64, 64)), ("resnet18", (65, 77)), ("resnet50d", (33, 47)),
                                       ("seresnet50", (64, 64))])
def test_bn_counts_match_torch(name, size):
    """The counts that restate running_var are those torch's batch norms really see."""
    import torch

    model = rc.build(name, backend="torch").train()
    seen = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_pre_hook(
                lambda m, args, key=module_name: seen.__setitem__(key, args[0].numel() // args[0].shape[1]))
    with torch.no_grad():
        model(torch.zeros(3, 3, *size))
    assert bn_counts(model.plan, 3, *size) == seen


def test_bn_counts_with_dilation():
    spec = rc.get_spec("resnet50").replace(output_stride=8)
    counts = bn_counts(rc.make_plan(spec), 1, 224, 224)
    assert counts["layer4.2.bn3"] == 28 * 28 and counts["layer2.0.bn2"] == 28 * 28 and counts["bn1"] == 112 * 112


def test_group_of():
    assert [group_of(n) for n in ("conv1.weight", "bn1.running_var", "conv1.0.weight", "layer3.1.conv2.weight",
                                  "layer2.0.downsample.1.bias", "fc.weight", "norm.running_mean",
                                  "layer1.0.norm1.weight")] == \
        ["stem", "stem", "stem", "layer3.1", "layer2.0", "fc", "norm", "layer1.0"]


def test_tolerances_per_dtype_and_engine():
    assert tolerance_for("float32", "activation", "keras-jax") == 1e-5
    for dtype in ("bfloat16", "float16"):
        for kind in ("activation", "running", "grad"):
            for engine in ("keras-jax", "keras-tensorflow", "keras-torch"):
                assert tolerance_for("float32", kind, engine) < tolerance_for(dtype, kind, engine)
    assert tolerance_for("bfloat16", "running", "keras-jax") == 1e-2
    assert tolerance_for("bfloat16", "running", "keras-torch") == 5e-3
    assert tolerance_for("bfloat16", "running", "keras-torch", reference="keras-jax") == 1e-2


def _report(values: dict[str, list[float]], tolerance: float = 1e-5) -> ParityReport:
    names = ["stem", "layer1.0", "layer2.0", "pool", "logits"]
    layers = []
    for i, name in enumerate(names):
        entry = Entry(name, "activation", (2, 4))
        for engine, errs in values.items():
            entry.engines[engine] = {"max_abs": errs[i], "max_rel": errs[i], "mean_abs": errs[i] / 2, "cosine": 1.0,
                                     "tolerance": tolerance, **({"top1": 1.0, "top5": 1.0} if name == "logits" else {})}
        layers.append(entry)
    engines = {"torch": {"status": "ok", "versions": {"torch": "x"}, "device": "cpu", "tf32": "off", "seconds": 1.0}}
    engines.update({e: {"status": "ok", "versions": {"keras": "y"}, "device": "cpu", "tf32": "off", "seconds": 2.0}
                    for e in values})
    return ParityReport("tiny", "eval", "float32", False, 2, (8, 8), 0, "torch",
                        {"activation": dict.fromkeys(values, tolerance)}, engines, layers)


def test_report_names_the_first_layer_over_tolerance():
    report = _report({"keras-jax": [1e-7, 2e-7, 3e-7, 3e-7, 4e-7],
                      "keras-torch": [1e-7, 2e-7, 0.3, 0.2, 0.5]})
    assert not report.ok
    assert report.worst_rel_err == 0.5
    assert report.first_failure == {"kind": "activation", "name": "layer2.0", "engine": "keras-torch", "max_rel": 0.3,
                                    "tolerance": 1e-5}
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["worst_rel_err"] == 0.5
    assert [layer["name"] for layer in data["layers"]] == ["stem", "layer1.0", "layer2.0", "pool", "logits"]
    assert data["layers"][2]["engines"]["keras-torch"]["ok"] is False
    assert data["layers"][2]["engines"]["keras-jax"]["ok"] is True
    table = report.table()
    assert "FAIL: first over tolerance: activation layer2.0 on keras-torch (3.0e-01 > 1e-05)" in table
    assert "3.0e-01 !" in table


def test_report_ok_needs_a_comparison_and_no_crash():
    report = _report({"keras-jax": [1e-7] * 5})
    assert report.ok and report.first_failure is None and report.worst_rel_err == 1e-7
    report.engines["keras-tensorflow"] = {"status": "skipped", "reason": "not installed: tensorflow"}
    assert report.ok  # a skipped engine is listed, not a failure
    assert "keras-tensorflow: SKIPPED (not installed: tensorflow)" in report.table()
    report.engines["keras-torch"] = {"status": "failed", "reason": "RuntimeError: boom"}
    assert not report.ok and "FAIL: engine(s) crashed: keras-torch" in report.table()
    alone = _report({})
    assert not alone.ok and alone.worst_rel_err != alone.worst_rel_err  # NaN: nothing was compared
    assert json.loads(alone.to_json())["worst_rel_err"] is None


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report({"keras-jax": [1e-7, 2e-7, 3e-7, 3e-7, 4e-7], "keras-torch": [1e-7, 2e-7, 0.3, 0.2, 0.5]})
    report.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_engines():
    assert parse_engines("torch, keras-jax,torch") == ("torch", "keras-jax")
    with pytest.raises(ValueError, match="Unknown engine 'keras-mxnet'"):
        parse_engines("torch,keras-mxnet")
    with pytest.raises(ValueError, match="No engine"):
        parse_engines(" , ")


def test_child_env_sets_the_engine_only_for_children(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert child_env("keras-jax")["KERAS_BACKEND"] == "jax"
    assert "KERAS_BACKEND" not in child_env("torch")
    env = child_env("keras-torch", device="cpu")
    assert env["NVIDIA_TF32_OVERRIDE"] == "0" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_import_parity_imports_no_framework():
    code = ("import sys, resnet_core, resnet_core.parity, resnet_core.commands.parity; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'keras', 'jax', 'tensorflow', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "infer"}, "Unknown mode 'infer'"),
    ({"dtype": "float64"}, "Unknown dtype 'float64'"),
    ({"batch": 0}, "batch must be a positive integer"),
    ({"size": (64,)}, "size must be a positive int or"),
    ({"backends": "keras-jax,keras-torch"}, "reference engine 'torch' is not among"),
    ({"tolerance": -1.0}, "tolerance must be a positive number"),
    ({"mode": "train", "batch": 1, "size": 32}, "layer4.0.bn2 sees 1 at batch 1"),
    ({"engine_weights": {"keras-tensorflow": {}}, "backends": "torch,keras-jax"}, "engine_weights names"),
    ({"weights": {"conv1.weight": np.zeros((1, 1))}}, "Weights do not fit the model"),
])
def test_parity_rejects_bad_input_before_running(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        rc.parity("tiny_resnext", **{"size": 64, **kwargs})


@pytest.mark.parametrize("argv,message", [
    (["nope"], "Unknown ResNet spec 'nope'"),
    (["tiny_resnext", "--backends", "torch,foo"], "Unknown engine 'foo'"),
    (["tiny_resnext", "--size", "3x"], "--size expects N or HxW"),
    (["tiny_resnext", "--json", "/no/such/folder/r.json"], "--json: the folder"),
    (["missing.safetensors"], "No such file: 'missing.safetensors'"),
    (["tiny_resnext", "--engine-weights", "keras-jax"], "--engine-weights expects ENGINE=FILE"),
])
def test_cli_bad_input_exits_2(argv, message, capsys):
    assert main(["parity", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_gradients_are_judged_against_float64_following_the_engine_own_ties():
    """A unit switched on by a near-tie moves the gradient by 1e-3 (a thousand times rounding): the raw rule fails,
    the tie-aware one passes; a gradient off by 3e-4 fails both."""
    from resnet_core.parity.metrics import GRAD_MULTIPLE, judge_gradient

    rng = np.random.default_rng(0)
    torch64 = rng.normal(0.0, 1.0, 1000)  # float64 following torch's own masks (here also float64's)
    engine64 = torch64.copy()
    engine64[7] += 3e-3  # the engine resolved a tie the other way: its float64 gradient differs this much
    torch32 = torch64 * (1 + 2e-7 * rng.normal(size=1000))  # fp32 arithmetic: rounding-sized
    engine32 = engine64 * (1 + 3e-7 * rng.normal(size=1000))
    fine = judge_gradient(engine32, torch32, torch64, torch64, engine64)
    assert fine["raw_multiple"] > 100 * GRAD_MULTIPLE and fine["multiple"] < GRAD_MULTIPLE
    assert fine["tie_aware_rel"] <= fine["tolerance"] and fine["tie_effect"] > 1e-4
    wrong = judge_gradient(engine32 * (1 + 3e-4), torch32, torch64, torch64, engine64)
    assert wrong["multiple"] > 10 * GRAD_MULTIPLE and wrong["tie_aware_rel"] > wrong["tolerance"]
    raw_only = judge_gradient(engine32, torch32, torch64)  # no pattern recorded: the raw rule alone
    assert raw_only["multiple"] == raw_only["raw_multiple"] and "tie_aware_rel" not in raw_only


def test_report_judges_the_tie_aware_error_and_lists_the_ties():
    report = _report({"keras-jax": [1e-7] * 5})
    report.grad = True
    report.grad_rule = {"multiple": 10.0, "basis_floor": 1e-7, "tie_band": 1e-5}
    entry = Entry("layer1.0.conv1.weight", "grad", (4, 4, 3, 3), reference_vs_float64=2e-5,
                  reference_vs_float64_tie_aware=5e-7, basis_growth=0.025)
    entry.engines["keras-jax"] = {"max_rel": 3e-3, "tie_aware_rel": 1e-6, "tolerance": 5e-6, "multiple": 2.0,
                                  "raw_multiple": 150.0, "tie_effect": 3e-3}
    report.gradients.append(entry)
    report.grad_ties = {"torch": [], "keras-jax": [{"site": "layer1_0_bn1_relu", "kind": "relu", "count": 2,
                                                    "beyond_band": 0, "min_rel": 1e-9, "max_rel": 3e-8}]}
    assert report.ok and report.grad_multiples == {"keras-jax": 2.0} and report.raw_grad_multiples["keras-jax"] == 150
    assert report.basis_growth == {"median": 0.025, "p90": 0.025, "max": 0.025}
    data = json.loads(report.to_json())
    assert data["raw_grad_multiples"] == {"keras-jax": 150.0} and data["grad_ties"] == report.grad_ties
    assert data["gradients"][0]["basis_growth"] == 0.025 and data["gradients"][0]["engines"]["keras-jax"]["ok"]
    table = report.table()
    assert "layer1_0_bn1_relu 2 (1e-09..3e-08)" in table and "median 0.025x" in table
    assert "(ties resolved; raw keras-jax 1.5e+02x)" in table
    entry.engines["keras-jax"]["tie_aware_rel"] = 1e-5  # arithmetic beyond the bound: fails, by the judged figure
    assert not report.ok and report.first_failure["max_rel"] == 1e-5


def test_pattern_sites_are_every_relu_and_max_pool_in_forward_order():
    from resnet_core.parity.ties import pattern_sites

    sites = pattern_sites(rc.make_plan(rc.get_spec("resnet18")))
    assert [s.kind for s in sites[:2]] == ["relu", "maxpool"] and len(sites) == 2 + 8 * 2
    assert [s.name for s in sites[2:4]] == ["layer1_0_bn1_relu", "layer1_0_out"]
