"""What runs inside one engine's process for ``resnet-core bench``: build each variant, time it, save its logits.

Started as ``python -m resnet_core.bench.worker JOB.json`` (see :mod:`resnet_core.bench.run`), with
``KERAS_BACKEND`` set for Keras engines. The job (JSON): ``engine``, ``variants`` ([dtype, layout] pairs),
``spec`` (dict), ``weights`` (canonical npz), ``images`` (fidelity images, NCHW .npy), ``calibration``
(.npy, for int8), ``batches``, ``threads``, ``min_calls``, ``max_calls``, ``budget`` (seconds per row),
``workdir``, ``output`` (npz of logits per variant key), ``result`` (JSON rows and versions).

A variant that fails is recorded with its error; the others still run. Progress goes to stderr as
``@@progress`` lines, which the parent shows as they come.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..parity.engines import EXIT_UNAVAILABLE
from .variants import REQUIRES, Variant

WARMUP_CALLS = 2  # the first call compiles (XLA, oneDNN primitives), the second settles caches


class Runnable(NamedTuple):
    """``prepare`` turns NCHW float32 images into the engine's input (outside the timing); ``run`` is timed."""

    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], Any]
    to_numpy: Callable[[Any], np.ndarray]  # the output as NCHW-order float32 numpy


def progress(text: str) -> None:
    print(f"@@progress {text}", file=sys.stderr, flush=True)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return getattr(importlib.import_module(package), "__version__", "unknown")


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))) if a.ndim == 4 else a


# ------------------------------------------------------------------------------------------------ engines

def torch_variant(job: dict[str, Any], weights: dict[str, np.ndarray], v: Variant) -> Runnable:
    import torch

    import resnet_core as rc

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    model = rc.build(job["spec_obj"], backend="torch", dtype=None if v.dtype == "float32" else v.dtype).eval()
    rc.set_weights(model, weights)
    memory = torch.channels_last if v.layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=memory)
    dtype = getattr(torch, v.dtype)

    def prepare(x: np.ndarray):
        t = torch.from_numpy(x).to(dtype)
        return t.contiguous(memory_format=memory) if t.ndim == 4 else t

    def run(x):
        with torch.inference_mode():
            return model(x)

    return Runnable(prepare, run, lambda out: out.float().numpy())


def onnxruntime_variant(job: dict[str, Any], weights: dict[str, np.ndarray], v: Variant) -> Runnable:
    import onnxruntime as ort

    import resnet_core as rc

    spec, work = job["spec_obj"], Path(job["workdir"])
    path = work / f"model.{v.dtype}.onnx"
    if v.dtype == "int8":
        rc.export((spec, weights), path, size=tuple(job["size"]), quantize="int8", calibration=job["calibration"],
                  overwrite=True)
    else:
        rc.export((spec, weights), path, size=tuple(job["size"]), overwrite=True)
    options = ort.SessionOptions()
    # Idle threads spin after each run by default, taking the cores from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if job.get("threads"):
        options.intra_op_num_threads = job["threads"]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return Runnable(np.ascontiguousarray, lambda x: session.run(None, {name: x})[0], np.asarray)


def litert_variant(job: dict[str, Any], weights: dict[str, np.ndarray], v: Variant) -> Runnable:
    from ai_edge_litert.interpreter import Interpreter

    import resnet_core as rc

    path = Path(job["workdir"]) / "model.tflite"
    rc.export((job["spec_obj"], weights), path, size=tuple(job["size"]), overwrite=True)
    interpreter = Interpreter(model_path=str(path), num_threads=job.get("threads") or None)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        if shape != [x.shape]:  # resizing reallocates: only when the batch changes
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            shape[:] = [x.shape]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return Runnable(_nhwc, run, lambda o: _nchw(np.array(o, np.float32)))


def keras_variant(job: dict[str, Any], weights: dict[str, np.ndarray], v: Variant) -> Runnable:
    import keras

    import resnet_core as rc

    if job.get("threads") and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    elif job.get("threads") and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(job["threads"])
    model = rc.build(job["spec_obj"], backend="keras", dtype=None if v.dtype == "float32" else v.dtype)
    rc.set_weights(model, weights)
    return Runnable(_nhwc, model.predict_on_batch,
                    lambda o: _nchw(np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(o, "float32")))))


OPENERS = {"torch": torch_variant, "onnxruntime": onnxruntime_variant, "litert": litert_variant,
           "keras-jax": keras_variant, "keras-tensorflow": keras_variant, "keras-torch": keras_variant}


# ------------------------------------------------------------------------------------------------ measuring

def timed_calls(runnable: Runnable, x: Any, min_calls: int, max_calls: int, budget: float) -> list[float]:
    """Seconds per call: at least ``min_calls``, then more until ``budget`` seconds or ``max_calls``."""
    for _ in range(WARMUP_CALLS):
        runnable.to_numpy(runnable.run(x))
    times: list[float] = []
    spent = 0.0
    while len(times) < min_calls or (spent < budget and len(times) < max_calls):
        start = time.perf_counter()
        runnable.run(x)
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times


def logits(runnable: Runnable, images: np.ndarray, chunk: int) -> np.ndarray:
    """The outputs for every fidelity image, in chunks of the largest timed batch (no new input shape)."""
    out = []
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)]) if len(part) < chunk else part
        out.append(runnable.to_numpy(runnable.run(runnable.prepare(padded)))[:len(part)])
    # float32 whatever the engine returned: Keras hands back ml_dtypes bfloat16, which npz stores as raw bytes
    return np.concatenate(out).astype(np.float32).reshape(len(images), -1)


def measure(job: dict[str, Any], weights: dict[str, np.ndarray], images: np.ndarray, v: Variant,
            outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    from ..random_weights import random_images

    rows = []
    start = time.perf_counter()
    runnable = OPENERS[v.engine](job, weights, v)
    setup = time.perf_counter() - start
    outputs[v.key] = logits(runnable, images, max(job["batches"]))
    for batch in job["batches"]:
        progress(f"{v.engine} {v.dtype} {v.layout} batch {batch} ...")
        height, width = job["size"]
        x = runnable.prepare(random_images(batch, height, width, channels=images.shape[1], seed=11))
        times = timed_calls(runnable, x, job["min_calls"], job["max_calls"], job["budget"])
        median = statistics.median(times)
        rows.append({"engine": v.engine, "dtype": v.dtype, "layout": v.layout, "batch": batch, "status": "ok",
                     "median_ms": median * 1e3, "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
                     "calls": len(times), "images_per_s": batch / median, "setup_s": round(setup, 2)})
        progress(f"{v.engine} {v.dtype} {v.layout} batch {batch}: {median * 1e3:.1f} ms median of {len(times)}")
    return rows


def run(job: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    from ..spec import ResNetSpec

    job["spec_obj"] = ResNetSpec.from_dict(job["spec"])
    with np.load(job["weights"]) as data:
        weights = {k: data[k] for k in data.files}
    images = np.load(job["images"])
    rows: list[dict[str, Any]] = []
    outputs: dict[str, np.ndarray] = {}
    for dtype, layout in job["variants"]:
        v = Variant(job["engine"], dtype, layout)
        try:
            rows += measure(job, weights, images, v, outputs)
        except Exception as exc:  # noqa: BLE001 - reported in the variant's rows; the others still run
            traceback.print_exc()
            outputs.pop(v.key, None)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            progress(f"{v.engine} {v.dtype} {v.layout}: failed ({error})")
            done = {r["batch"] for r in rows if (r["engine"], r["dtype"], r["layout"]) == v}
            rows += [{"engine": v.engine, "dtype": dtype, "layout": layout, "batch": b, "status": "failed",
                      "error": error} for b in job["batches"] if b not in done]
    return rows, outputs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    result = Path(job["result"])
    try:
        for package in REQUIRES[job["engine"]]:
            importlib.import_module(package)
    except ImportError as exc:
        result.write_text(json.dumps({"error": f"cannot import: {exc}"}))
        return EXIT_UNAVAILABLE
    if job.get("threads"):
        os.environ.setdefault("OMP_NUM_THREADS", str(job["threads"]))
    rows, outputs = run(job)
    np.savez(job["output"], **outputs)  # type: ignore[arg-type]  # numpy stub: **kwds might hold allow_pickle
    versions = {p: _version(p) for p in REQUIRES[job["engine"]]}
    result.write_text(json.dumps({"rows": rows, "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
