"""Engines and their worker processes.

Keras picks its engine once, at import, from ``KERAS_BACKEND``; one process can therefore host one
Keras engine at most. Every engine (the torch reference too) runs :mod:`resnet_core.parity.worker` in
its own child process, with inputs and weights passed as files, so the calling process imports no
framework and sets ``KERAS_BACKEND`` only in the environment of the children it spawns.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..quiet import is_framework_log, set_quiet_defaults

ENGINES = ("torch", "keras-jax", "keras-tensorflow", "keras-torch")
KERAS_ENGINES = ENGINES[1:]
# Engines that export an artifact and run it in its runtime (resnet_core.parity.artifacts); opt-in.
ARTIFACT_ENGINES = ("onnxruntime", "litert", "tf-saved-model", "torch-export")
ALL_ENGINES = ENGINES + ARTIFACT_ENGINES

# Packages an engine imports; all must be importable for it to run.
REQUIRES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "keras-jax": ("keras", "jax"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-torch": ("keras", "torch"),
    # artifact engines: what exports the artifact, then the runtime that runs it
    "onnxruntime": ("torch", "onnx", "onnxscript", "onnxruntime"),
    "litert": ("keras", "tensorflow", "ai_edge_litert"),
    "tf-saved-model": ("keras", "tensorflow"),
    "torch-export": ("torch",),
}

# The worker exits with this status when its framework cannot be imported: the engine is skipped.
EXIT_UNAVAILABLE = 3

# TF32 off for every library that reads these (cuBLAS/cuDNN via NVIDIA_TF32_OVERRIDE, XLA's default
# matmul precision); the worker also switches it off through each framework's own API and reports it.
# One INFO line per engine started and finished; `resnet-core parity` shows them on stderr.
log = logging.getLogger(__name__)

_NUMERICS_ENV = {
    "NVIDIA_TF32_OVERRIDE": "0",
    "JAX_DEFAULT_MATMUL_PRECISION": "highest",
}


def parse_engines(engines: str | Sequence[str]) -> tuple[str, ...]:
    """Engine names from ``"torch,keras-jax"`` or a sequence, validated and de-duplicated in order."""
    items = engines.split(",") if isinstance(engines, str) else list(engines)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputTypeError(f"Engine names are strings. Received: {item!r}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in ALL_ENGINES:
            raise InputError(f"Unknown engine {item!r}. Expected some of {', '.join(ALL_ENGINES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise InputError(f"No engine given. Expected some of {', '.join(ENGINES)}")
    return tuple(names)


def unavailable_reason(engine: str) -> str | None:
    """Why ``engine`` cannot run here (a package is not installed), or None. Imports nothing."""
    missing = [pkg for pkg in REQUIRES[engine] if importlib.util.find_spec(pkg) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    return None


def available_engines() -> tuple[str, ...]:
    return tuple(e for e in ENGINES if unavailable_reason(e) is None)


def child_env(engine: str, device: str = "auto") -> dict[str, str]:
    """The environment of ``engine``'s worker: its Keras engine, TF32 off, and the device choice."""
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)
    if engine.startswith("keras-"):
        env["KERAS_BACKEND"] = engine.split("-", 1)[1]
    env.update(_NUMERICS_ENV)
    set_quiet_defaults(env)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    elif device != "auto":
        raise InputError(f"Unknown device {device!r}. Expected 'auto' or 'cpu'")
    return env


@dataclass
class EngineRun:
    """What one worker did: ``status`` is ok, skipped (not installed) or failed (it crashed)."""

    engine: str
    status: str
    reason: str = ""
    output: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def load(self) -> dict[str, Any]:
        """The arrays the worker saved, as float32 numpy arrays keyed as the worker wrote them."""
        import numpy as np

        if self.output is None:
            raise RuntimeError(f"Engine {self.engine} produced no output ({self.status}: {self.reason})")
        with np.load(self.output) as data:
            return {k: data[k] for k in data.files}


def run_engine(engine: str, job: Mapping[str, Any], workdir: Path, device: str = "auto",
               timeout: float | None = None) -> EngineRun:
    """Run one worker on ``job`` (a JSON-able dict, see :mod:`resnet_core.parity.worker`)."""
    reason = unavailable_reason(engine)
    if reason is not None:
        return EngineRun(engine, "skipped", reason)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    output, meta_path = workdir / f"{engine}.out.npz", workdir / f"{engine}.meta.json"
    job_path = workdir / f"{engine}.job.json"
    job_path.write_text(json.dumps({**job, "engine": engine, "output": str(output), "meta": str(meta_path)}))
    start = time.perf_counter()
    log.info("%s: running", engine)
    run = _run_worker(engine, job_path, output, meta_path, device, timeout, start)
    log.info("%s: %s in %.1f s%s", engine, run.status, run.seconds, f" ({run.reason})" if run.reason else "")
    return run


def _run_worker(engine: str, job_path: Path, output: Path, meta_path: Path, device: str, timeout: float | None,
                start: float) -> EngineRun:
    try:
        proc = subprocess.run([sys.executable, "-m", "resnet_core.parity.worker", str(job_path)],
                              env=child_env(engine, device), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return EngineRun(engine, "failed", f"timed out after {timeout:g} s", seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if proc.returncode == EXIT_UNAVAILABLE:
        return EngineRun(engine, "skipped", meta.get("error") or stderr_tail(proc.stderr), meta=meta, seconds=seconds)
    if proc.returncode != 0 or not output.exists():
        return EngineRun(engine, "failed", meta.get("error") or stderr_tail(proc.stderr) or f"exit {proc.returncode}",
                         meta=meta, seconds=seconds)
    return EngineRun(engine, "ok", output=output, meta=meta, seconds=seconds)


def run_engines(engines: Sequence[str], job: Mapping[str, Any], workdir: str | os.PathLike, device: str = "auto",
                jobs: int = 1, timeout: float | None = None) -> dict[str, EngineRun]:
    """Run ``job`` on each engine, each in its own process, ``jobs`` at a time; results in engine order."""
    return run_engine_jobs({e: job for e in parse_engines(engines)}, workdir, device, jobs, timeout)


def run_engine_jobs(jobs_by_engine: Mapping[str, Mapping[str, Any]], workdir: str | os.PathLike,
                    device: str = "auto", jobs: int = 1, timeout: float | None = None) -> dict[str, EngineRun]:
    """Run each engine's own job (e.g. its own weights), each in its own process, ``jobs`` at a time."""
    engines = parse_engines(list(jobs_by_engine))
    if not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a positive integer. Received: {jobs!r}")
    child_env(engines[0], device)  # validates the device before anything starts
    workdir = Path(workdir)
    with ThreadPoolExecutor(max_workers=min(jobs, len(engines))) as pool:
        futures = {e: pool.submit(run_engine, e, jobs_by_engine[e], workdir, device, timeout) for e in engines}
        return {e: futures[e].result() for e in engines}


def stderr_tail(text: str, lines: int = 6) -> str:
    """The end of a worker's stderr, which holds the exception; framework log noise is dropped."""
    kept = [ln for ln in (text or "").strip().splitlines() if ln.strip() and not is_framework_log(ln)]
    return " | ".join(kept[-lines:])
