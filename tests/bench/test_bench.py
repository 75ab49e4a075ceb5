"""``resnet-core bench`` / ``rc.bench``: the report's fields, the recommendation's bound, missing and failing
engines, bad input; and the CPU probe behind the bfloat16 warning. No timed assertions: the figures are measured
by the command itself, never checked here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import resnet_core as rc
from resnet_core import cpu_features, precision
from resnet_core.bench import recommend, run, variants
from resnet_core.cli import main
from resnet_core.testing import random_images

SPEC = "tiny_resnext"
ROW_KEYS = {"engine", "dtype", "batch", "median_ms", "min_ms", "max_ms", "max_rel_err", "top1_agreement"}
FAKED_MISSING = ("keras-jax", "keras-tensorflow", "keras-torch")  # reported as not installed, whatever is
FAILING = "litert"  # its worker is replaced by one that fails mid-run


# ------------------------------------------------------------------------------- the CPU probe and the warning

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse2 avx avx2 fma f16c {extra}
processor\t: 1
model name\t: AMD EPYC 7B13
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse2 avx avx2 fma f16c {extra}
"""


@pytest.fixture
def fake_cpuinfo(tmp_path, monkeypatch):
    def write(extra: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(CPUINFO.format(extra=extra))
        monkeypatch.setattr(cpu_features, "CPUINFO", path)
        cpu_features.cpu_flags.cache_clear()

    yield write
    cpu_features.cpu_flags.cache_clear()


def test_the_probe_reads_the_flags(fake_cpuinfo):
    fake_cpuinfo("")
    assert cpu_features.features() == ["avx2", "fma", "f16c"]
    assert not cpu_features.native_bf16()
    fake_cpuinfo("avx512f avx512bw avx512_vnni avx512_bf16")
    assert cpu_features.features() == ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]
    assert cpu_features.native_bf16()
    machine = cpu_features.machine()
    assert (machine["cpu"], machine["cores"]) == ("AMD EPYC 7B13", 2)


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(precision, "_warned", [])


@pytest.mark.parametrize("native", [False, True])
def test_the_bf16_warning_follows_the_probe(fresh_warning, monkeypatch, native):
    monkeypatch.setattr(cpu_features, "native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dtype in ("bfloat16", "bfloat16", "float16", "float32"):
            precision.warn_if_bf16_emulated(dtype)
    messages = [str(w.message) for w in caught]
    assert len(messages) == (0 if native else 1)  # once, and only for bfloat16
    if not native:
        assert "emulated" in messages[0] and "slower than float32" in messages[0] and "int8" in messages[0]
        assert "onnxruntime" in messages[0]


@pytest.mark.torch
@pytest.mark.parametrize("native", [False, True])
def test_a_bf16_build_warns_where_bf16_is_emulated(torch, fresh_warning, monkeypatch, native):
    monkeypatch.setattr(cpu_features, "native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = rc.build(SPEC, backend="torch", dtype="bfloat16")
        rc.build(SPEC, backend="torch", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    emulated = [w for w in caught if "emulated" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    if emulated:
        assert emulated[0].filename == __file__  # points at the caller's rc.build line


# ------------------------------------------------------------------------------- the recommendation (no framework)

def _row(engine, dtype, batch, ms, top1, err=1e-3, status="ok"):
    return {"engine": engine, "dtype": dtype, "layout": "NCHW", "batch": batch, "status": status, "median_ms": ms,
            "min_ms": ms, "max_ms": ms, "max_rel_err": err, "top1_agreement": top1}


def test_the_recommendation_is_the_fastest_within_the_bound():
    rows = [_row("torch", "float32", b, 10.0 * b, 1.0, 0.0) for b in (1, 8)]
    rows += [_row("onnxruntime", "int8", b, 3.0 * b, 0.97) for b in (1, 8)]  # fastest, but under 99%
    rows += [_row("torch", "bfloat16", b, 5.0 * b, 1.0) for b in (1, 8)]
    rows += [_row("litert", "float32", 1, 1.0, 1.0), _row("litert", "float32", 8, 0, 1.0, status="failed")]
    rows += [_row("keras-torch", "float16", b, 1.0, 1.0, float("inf")) for b in (1, 8)]  # overflowed: never
    assert recommend(rows)["dtype"] == "bfloat16"
    assert recommend(rows, min_top1=0.95)["dtype"] == "int8"
    assert recommend(rows, max_rel_err=1e-4)["dtype"] == "float32"
    assert recommend(rows, min_top1=1.0, max_rel_err=-1.0) is None


# ------------------------------------------------------------------------------- bad input: one line, exit 2

@pytest.mark.parametrize("argv, needle", [
    (["--engines", "tensorrt"], "Unknown engine 'tensorrt'"),
    (["--dtypes", "int4"], "Unknown dtype 'int4'"),
    (["--engines", "keras-jax"], "Engine 'keras-jax' is not installed"),
    (["--batch", "0"], "batch expects positive integers"),
    (["--images", "missing.npy"], "--images expects an existing .npy"),
    (["--images", "x.npy", "--size", "32"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, needle):
    monkeypatch.setattr(variants, "missing", lambda e: "not installed: keras" if e == "keras-jax" else None)
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 32, 32), np.float32))
    assert main(["bench", SPEC, "-q", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


# ------------------------------------------------------------------------------- a real run on a tiny model

@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, torch):
    """One CLI run: torch and onnxruntime measured, the Keras engines reported missing, litert failing mid-run."""
    out = tmp_path_factory.mktemp("bench")
    real_worker = run._run_worker

    def worker(engine, job, work, progress, timeout):
        if engine == FAILING:
            return {"error": "RuntimeError: the runtime crashed (injected by the test)"}
        return real_worker(engine, job, work, progress, timeout)

    real_missing = variants.missing
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(variants, "missing", lambda e: "not installed: faked" if e in FAKED_MISSING else real_missing(e))
        mp.setattr(run, "_run_worker", worker)
        np.save(out / "images.npy", random_images(6, 32, 32, seed=5))  # real images would be preprocessed photos
        argv = ["bench", SPEC, "--images", str(out / "images.npy"), "--batch", "1,2", "--budget", "0",
                "--dtypes", "fp32,bf16,int8",
                "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"), "-q"]
        code = main(argv)
    return code, json.loads((out / "bench.json").read_text()), out


@pytest.mark.torch
def test_the_json_has_the_fields(bench_run):
    code, report, out = bench_run
    assert code == 0
    machine = report["machine"]
    assert machine["features"] == cpu_features.features() and isinstance(machine["features"], list)
    assert machine["cpu"] and machine["threads"] >= 1 and "torch" in machine["versions"]
    assert report["settings"]["size"] == [32, 32] and "images.npy" in report["settings"]["images"]
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    assert {(r["engine"], r["dtype"]) for r in ok} >= {("torch", "float32"), ("torch", "bfloat16"),
                                                       ("onnxruntime", "float32"), ("onnxruntime", "int8")}
    assert not {r["dtype"] for r in report["rows"]} & {"float16"}  # --dtypes was obeyed
    for r in ok:
        assert ROW_KEYS <= set(r) and r["batch"] in (1, 2)
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] and 0 <= r["top1_agreement"] <= 1
    reference = [r for r in ok if (r["engine"], r["dtype"], r["layout"]) == ("torch", "float32", "NCHW")]
    assert [r["max_rel_err"] for r in reference] == [0.0, 0.0]
    # reduced precision really ran reduced: errors far above fp32 rounding, below a broken model's
    low = {r["dtype"]: r["max_rel_err"] for r in ok if r["engine"] != "torch" or r["dtype"] != "float32"}
    assert 1e-4 < low["bfloat16"] < 5e-2 and 1e-4 < low["int8"] < 0.5 and low["float32"] < 1e-5
    assert set(report["recommended"]) >= {"engine", "dtype"}
    assert (out / "bench.png").stat().st_size > 10_000


@pytest.mark.torch
def test_missing_and_failing_engines_are_reported_not_fatal(bench_run):
    _, report, _ = bench_run
    assert set(report["skipped"]) == set(FAKED_MISSING)
    failed = [r for r in report["rows"] if r["engine"] == FAILING]
    assert failed and all(r["status"] == "failed" and "injected" in r["error"] for r in failed)
    assert any(r["status"] == "ok" and r["engine"] == "onnxruntime" for r in report["rows"])


@pytest.mark.torch
def test_the_recommendation_obeys_the_bound(bench_run):
    _, report, _ = bench_run
    rec = report["recommended"]
    assert rec["top1_agreement"] >= report["settings"]["bound"]["min_top1"] == 0.99
    mine = [r for r in report["rows"] if (r["engine"], r["dtype"], r["layout"]) == (rec["engine"], rec["dtype"],
                                                                                     rec["layout"])]
    assert len(mine) == 2 and all(r["top1_agreement"] >= 0.99 for r in mine)
    # and it is the fastest such variant: recomputed from the rows with the same rule
    assert recommend(report["rows"]) == rec
    strict = recommend(report["rows"], max_rel_err=1e-5)
    assert strict is not None and strict["max_rel_err"] <= 1e-5 and strict["dtype"] == "float32"


@pytest.mark.keras
@pytest.mark.torch
def test_a_keras_engine_runs_in_its_own_process(need):
    keras = need("keras", "keras")
    engine = f"keras-{keras.backend.backend()}"
    report = rc.bench(SPEC, engines=[engine], dtypes="float32,bfloat16", batch=1, size=32, fidelity_images=4,
                      budget=0)
    rows = {r["dtype"]: r for r in report.rows if r["engine"] == engine}
    assert [r["status"] for r in rows.values()] == ["ok", "ok"] and engine not in report.skipped
    assert rows["float32"]["max_rel_err"] < 1e-4 and rows["float32"]["top1_agreement"] == 1.0
    assert 1e-4 < rows["bfloat16"]["max_rel_err"] < 5e-2  # Keras returns bfloat16 logits: read back as float32


def test_an_unreadable_output_fails_its_own_rows_only():
    ok = {"engine": "torch", "dtype": "float32", "layout": "NCHW", "batch": 1, "status": "ok"}
    bad = {"engine": "keras-tensorflow", "dtype": "bfloat16", "layout": "NHWC", "batch": 1, "status": "ok"}
    reference = np.eye(2, 3, dtype=np.float32)
    raw_bytes = np.zeros((2, 3), "V2")  # what npz made of a bfloat16 array
    run._fidelity([ok, bad], {"torch|float32|NCHW": reference, "keras-tensorflow|bfloat16|NHWC": raw_bytes}, reference)
    assert (ok["status"], ok["max_rel_err"], ok["top1_agreement"]) == ("ok", 0.0, 1.0)
    assert bad["status"] == "failed" and "its output" in bad["error"] and bad["max_rel_err"] is None
