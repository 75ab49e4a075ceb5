"""Parity engines that run an exported artifact: each worker exports the model (``resnet-core export``, in a
child process) and runs the artifact in its own runtime, importing only that runtime itself.

Given an existing artifact (``engine_weights={"onnxruntime": "model.onnx"}``), the engine checks that one.
An artifact has the model's output alone (the logits, or the pooled/final features without a top), so
these engines are compared on that tap only.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import InputError

# engine -> (artifact file name, export options, the Keras engine exporting it (None: torch), runtime packages)
ARTIFACTS: dict[str, tuple[str, tuple[str, ...], str | None, tuple[str, ...]]] = {
    "onnxruntime": ("model.onnx", (), None, ("onnxruntime", "onnx")),
    "litert": ("model.tflite", (), "tensorflow", ("ai_edge_litert",)),
    "tf-saved-model": ("saved_model", ("--format", "saved_model"), "tensorflow", ("tensorflow",)),
    "torch-export": ("model.pt2", (), None, ("torch",)),
}


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    import resnet_core

    out = {"numpy": np.__version__, "resnet_core": resnet_core.__version__}
    for name in packages:
        module = importlib.import_module(name)
        out[name] = getattr(module, "__version__", None) or _dist_version(name)
    return out


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return "unknown"


class ArtifactRunner:
    """Exports on the first batch (the artifact's height and width are fixed), then runs it; eval, fp32 only.
    Given an artifact instead of weights (``engine_weights``), runs that one as it is."""

    def __init__(self, engine: str, spec: Any, dtype: str, workdir: Path):
        from ..plan import make_plan

        if dtype != "float32":
            raise InputError(f"{engine} runs the exported float32 artifact; dtype {dtype} is not supported")
        self.engine, self.spec, self.plan = engine, spec, make_plan(spec)
        self.name, self.options, self.keras_engine, packages = ARTIFACTS[engine]
        self.workdir = workdir
        self.artifact = workdir / f"{engine}.{self.name}"
        self.run_fn: Callable[[np.ndarray], Any] | None = None
        self._weights: dict[str, np.ndarray] = {}
        self.info: dict[str, Any] = {"versions": _versions(packages), "device": "cpu", "tf32": "n/a (CPU runtime)",
                     "precision": "float32 artifact", "running_var": "n/a (eval only)"}

    def load(self, weights: dict[str, Any]) -> None:
        if weights["format"] == "artifact":
            self.artifact = Path(weights["path"])
            self.info["artifact"] = f"{self.artifact.name} (given)"
            self.run_fn = getattr(self, f"_open_{self.engine.replace('-', '_')}")()
            return
        if weights["format"] != "npz":
            raise InputError(f"The {self.engine} engine exports from canonical npz weights, not {weights['format']!r}")
        self.weights_path = weights["path"]
        with np.load(self.weights_path) as data:
            self._weights = {k: data[k] for k in data.files}

    def weights(self) -> dict[str, np.ndarray]:
        return self._weights

    def restore(self, weights: dict[str, np.ndarray]) -> None:
        """Artifacts are stateless in eval mode: nothing to restore."""

    def _export(self, height: int, width: int) -> None:
        spec_path = self.workdir / f"{self.engine}.spec.json"
        spec_path.write_text(self.spec.to_json())
        env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
        if self.keras_engine is not None:
            env["KERAS_BACKEND"] = self.keras_engine  # the exporting process runs that engine itself
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "resnet_core.cli", "export", self.weights_path,
                               str(self.artifact), "--arch", str(spec_path), "--size", f"{height}x{width}", "-q",
                               "--force", *self.options], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"resnet-core export failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        self.info["export_seconds"] = round(time.perf_counter() - start, 2)
        self.info["artifact"] = self.artifact.name
        self.run_fn = getattr(self, f"_open_{self.engine.replace('-', '_')}")()

    def taps(self, images: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        if train:
            raise InputError(f"{self.engine} runs an exported inference artifact: eval mode only")
        if self.run_fn is None:
            self._export(*images.shape[2:])
        run_fn = cast(Callable[[np.ndarray], Any], self.run_fn)  # set by _export
        out = np.asarray(run_fn(np.ascontiguousarray(images, np.float32)), np.float32)
        return {self.plan.taps[-1]: out}

    def grads(self, *args: Any) -> dict[str, np.ndarray]:
        raise InputError(f"{self.engine} runs an exported inference artifact: no gradients")

    # One opener per runtime; each returns NCHW images -> output (NCHW when 4-D).

    def _open_onnxruntime(self):
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.artifact), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]

    def _open_torch_export(self):
        import torch

        module = torch.export.load(str(self.artifact)).module()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()

        return run

    def _open_tf_saved_model(self):
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
        serve = tf.saved_model.load(str(self.artifact)).signatures["serving_default"]

        def run(x: np.ndarray) -> np.ndarray:
            (out,) = serve(tf.constant(_nhwc(x))).values()
            return _nchw(out.numpy())

        return run

    def _open_litert(self):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.artifact))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

        def run(x: np.ndarray) -> np.ndarray:
            x = _nhwc(x)
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return _nchw(interpreter.get_tensor(out["index"]).copy())

        return run


def is_artifact(engine: str, value: Any) -> bool:
    """Whether ``value`` is an artifact file (or SavedModel folder) that ``engine`` runs as given."""
    if engine not in ARTIFACTS or not isinstance(value, (str, os.PathLike)):
        return False
    path = Path(value)
    if engine == "tf-saved-model":
        return path.is_dir()
    return path.suffix.lower() == Path(ARTIFACTS[engine][0]).suffix


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1))) if a.ndim == 4 else a


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))) if a.ndim == 4 else a


def artifact_job_error(engines: tuple[str, ...], mode: str, grad: bool, dtype: str, reference: str) -> str | None:
    """Why a parity job cannot run on the artifact engines among ``engines``, or None."""
    chosen = [e for e in engines if e in ARTIFACTS]
    if not chosen:
        return None
    if reference in ARTIFACTS:
        return f"The reference must run every layer; {reference} runs an exported artifact (outputs only)"
    if mode != "eval" or grad:
        return f"{', '.join(chosen)} run exported inference artifacts: eval mode only, without --grad"
    if dtype != "float32":
        return f"{', '.join(chosen)} run float32 artifacts; drop --dtype {dtype} (int8: resnet-core export --quantize)"
    return None


__all__ = ["ARTIFACTS", "ArtifactRunner", "artifact_job_error"]
