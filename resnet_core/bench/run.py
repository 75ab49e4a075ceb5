"""``bench()``: every installed engine x precision on this machine, timed and compared with our fp32 torch model.

Each engine runs :mod:`resnet_core.bench.worker` in its own process (the parity engines' environment: one
Keras engine per process), one engine at a time so that they do not compete for the cores. The calling
process imports no framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import cpu_features
from ..arrays import relative_error
from ..errors import InputError, MissingDependencyError, MissingFileError
from ..parity.core import input_size
from ..parity.engines import EXIT_UNAVAILABLE, child_env, stderr_tail
from ..parity.metrics import topk_agreement
from ..random_weights import random_images
from ..spec import ResNetSpec
from .report import DEFAULT_TOP1, BenchReport, recommend
from .variants import REFERENCE, Variant, missing, select

Progress = Callable[[str], None]


def load_source(source: Any, spec: str | ResNetSpec | None = None, seed: int = 0) -> tuple[ResNetSpec, dict, str]:
    """The spec, float32 canonical weights and a note on their origin, for anything bench takes.

    Anything :func:`resnet_core.sources.resolve` takes, a live model or a (spec, weights) pair; an
    architecture alone gets seeded random weights (export's loader, so bench and export read alike).
    """
    from ..export.source import resolve_source

    resolved = resolve_source(source, spec, seed=seed)
    return resolved.spec, resolved.weights, resolved.note


def _batches(batch: int | Sequence[int] | str) -> tuple[int, ...]:
    items = batch.split(",") if isinstance(batch, str) else [batch] if isinstance(batch, int) else list(batch)
    try:
        values = tuple(dict.fromkeys(int(b) for b in items))
    except (TypeError, ValueError):
        values = ()
    if not values or min(values) < 1:
        raise InputError(f"batch expects positive integers, e.g. 1,8. Received: {batch!r}")
    return values


def _images(images: Any, count: int, size: tuple[int, int], channels: int, seed: int) -> tuple[np.ndarray, str]:
    if images is None:
        return random_images(count, *size, channels=channels, seed=seed), f"{count} random images (seed {seed})"
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise MissingFileError(f"--images expects an existing .npy file of images. Received: {str(path)!r}")
        array, note = np.load(path, allow_pickle=False), str(path)
    else:
        array, note = np.asarray(images), "given images"
    if array.ndim != 4 or array.shape[1] != channels or len(array) < 1:
        raise InputError(f"images must be (N, {channels}, H, W), NCHW and preprocessed; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise InputError(f"images must be finite floats; got {array.dtype}")
    return np.ascontiguousarray(array, np.float32), f"{len(array)} images from {note}"


def _run_worker(engine: str, job: dict[str, Any], work: Path, progress: Progress,
                timeout: float | None) -> dict[str, Any]:
    """One engine's process; its ``@@progress`` lines are passed on as they come. Returns its result."""
    job_path = work / f"{engine}.job.json"
    job = {**job, "engine": engine, "result": str(work / f"{engine}.result.json"),
           "output": str(work / f"{engine}.logits.npz"), "workdir": str(work / engine)}
    Path(job["workdir"]).mkdir(exist_ok=True)
    job_path.write_text(json.dumps(job))
    env = child_env(engine)
    proc = subprocess.Popen([sys.executable, "-m", "resnet_core.bench.worker", str(job_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    other: list[str] = []
    timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if timer is not None:
        timer.start()
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("@@progress "):
                progress(line[len("@@progress "):].rstrip())
            else:
                other.append(line)
        code = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
    result_path = Path(job["result"])
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if code == EXIT_UNAVAILABLE:
        return {"skipped": result.get("error", "cannot import")}
    if code != 0 or "rows" not in result:
        if timer is not None and timer.finished.is_set() and code < 0:
            return {"error": f"timed out after {timeout:g} s"}
        return {"error": stderr_tail("".join(other)) or f"exit {code}"}
    with np.load(job["output"]) as data:
        result["logits"] = {k: data[k] for k in data.files}
    return result


def _fidelity(rows: list[dict[str, Any]], logits: dict[str, np.ndarray], reference: np.ndarray) -> None:
    for row in rows:
        out = logits.get(Variant(row["engine"], row["dtype"], row["layout"]).key)
        if row["status"] != "ok" or out is None:
            row.update(max_rel_err=None, top1_agreement=None)
            continue
        try:  # an engine's unreadable output fails its own rows, never the whole run
            row["max_rel_err"] = relative_error(out, reference)
            row["top1_agreement"] = topk_agreement(out, reference, 1)
        except (ValueError, TypeError) as exc:
            row.update(status="failed", error=f"its output: {type(exc).__name__}: {exc}", max_rel_err=None,
                       top1_agreement=None)


def bench(source: Any = "resnet50", engines: str | Sequence[str] | None = None,
          dtypes: str | Sequence[str] | None = None, batch: int | Sequence[int] | str = (1, 8),
          size: int | Sequence[int] | None = None, threads: int | None = None, images: Any = None,
          min_top1: float = DEFAULT_TOP1, max_rel_err: float | None = None, spec: str | ResNetSpec | None = None,
          fidelity_images: int = 16, min_calls: int = 5, max_calls: int = 50, budget: float = 1.0, seed: int = 0,
          timeout: float | None = None, progress: Progress | None = None) -> BenchReport:
    """Time ``source`` on every installed engine x precision here; recommend the fastest faithful one.

    ``source`` is anything the source resolver takes: a preset, a weights file, a model folder, a hub name,
    a resnet_core model. Fidelity is measured on ``images`` (an .npy of preprocessed NCHW images; default
    random ones) against our float32 torch model: max relative error of the logits and top-1 agreement.
    The recommendation is the fastest (geometric mean of the medians over the batches) variant whose
    top-1 agreement is at least ``min_top1`` (and max relative error at most ``max_rel_err``, if given).
    Each row takes ``min_calls`` to ``max_calls`` calls after two warm-up calls, stopping after ``budget``
    seconds. int8 is calibrated on ``images`` when given (else on random images).
    """
    report_progress: Progress = progress or (lambda _: None)
    variants, skipped = select(engines, dtypes)
    batches = _batches(batch)
    if not 0.0 <= min_top1 <= 1.0:
        raise InputError(f"min_top1 is a fraction between 0 and 1. Received: {min_top1!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer. Received: {threads!r}")
    if min(fidelity_images, min_calls, max_calls) < 1 or max_calls < min_calls:
        raise InputError("fidelity_images, min_calls and max_calls must be positive, max_calls >= min_calls")
    if images is not None and size is not None:
        raise InputError("Give --size or --images, not both: the images set the input size")
    resolved, weights, note = load_source(source, spec, seed)
    hw = input_size(size if size is not None else 224)
    fidelity, images_note = _images(images, fidelity_images, hw, resolved.in_channels, seed + 1)
    hw = (int(fidelity.shape[2]), int(fidelity.shape[3]))
    if missing("torch") is not None:
        raise MissingDependencyError("bench compares every engine with our float32 torch model: pip install "
                                     "'resnet-core[torch]'")
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    machine = {**cpu_features.machine(), "load_average": [round(v, 2) for v in os.getloadavg()],
               "versions": versions}
    by_engine: dict[str, list[Variant]] = {}
    for v in variants:
        by_engine.setdefault(v.engine, []).append(v)
    by_engine.setdefault("torch", [])  # the reference runs even when torch is not measured
    order = ["torch", *[e for e in by_engine if e != "torch"]]
    rows: list[dict[str, Any]] = []
    logits: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="resnet-core-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "weights.npz", **weights)
        np.save(work / "images.npy", fidelity)
        calibration = fidelity if images is not None else random_images(16, *hw, resolved.in_channels, seed + 2)
        np.save(work / "calibration.npy", calibration)
        job = {"spec": resolved.to_dict(), "weights": str(work / "weights.npz"), "images": str(work / "images.npy"),
               "calibration": str(work / "calibration.npy"), "batches": list(batches), "size": list(hw),
               "threads": threads, "min_calls": min_calls, "max_calls": max_calls, "budget": budget}
        for engine in order:
            chosen = by_engine[engine]
            wanted = chosen if engine != "torch" or REFERENCE in chosen else [REFERENCE, *chosen]
            report_progress(f"{engine}: {', '.join(f'{v.dtype}/{v.layout}' for v in chosen) or 'reference'}")
            result = _run_worker(engine, {**job, "variants": [[v.dtype, v.layout] for v in wanted]}, work,
                                 report_progress, timeout)
            if "skipped" in result:
                skipped[engine] = result["skipped"]
                continue
            if "error" in result:
                report_progress(f"{engine}: failed ({result['error'][:200]})")
                rows += [{"engine": v.engine, "dtype": v.dtype, "layout": v.layout, "batch": b, "status": "failed",
                          "error": result["error"]} for v in chosen for b in batches]
                continue
            versions.update(result["versions"])
            logits.update(result["logits"])
            rows += [r for r in result["rows"] if Variant(r["engine"], r["dtype"], r["layout"]) in chosen]
    if REFERENCE.key not in logits:
        failed = next((r.get("error", "") for r in rows if r["engine"] == "torch"), "")
        raise RuntimeError(f"The reference (our float32 torch model) did not run: {failed or 'see stderr'}")
    _fidelity(rows, logits, logits[REFERENCE.key])
    for row in rows:  # every row has every field; None where a failed row has no figure
        for key in ("median_ms", "min_ms", "max_ms", "calls", "images_per_s", "max_rel_err", "top1_agreement"):
            row.setdefault(key, None)
    settings = {"source": note, "spec": resolved.name, "size": list(hw), "batches": list(batches),
                "threads": threads, "images": images_note, "min_calls": min_calls, "max_calls": max_calls,
                "budget_s": budget, "bound": {"min_top1": min_top1, "max_rel_err": max_rel_err}}
    return BenchReport(machine, rows, recommend(rows, min_top1, max_rel_err), skipped, settings)
