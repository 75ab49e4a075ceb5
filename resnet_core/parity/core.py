"""``parity()``: run one model on several engines, each in its own process, and merge one report."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import InputError, InputTypeError
from ..mapping import check_weights
from ..plan import Plan, make_plan
from ..random_weights import random_images, random_weights
from ..spec import ResNetSpec
from .artifacts import artifact_job_error, is_artifact
from .engines import ALL_ENGINES, ENGINES, EngineRun, parse_engines, run_engine_jobs, run_engines
from .metrics import (
    GRAD_BASIS_FLOOR,
    GRAD_MULTIPLE,
    bn_counts,
    compare,
    grad_basis,
    judge_gradient,
    to_biased_running_var,
    to_unbiased_running_var,
    tolerance_for,
    topk_agreement,
)
from .report import Entry, ParityReport
from .ties import TIE_BAND
from .worker import DTYPES

MODES = ("eval", "train")
WeightsArg = Mapping[str, Any] | str | os.PathLike | None

NOTE_TF32 = ("TF32 is switched off on every engine (it changes fp32 results at the 1e-3 level on NVIDIA GPUs "
             "since Ampere); each engine's setting is listed above.")
NOTE_TIES = ("gradients: each engine's are compared with a float64 backward that follows its own ReLU masks and "
             "max-pool winners wherever the float64 value is within {band:g} (relative to the layer's max) of the "
             "tie, and judged in units of {ref}'s own error measured the same way: rounding may put such a value "
             "on either side, arithmetic errors remain. raw_multiple: against {ref}'s gradients, ties included.")
NOTE_RUNNING_VAR = ("running_var: PyTorch updates it with the unbiased batch variance (x n/(n-1)), Keras with the "
                    "biased one; {other} values are restated in {ref}'s convention with n = N*H*W per layer before "
                    "comparing. Uncorrected, the worst difference is {raw:.1e} (kept as raw_max_rel).")


def read_weights_file(path: str | os.PathLike,
                      spec: str | ResNetSpec | None = None) -> tuple[ResNetSpec, dict[str, np.ndarray], str]:
    """The spec, canonical float32 weights and a note on where they came from, for any weights source
    (a file of any format, an ``.npz`` of canonical arrays, a model folder, a hub name): kept for callers of
    the old name; :func:`resnet_core.sources.read_float32` is the loader."""
    from ..sources import read_float32

    loaded = read_float32(path, spec=spec)
    return loaded.spec, cast("dict[str, np.ndarray]", loaded.weights), loaded.origin


def input_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as (height, width): an int is a square; anything else is an InputError naming it."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise InputError(f"size must be a positive int or (height, width). Received: size={size!r}")
    return int(size[0]), int(size[1])


def _resolve(spec: str | ResNetSpec | os.PathLike | None, weights: WeightsArg,
             seed: int) -> tuple[Plan, dict[str, np.ndarray], str]:
    """The plan, canonical float32 weights (checked against it) and a note on where they came from."""
    from ..sources import float32, read_float32, resolve

    if spec is None:
        raise InputError("A spec is needed: a preset name, a ResNetSpec or a weights source")
    source = resolve(spec)
    if source.has_weights:
        if weights is not None:
            raise InputError("Give the weights either as the first argument or as weights=, not both")
        resolved, loaded, note = source.spec, float32(cast("dict[str, np.ndarray]", source.weights)), source.origin
    elif isinstance(weights, (str, os.PathLike)):
        read = read_float32(weights, spec=source.spec)
        resolved, loaded, note = read.spec, cast("dict[str, np.ndarray]", read.weights), read.origin
    else:
        resolved = source.spec
        if isinstance(weights, Mapping):
            loaded, note = float32(weights), "given"
        elif weights is None:
            loaded, note = random_weights(resolved, seed=seed), f"random (random_weights, seed {seed})"
        else:
            raise InputTypeError(f"weights must be None, a mapping of canonical arrays or a file path. Received: "
                                 f"{type(weights).__name__}")
    plan = make_plan(resolved)
    check_weights(plan, loaded, strict=True)
    return plan, loaded, note


def parity(
    spec: str | ResNetSpec | os.PathLike = "resnet50",
    backends: str | Sequence[str] = ENGINES,
    weights: WeightsArg = None,
    batch: int = 2,
    size: int | Sequence[int] = (224, 224),
    mode: str = "eval",
    grad: bool = False,
    dtype: str = "float32",
    seed: int = 0,
    reference: str = "torch",
    tolerance: float | None = None,
    device: str = "auto",
    jobs: int | None = None,
    timeout: float | None = None,
    engine_weights: Mapping[str, WeightsArg] | None = None,
    workdir: str | os.PathLike | None = None,
) -> ParityReport:
    """Run ``spec`` on every engine in ``backends`` and compare each, layer by layer, with ``reference``.

    ``spec`` is a preset, a :class:`ResNetSpec` or a weights file (whose stored spec is used, else one
    inferred from its tensor names and shapes). ``weights`` default to non-trivial random ones (``seed``).
    ``engine_weights`` gives one engine other weights (a mapping, an ``.npz`` or, on Keras engines, a
    ``.weights.h5``): compare a converted checkpoint against its original. ``mode="train"`` uses batch
    statistics and compares the running statistics after one step; ``grad`` compares the gradients of
    ``sum(output * probe) / batch`` (a fixed random ``probe``) for every weight. ``dtype`` bfloat16 or
    float16 runs mixed precision. Engines that are not installed are reported as skipped.

    Args:
        spec: A preset name, a :class:`ResNetSpec` or a weights file.
        backends: The engines to run: some of ``"torch"``, ``"keras-jax"``, ``"keras-tensorflow"``,
            ``"keras-torch"`` and the exported-artifact engines, as a sequence or a comma-separated string.
        weights: None (random, from ``seed``), canonical arrays, or a weights file.
        batch: Images per batch.
        size: Input height and width (one int for both).
        mode: ``"eval"`` or ``"train"``.
        grad: Also compare the gradients of every weight.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        seed: Seed of the random weights, inputs and probe.
        reference: The engine the others are compared with.
        tolerance: The pass threshold on relative error; None uses the dtype's default.
        device: ``"auto"``, ``"cpu"`` or an accelerator.
        jobs: Engines run at once (each in its own process); None picks.
        timeout: Seconds each engine may take.
        engine_weights: Per engine, weights that replace ``weights`` (a mapping or a file).
        workdir: Keep the inputs and outputs in this folder instead of a temporary one.

    Returns:
        A :class:`ParityReport`: per-layer errors of each engine, its ``table()`` and ``verdict()``.

    Raises:
        InputError: An unknown engine, mode, dtype or reference, a non-positive batch or tolerance, or an
            input too small for the network.
        InputTypeError: ``weights`` or ``grad`` of the wrong type.
        UnknownNameError: ``spec`` names no preset.
        WeightsMismatchError: ``weights`` are not exactly the spec's tensors.
        MissingFileError: A weights file does not exist.
        MissingDependencyError: Reading a weights file needs a package that is not installed.

    Example:
        Needs PyTorch and Keras (with JAX for ``keras-jax``):

        ```python
        import resnet_core as rc

        report = rc.parity("resnet18", backends="torch,keras-jax", batch=1, size=64)
        print(report.table())
        print(report.verdict())
        ```
    """
    engines = parse_engines(backends)
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}. Expected one of {MODES}")
    if dtype not in DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}. Expected one of {DTYPES}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"batch must be a positive integer. Received: batch={batch!r}")
    if reference not in engines:
        raise InputError(f"The reference engine {reference!r} is not among the engines {list(engines)}"
                         if reference in ALL_ENGINES else f"Unknown reference engine {reference!r}")
    artifact_error = artifact_job_error(engines, mode, grad, dtype, reference)
    if artifact_error:
        raise InputError(artifact_error)
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise InputError(f"tolerance must be a positive number. Received: tolerance={tolerance!r}")
    if not isinstance(grad, bool):
        raise InputTypeError(f"grad must be a bool. Received: grad={grad!r}")
    height, width = input_size(size)
    plan, base_weights, source = _resolve(spec, weights, seed)
    counts = bn_counts(plan, batch, height, width)  # empty for folded norms: the plan has no norm
    if min(counts.values(), default=1) < 1:
        raise InputError(f"Input {height}x{width} is too small for {plan.spec.name}: a layer's output would be empty")
    if mode == "train" and min(counts.values(), default=2) < 2:
        small = min(counts, key=counts.__getitem__)
        raise InputError(f"Train mode needs more than one value per channel in every batch norm; {small} sees "
                         f"{counts[small]} at batch {batch}, {height}x{width}. Use a larger batch or input")

    notes = [NOTE_TF32, f"weights: {source}"]
    with tempfile.TemporaryDirectory(prefix="resnet-core-parity-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        job, per_engine, initial = _write_inputs(work, plan, base_weights, engines, engine_weights, batch,
                                                 height, width, mode, grad, dtype, seed)
        runs = _run(engines, job, per_engine, work, device, jobs, timeout)
        outputs = {e: r.load() for e, r in runs.items() if r.ok}
        followed = _follow_patterns(job, per_engine, runs, outputs, reference, work, device, timeout, notes) \
            if job["record_pattern"] and tolerance is None else None
        baseline = None
        if dtype != "float32" and reference in outputs:
            # The reference once more in fp32: how far each engine's mixed precision is from the true values.
            base_job = {**job, "weights": per_engine.get(reference, job["weights"]), "dtype": "float32"}
            base_run = run_engines([reference], base_job, work / "float32", device=device, timeout=timeout)[reference]
            if base_run.ok:
                baseline = base_run.load()
            else:
                notes.append(f"fp32 run of {reference} {base_run.status} ({base_run.reason}): no vs_float32 figures")

    engine_info = {e: _engine_info(r) for e, r in runs.items()}
    ref = reference
    if ref not in outputs:
        fallback = next(iter(outputs), None)
        if fallback is not None:
            notes.append(f"reference {reference} did not run ({runs[reference].status}); using {fallback}")
        ref = fallback or reference
    kinds = ("activation", *(("running",) if mode == "train" else ()), *(("grad",) if grad else ()))
    tolerances = {kind: {e: float(tolerance) if tolerance is not None else tolerance_for(dtype, kind, e, ref)
                         for e in outputs if e != ref} for kind in kinds}
    report = ParityReport(
        spec=plan.spec.name, mode=mode, dtype=dtype, grad=grad, batch=batch, size=(height, width), seed=seed,
        reference=ref, tolerances=tolerances, engines=engine_info, layers=[], notes=notes,
    )
    if ref in outputs:
        if grad and tolerance is None and any("/grad64/" in key for key in outputs[ref]):
            del report.tolerances["grad"]  # judged per tensor against the reference's own rounding error
            report.grad_rule = {"multiple": GRAD_MULTIPLE, "basis_floor": GRAD_BASIS_FLOOR}
            if followed is not None and ref == reference:
                report.grad_rule["tie_band"] = TIE_BAND
                report.grad_ties = {e: found.get("x", []) for e, found in followed[1].items()}
                notes.append(NOTE_TIES.format(ref=ref, band=TIE_BAND))
        elif grad and tolerance is None and dtype == "float32":
            notes.append(f"{ref} has no float64 gradients (torch alone computes them): gradients are judged by the "
                         f"fixed bound {tolerance_for(dtype, 'grad', '*', ref):g}: it catches errors of order 1")
        _fill(report, plan, outputs, runs, ref, initial, counts, baseline if ref == reference else None,
              followed[0] if followed is not None and ref == reference else {})
    return report


def _follow_patterns(job: dict, per_engine: dict, runs: dict[str, EngineRun], outputs: dict, reference: str,
                     work: Path, device: str, timeout: float | None,
                     notes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, dict]] | None:
    """Float64 torch gradients following each engine's own ReLU masks and max-pool winners (:mod:`.ties`),
    and the ties each engine resolved otherwise than float64; None when the reference cannot compute them."""
    if reference != "torch" or reference not in outputs:
        return None
    follow = {}
    for engine, run in runs.items():
        weights = per_engine.get(engine, job["weights"])
        if engine in outputs and weights["format"] == "npz" and any("/pattern/" in k for k in outputs[engine]):
            follow[engine] = {"output": str(run.output), "weights": weights}
    if reference not in follow or set(follow) == {reference}:
        return None
    unfollowed = sorted(e for e in outputs if e not in follow)
    if unfollowed:  # an exported artifact or mixed precision records none; a Keras weights file has no npz
        notes.append(f"ties not resolved for {', '.join(unfollowed)} (no recorded activation pattern or canonical "
                     f"weights): gradients judged against {reference}'s, ties included")
    result = run_engines([reference], {**job, "weights": per_engine.get(reference, job["weights"]),
                                       "follow": follow}, work / "ties", device=device, timeout=timeout)[reference]
    if not result.ok:
        notes.append(f"tie resolution {result.status} ({result.reason}): gradients are judged raw, ties included")
        return None
    return result.load(), result.meta.get("ties", {})


def _write_inputs(work: Path, plan: Plan, base: dict, engines: Sequence[str], engine_weights, batch: int,
                  height: int, width: int, mode: str, grad: bool, dtype: str, seed: int) -> tuple[dict, dict, dict]:
    """Files for the workers: inputs, the shared weights and any engine's own; returns the job, each
    engine's weights entry, and each engine's initial canonical weights (None when only a Keras file)."""
    images = random_images(batch, height, width, channels=plan.spec.in_channels, seed=seed)
    arrays = {"images/x": images}
    if grad:
        shape = _final_shape(plan, batch, height, width)
        arrays["probe/x"] = np.random.default_rng(seed + 1).normal(0.0, 1.0, shape).astype(np.float32)
    np.savez(work / "inputs.npz", **arrays)  # type: ignore[arg-type]  # numpy stub: **kwds might hold allow_pickle
    np.savez(work / "weights.npz", **{k: np.asarray(v, np.float32) for k, v in base.items()})  # type: ignore[arg-type]
    job = {"spec": plan.spec.to_dict(), "inputs": str(work / "inputs.npz"), "mode": mode, "grad": grad,
           "grad_float64": grad and dtype == "float32", "record_pattern": grad and dtype == "float32",
           "dtype": dtype, "weights": {"format": "npz", "path": str(work / "weights.npz")}}
    per_engine: dict[str, dict] = {}
    initial: dict[str, dict | None] = {e: base for e in engines}
    for engine, value in (engine_weights or {}).items():
        if engine not in engines:
            raise InputError(f"engine_weights names {engine!r}, which is not among the engines {list(engines)}")
        if is_artifact(engine, value):  # an exported artifact to check as it is, not re-exported
            per_engine[engine] = {"format": "artifact", "path": str(Path(value).resolve())}
            continue
        if isinstance(value, (str, os.PathLike)) and _keras_weights_file(value):
            if not engine.startswith("keras-"):
                raise InputError(f"{engine} cannot read a Keras .weights.h5 file ({value})")
            if mode == "train":
                raise InputError(f"Train-mode parity needs {engine}'s weights as canonical arrays (its initial "
                                 "running statistics), not a Keras .weights.h5 file")
            per_engine[engine] = {"format": "keras", "path": str(Path(value).resolve())}
            initial[engine] = None
            continue
        from ..sources import float32

        loaded: dict[str, Any] = read_weights_file(value, plan.spec)[1] \
            if isinstance(value, (str, os.PathLike)) else float32(value)
        check_weights(plan, loaded, strict=True)
        path = work / f"weights.{engine}.npz"
        np.savez(path, **loaded)
        per_engine[engine] = {"format": "npz", "path": str(path)}
        initial[engine] = loaded
    return job, per_engine, initial


def _keras_weights_file(value: str | os.PathLike) -> bool:
    """A Keras ``.weights.h5`` file, handed to a Keras engine as it is."""
    from ..io.formats import format_for
    from ..sources import kind_of

    kind, path = kind_of(value)
    return kind == "weights-file" and format_for(path).name == "keras-weights"


def _final_shape(plan: Plan, batch: int, height: int, width: int) -> tuple[int, ...]:
    """Shape of the output the gradient loss reads (canonical layout)."""
    if plan.head.fc is not None or plan.head.pool is not None:
        return (batch, plan.head.out_channels)
    h, w = plan.output_size(height, width)
    return (batch, plan.head.out_channels, h, w)


def _run(engines, job, per_engine, work, device, jobs, timeout) -> dict[str, EngineRun]:
    if jobs is None:
        jobs = max(1, min(len(engines), os.cpu_count() or 1))
    # Engines with their own weights get their own job; all run side by side, each in its own files.
    jobs_by_engine = {e: {**job, "weights": per_engine[e]} if e in per_engine else job for e in engines}
    return run_engine_jobs(jobs_by_engine, work, device=device, jobs=jobs, timeout=timeout)


def _engine_info(run: EngineRun) -> dict[str, Any]:
    info: dict[str, Any] = {"status": run.status}
    if run.reason:
        info["reason"] = run.reason
    for key in ("versions", "device", "tf32", "precision", "running_var", "artifact", "export_seconds"):
        if key in run.meta:
            info[key] = run.meta[key]
    info["seconds"] = round(run.seconds, 2)
    return info


def _fill(report: ParityReport, plan: Plan, outputs: dict, runs: dict, ref: str, initial: dict,
          counts: dict[str, int], baseline: dict | None, followed: dict[str, np.ndarray]) -> None:
    others = [e for e in outputs if e != ref]
    reference = outputs[ref]
    stages = {name: f"C{i + 2}" for i, name in enumerate(plan.feature_taps)}
    tol = report.tolerances

    def entry(key: str, name: str, kind: str, stage: str | None = None) -> Entry:
        out = Entry(name, kind, reference[key].shape, stage=stage)
        for engine in others:
            if key not in outputs[engine]:  # an exported artifact has the final output only
                continue
            bound = tol[kind][engine] if kind in tol else float("nan")  # a per-tensor gradient bound: set below
            out.engines[engine] = {**compare(outputs[engine][key], reference[key]), "tolerance": bound}
            if baseline is not None:
                out.engines[engine]["vs_float32"] = compare(outputs[engine][key], baseline[key])["max_rel"]
        if baseline is not None:
            out.reference_vs_float32 = compare(reference[key], baseline[key])["max_rel"]
        exact = key.replace("/grad/", "/grad64/")
        if kind == "grad" and exact in reference:
            out.reference_vs_float64 = ref64 = compare(reference[key], reference[exact])["max_rel"]
            own = followed.get(f"x/grad64/{ref}/{name}")
            if own is not None:  # torch's arithmetic error alone: its fp32 against float64 with its own ties
                out.reference_vs_float64_tie_aware = basis = compare(reference[key], own)["max_rel"]
                out.basis_growth = grad_basis(basis) / grad_basis(ref64)
            for engine, metrics in out.engines.items():
                judged = judge_gradient(outputs[engine][key], reference[key], reference[exact], own,
                                        followed.get(f"x/grad64/{engine}/{name}"))
                if not report.grad_rule:  # a fixed tolerance was asked for: the multiples are information
                    judged.pop("tolerance")
                    judged.pop("tie_aware_rel", None)
                metrics.update(judged)
        return out

    for tap in plan.taps:
        key = f"x/tap/{tap}"
        layer = entry(key, tap, "activation", stages.get(tap))
        if tap == "logits":
            for engine in layer.engines:
                layer.engines[engine]["top1"] = topk_agreement(outputs[engine][key], reference[key], 1)
                layer.engines[engine]["top5"] = topk_agreement(outputs[engine][key], reference[key], 5)
        report.layers.append(layer)
    if report.mode == "train":
        _fill_running(report, plan, outputs, runs, ref, others, initial, counts)
    if report.grad:
        report.gradients.extend(entry(f"x/grad/{p.name}", p.name, "grad") for p in plan.params if p.trainable)


def _fill_running(report: ParityReport, plan: Plan, outputs: dict, runs: dict, ref: str, others: list[str],
                  initial: dict, counts: dict[str, int]) -> None:
    ref_convention = runs[ref].meta.get("running_var")
    momentum = {n.name: n.momentum for n in plan.norms()}
    raw_worst: dict[str, float] = {}
    for p in plan.params:
        if p.trainable:
            continue
        key = f"x/running/{p.name}"
        ref_value = outputs[ref][key]
        entry = Entry(p.name, "running", ref_value.shape)
        for engine in others:
            value = outputs[engine][key]
            metrics = compare(value, ref_value)
            if p.role == "moving_variance" and runs[engine].meta.get("running_var") != ref_convention:
                # Restated in the reference's convention from each engine's own starting value.
                convert = to_unbiased_running_var if ref_convention == "unbiased" else to_biased_running_var
                raw = metrics["max_rel"]
                metrics = compare(convert(value, initial[engine][p.name], momentum[p.module], counts[p.module]),
                                  ref_value)
                metrics["raw_max_rel"] = raw
                raw_worst[engine] = max(raw_worst.get(engine, 0.0), raw)
            entry.engines[engine] = {**metrics, "tolerance": report.tolerances["running"][engine]}
        report.running_stats.append(entry)
    if raw_worst:
        report.notes.append(NOTE_RUNNING_VAR.format(other=", ".join(sorted(raw_worst)), ref=ref,
                                                    raw=max(raw_worst.values())))
