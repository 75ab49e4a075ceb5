"""What runs inside one engine's process: build, load weights, run taps and gradients, save to npz.

Started as ``python -m resnet_core.parity.worker JOB.json`` by :mod:`resnet_core.parity.engines`,
with ``KERAS_BACKEND`` already set in its environment for Keras engines. The job (JSON):

- ``engine``: one of ``ENGINES``; ``spec``: a ResNetSpec dict; ``dtype``: float32 | bfloat16 | float16
  (the last two run mixed precision: torch autocast, Keras ``mixed_*`` policies; weights stay fp32).
- ``weights``: ``{"format": "npz", "path"}`` (canonical names and layouts) or ``{"format": "keras",
  "path"}`` (a Keras ``.weights.h5``, Keras engines only).
- ``inputs``: an npz holding ``images/<set>`` (NCHW float32) and, for ``grad``, ``probe/<set>``.
- ``mode``: eval | train; ``grad``: gradients of ``sum(output * probe) / batch`` w.r.t. every weight;
  ``grad_float64``: the torch engine also saves them from a float64 copy (``<set>/grad64/<canonical>``).
- ``record_pattern``: with fp32 ``grad``, also save the activation pattern of the gradient pass (every ReLU's
  mask, every max-pool's input: ``<set>/pattern/<keras layer>``, see :mod:`.ties`).
- ``follow``: torch engine only, instead of everything else: ``{engine: {"output": npz, "weights": entry}}``;
  float64 gradients that follow each engine's recorded pattern (``<set>/grad64/<engine>/<canonical>``), the
  ties resolved listed in the metadata (``ties``).
- ``save_keras_weights``: optional path for ``model.save_weights`` (after loading).
- ``output``, ``meta``: where to write results (npz) and versions, device and settings (JSON).

Saved arrays, float32 (grad64: float64) in canonical layouts (NCHW activations, PyTorch-shaped
tensors): ``<set>/tap/<tap>``, ``<set>/running/<canonical>`` (train: running statistics after one
forward step) and ``<set>/grad/<canonical>``. Weights are restored before each set and each gradient
pass. A one-step "train" is a forward pass with batch statistics: it is what updates running ones.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, cast

import numpy as np

from .artifacts import ARTIFACTS, ArtifactRunner
from .engines import EXIT_UNAVAILABLE, REQUIRES

DTYPES = ("float32", "bfloat16", "float16")


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    import resnet_core

    out = {"python": platform.python_version(), "numpy": np.__version__, "resnet_core": resnet_core.__version__}
    for name in packages:
        out[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return out


class TorchRunner:
    """The reference: our TorchResNet, autograd, torch.autocast for mixed precision."""

    def __init__(self, spec: Any, dtype: str):
        import torch

        import resnet_core as rc

        self.torch = torch
        # TF32 off: cuBLAS matmuls and cuDNN convolutions then run in true fp32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = rc.build(spec, backend="torch").to(self.device)
        self.plan = self.model.plan
        self.dtype = dtype
        self.info = {
            "versions": _versions(("torch",)),
            "device": torch.cuda.get_device_name(0) if self.device == "cuda" else "cpu",
            "tf32": "off (torch.backends.cuda.matmul.allow_tf32=False, torch.backends.cudnn.allow_tf32=False, "
                    "float32_matmul_precision=highest)",
            "precision": "float32" if dtype == "float32" else f"torch.autocast({dtype}), fp32 weights",
            "running_var": "unbiased",
        }

    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return self.torch.autocast(self.device, dtype=getattr(self.torch, self.dtype))

    def load(self, weights: dict[str, Any]) -> None:
        import resnet_core as rc

        if weights["format"] != "npz":
            raise RuntimeError(f"The torch engine reads canonical npz weights, not {weights['format']!r}")
        with np.load(weights["path"]) as data:
            rc.set_weights(self.model, {k: data[k] for k in data.files})

    def weights(self) -> dict[str, np.ndarray]:
        import resnet_core as rc

        return rc.get_weights(self.model)

    def restore(self, weights: dict[str, np.ndarray]) -> None:
        import resnet_core as rc

        rc.set_weights(self.model, weights)

    def _input(self, images: np.ndarray):
        return self.torch.from_numpy(images).to(self.device)

    def taps(self, images: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        self.model.train(train)
        with self.torch.no_grad(), self._autocast():
            out = self.model.forward_taps(self._input(images))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def grads(self, images: np.ndarray, probe: np.ndarray, train: bool,
              record: bool = False) -> dict[str, np.ndarray]:
        if not record:
            return self._grads(self.model, images, probe, train, self._autocast())
        from .ties import TorchRecorder

        recorder = TorchRecorder(self.plan)
        with recorder.recording():
            out = self._grads(self.model, images, probe, train, self._autocast())
        self.pattern = dict(recorder.pattern)
        return out

    def grads_following(self, images: np.ndarray, probe: np.ndarray, train: bool,
                        pattern: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """Float64 gradients taking ``pattern``'s side of every near-tie (:mod:`.ties`), and the ties taken."""
        import copy

        from .ties import follow_pattern

        model = copy.deepcopy(self.model).double()
        context, ties = follow_pattern(self.plan, pattern)
        grads = self._grads(model, images.astype(np.float64), probe.astype(np.float64), train, context)
        return grads, ties

    def grads_float64(self, images: np.ndarray, probe: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        """The same gradients from a float64 copy: how far fp32 rounding alone moves each one."""
        import copy

        model = copy.deepcopy(self.model).double()
        return self._grads(model, images.astype(np.float64), probe.astype(np.float64), train,
                           contextlib.nullcontext())

    def _grads(self, model: Any, images: np.ndarray, probe: np.ndarray, train: bool,
               precision: Any) -> dict[str, np.ndarray]:
        torch = self.torch
        model.train(train)
        model.zero_grad(set_to_none=True)
        with precision:
            out = model(self._input(images))
        loss = (out.to(torch.from_numpy(probe).dtype) * torch.from_numpy(probe).to(self.device)).sum() / len(images)
        loss.backward()
        params = dict(model.named_parameters())
        return {p.name: params[p.name].grad.cpu().numpy() for p in self.plan.params if p.trainable}


class KerasRunner:
    """Our Keras model on the engine KERAS_BACKEND names; gradients with that engine's own autodiff."""

    def __init__(self, spec: Any, dtype: str):
        import keras

        import resnet_core as rc
        from resnet_core.backends import keras_adapter

        self.keras = keras
        self.engine = keras.backend.backend()
        self.dtype = dtype
        tf32 = self._numerics()
        if dtype != "float32":
            keras.config.set_dtype_policy(f"mixed_{dtype}")
        self.model = rc.build(spec, backend="keras")
        self.plan = self.model.plan
        self.tap_model = keras_adapter.tap_model(self.model)
        packages = {"jax": ("keras", "jax", "jaxlib"), "tensorflow": ("keras", "tensorflow"),
                    "torch": ("keras", "torch")}[self.engine]
        self.info = {
            "versions": _versions(packages),
            "device": self._device(),
            "tf32": tf32,
            "precision": "float32" if dtype == "float32" else f"keras policy mixed_{dtype}, fp32 weights",
            "running_var": "biased",
        }
        if self.engine == "jax":
            import jax

            self.jax = jax
            self._jit_taps: dict[bool, Any] = {}
            self._jit_grads: dict[tuple[bool, bool], Any] = {}
        self._graphs: dict[bool, Any] = {}

    def _numerics(self) -> str:
        if self.engine == "jax":
            import jax

            jax.config.update("jax_default_matmul_precision", "highest")
            return "off (jax_default_matmul_precision=highest)"
        if self.engine == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(False)
            return "off (tf.config.experimental.enable_tensor_float_32_execution(False))"
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        return "off (torch.backends.cuda.matmul.allow_tf32=False, torch.backends.cudnn.allow_tf32=False)"

    def _device(self) -> str:
        if self.engine == "jax":
            import jax

            d = jax.devices()[0]
            return "cpu" if d.platform == "cpu" else f"{d.platform}: {d.device_kind}"
        if self.engine == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"gpu: {gpus[0].name}" if gpus else "cpu"
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"

    def load(self, weights: dict[str, Any]) -> None:
        import resnet_core as rc

        if weights["format"] == "keras":
            self.model.load_weights(weights["path"])
        elif weights["format"] == "npz":
            with np.load(weights["path"]) as data:
                rc.set_weights(self.model, {k: data[k] for k in data.files})
        else:
            raise RuntimeError(f"Unknown weights format {weights['format']!r}")

    def weights(self) -> dict[str, np.ndarray]:
        import resnet_core as rc

        return rc.get_weights(self.model)

    def restore(self, weights: dict[str, np.ndarray]) -> None:
        import resnet_core as rc

        rc.set_weights(self.model, weights)

    def _numpy(self, tensor) -> np.ndarray:
        keras = self.keras
        return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32")))

    def taps(self, images: np.ndarray, train: bool) -> dict[str, np.ndarray]:
        x = _nhwc(images)
        if self.engine == "jax":
            out = self._jax_taps(x, train)
        elif self.engine == "torch":
            import torch

            with torch.no_grad():
                out = self.tap_model([x], training=train)
        else:
            out = self.tap_model([x], training=train)
        return {k: _nchw(self._numpy(v)) for k, v in out.items()}

    def _jax_taps(self, x: np.ndarray, train: bool):
        # One compiled call instead of op-by-op dispatch; running statistics come back as updates.
        tm = self.tap_model
        if train not in self._jit_taps:
            self._jit_taps[train] = self.jax.jit(lambda tv, ntv, x: tm.stateless_call(tv, ntv, [x], training=train))
        out, updates = self._jit_taps[train]([v.value for v in tm.trainable_variables],
                                             [v.value for v in tm.non_trainable_variables], x)
        for var, value in zip(tm.non_trainable_variables, updates, strict=True):
            var.assign(value)
        return out

    def grads(self, images: np.ndarray, probe: np.ndarray, train: bool,
              record: bool = False) -> dict[str, np.ndarray]:
        """Gradients of every weight; with ``record``, ``self.pattern`` keeps the activation pattern of the
        very pass that computed them (a separate forward may round differently: XLA fuses per graph)."""
        from resnet_core.mapping import keras_table

        from .ties import keras_pattern_outputs

        x, p = _nhwc(images), _nhwc(probe)
        batch = images.shape[0]
        model, keras = self.model, self.keras
        if record not in self._graphs:
            # One model returning the output and the recorded sites; it shares every layer (and variable) of model.
            pattern = keras_pattern_outputs(model, self.plan) if record else {}
            self._graphs[record] = keras.Model(model.input, {"out": model.output, **pattern}) if record else model
        graph = self._graphs[record]
        variables = list(graph.trainable_variables)

        def split(outs):
            return (outs["out"], {k: v for k, v in outs.items() if k != "out"}) if record else (outs, {})

        if self.engine == "jax":
            jax = self.jax
            if (train, record) not in self._jit_grads:  # compiled once per runner, not per call

                def loss_fn(tv, ntv, x, p):
                    outs, _ = graph.stateless_call(tv, ntv, [x], training=train)
                    out, sites = split(outs)
                    return (keras.ops.cast(out, "float32") * p).sum() / x.shape[0], sites

                self._jit_grads[(train, record)] = jax.jit(jax.grad(loss_fn, has_aux=True))
            values, sites = self._jit_grads[(train, record)](
                [v.value for v in variables], [v.value for v in graph.non_trainable_variables], x, p)
        elif self.engine == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                out, sites = split(graph([x], training=train))
                loss = tf.reduce_sum(tf.cast(out, "float32") * p) / batch
            values = tape.gradient(loss, variables)
        else:
            import torch

            for v in variables:
                v.value.grad = None
            out, sites = split(graph([x], training=train))
            loss = (out.float() * torch.from_numpy(p).to(out.device)).sum() / batch
            loss.backward()
            values = [v.value.grad for v in variables]
        if record:
            from .ties import pattern_array, pattern_sites

            kinds = {site.name: site.kind for site in pattern_sites(self.plan)}
            self.pattern = {k: pattern_array(kinds[k], _nchw(self._numpy(keras.ops.stop_gradient(v))))
                            for k, v in sites.items()}
        # Gradients are keyed by Keras variable and named through the conversion table, never by guessing.
        by_variable = {id(v): g for v, g in zip(variables, values, strict=True)}
        out_grads = {}
        for row in keras_table(self.plan):
            if not self.plan.param_index[row.canonical].trainable:
                continue
            var = getattr(model.get_layer(row.layer), row.variable)
            if id(var) not in by_variable:
                raise RuntimeError(f"Keras variable {row.path} ({row.canonical}) is not among trainable_variables")
            out_grads[row.canonical] = np.ascontiguousarray(row.layout.to_canonical(self._numpy(by_variable[id(var)])))
        if len(out_grads) != len(variables):
            raise RuntimeError(f"{len(variables)} trainable variables but {len(out_grads)} mapped through keras_table")
        return out_grads

    def save_weights(self, path: str) -> None:
        self.model.save_weights(path)


def _nhwc(a: np.ndarray) -> np.ndarray:
    from ..arrays import to_channels_last

    return to_channels_last(a)


def _nchw(a: np.ndarray) -> np.ndarray:
    from ..arrays import to_channels_first

    return to_channels_first(a)


def run(job: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Execute ``job``; return the arrays to save and the metadata."""
    from resnet_core.spec import ResNetSpec

    engine, dtype, mode = job["engine"], job.get("dtype", "float32"), job.get("mode", "eval")
    if dtype not in DTYPES:
        raise RuntimeError(f"Unknown dtype {dtype!r}. Expected one of {DTYPES}")
    if mode not in ("eval", "train"):
        raise RuntimeError(f"Unknown mode {mode!r}. Expected 'eval' or 'train'")
    spec = ResNetSpec.from_dict(job["spec"])
    if job.get("follow"):
        return _follow(job, spec, mode == "train")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    runner: ArtifactRunner | TorchRunner | KerasRunner
    if engine in ARTIFACTS:
        runner = ArtifactRunner(engine, spec, dtype, Path(job["output"]).parent)
    else:
        runner = TorchRunner(spec, dtype) if engine == "torch" else KerasRunner(spec, dtype)
    runner.load(job["weights"])
    timings["build_and_load"] = time.perf_counter() - start
    if job.get("save_keras_weights"):
        if engine == "torch":
            raise RuntimeError("save_keras_weights needs a Keras engine")
        cast(KerasRunner, runner).save_weights(job["save_keras_weights"])
    initial = runner.weights()
    arrays: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    if job.get("inputs"):
        with np.load(job["inputs"]) as data:
            inputs = {k: data[k] for k in data.files}
    train = mode == "train"
    for key in sorted(k for k in inputs if k.startswith("images/")):
        name = key.split("/", 1)[1]
        images = inputs[key]
        runner.restore(initial)
        t = time.perf_counter()
        for tap, value in runner.taps(images, train).items():
            arrays[f"{name}/tap/{tap}"] = value
        timings[f"{name}/taps"] = time.perf_counter() - t
        if train:
            after = runner.weights()
            for p in runner.plan.params:
                if not p.trainable:
                    arrays[f"{name}/running/{p.name}"] = after[p.name].astype(np.float32)
        if job.get("grad"):
            runner.restore(initial)
            t = time.perf_counter()
            record = bool(job.get("record_pattern")) and dtype == "float32" and engine not in ARTIFACTS
            grads = cast("TorchRunner | KerasRunner", runner).grads(images, inputs[f"probe/{name}"], train,
                                                                    record=True) if record else \
                runner.grads(images, inputs[f"probe/{name}"], train)
            for canonical, value in grads.items():
                arrays[f"{name}/grad/{canonical}"] = value.astype(np.float32)
            if record:
                for site, value in cast("TorchRunner | KerasRunner", runner).pattern.items():
                    arrays[f"{name}/pattern/{site}"] = value
            timings[f"{name}/grad"] = time.perf_counter() - t
            if job.get("grad_float64") and dtype == "float32" and hasattr(runner, "grads_float64"):
                runner.restore(initial)
                for canonical, value in runner.grads_float64(images, inputs[f"probe/{name}"], train).items():
                    arrays[f"{name}/grad64/{canonical}"] = value
    meta = {"engine": engine, **runner.info, "seconds": timings}
    return arrays, meta


def _follow(job: dict[str, Any], spec: Any, train: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Float64 torch gradients following each engine's recorded activation pattern (:mod:`.ties`)."""
    if job["engine"] != "torch":
        raise RuntimeError("Only the torch engine computes float64 gradients")
    runner = TorchRunner(spec, "float32")
    with np.load(job["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    arrays: dict[str, np.ndarray] = {}
    ties: dict[str, dict[str, list]] = {}
    start = time.perf_counter()
    for engine, source in job["follow"].items():
        runner.load(source["weights"])
        with np.load(source["output"]) as data:
            recorded = {k: data[k] for k in data.files if "/pattern/" in k}
        for key in sorted(k for k in inputs if k.startswith("images/")):
            name = key.split("/", 1)[1]
            prefix = f"{name}/pattern/"
            pattern = {k[len(prefix):]: v for k, v in recorded.items() if k.startswith(prefix)}
            grads, found = runner.grads_following(inputs[key], inputs[f"probe/{name}"], train, pattern)
            for canonical, value in grads.items():
                arrays[f"{name}/grad64/{engine}/{canonical}"] = value
            ties.setdefault(engine, {})[name] = found
    meta = {"engine": "torch", **runner.info, "ties": ties, "seconds": {"follow": time.perf_counter() - start}}
    return arrays, meta


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    meta_path = Path(job["meta"])
    try:
        engine = job["engine"]
        for package in ARTIFACTS[engine][3] if engine in ARTIFACTS else REQUIRES[engine]:
            importlib.import_module(package)
    except ImportError as exc:
        meta_path.write_text(json.dumps({"engine": job["engine"], "error": f"cannot import: {exc}"}))
        return EXIT_UNAVAILABLE
    try:
        arrays, meta = run(job)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which marks the engine failed
        meta_path.write_text(json.dumps({"engine": job["engine"], "error": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc()}))
        traceback.print_exc()
        return 1
    np.savez(job["output"], **arrays)  # type: ignore[arg-type]  # numpy stub: **kwds might hold allow_pickle
    meta_path.write_text(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
